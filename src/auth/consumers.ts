/**
 * Ensures each user's durable consumer on its room stream before the callout answers, so a
 * reconnecting user resumes where it acked. Known consumers are cached, and concurrent ensures of
 * one consumer share one JetStream call, so a reconnect storm does not hammer the JetStream API.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { ensureConsumer, userConsumerConfig } from '../core/streams.js';
import { roomStreamName } from '../core/subjects.js';

/** How long a consumer known to exist is trusted without asking JetStream, in milliseconds. */
export const DEFAULT_CONSUMER_CACHE_TTL_MS = 5 * 60_000;
/** Bound on cached consumers. */
const MAX_CACHED = 100_000;

export type EnsureResult = 'cached' | 'created';

export class ConsumerEnsurer {
  private readonly known = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<EnsureResult>>();

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly inactiveThresholdMs: number,
    private readonly cacheTtlMs = DEFAULT_CONSUMER_CACHE_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Makes sure the consumer exists (the user's own, or `name`, one of its devices'); resolves
   * without a JetStream call when it is known.
   */
  ensure(roomId: string, userId: string, name: string = userId): Promise<EnsureResult> {
    const key = `${roomId}.${name}`;
    const until = this.known.get(key);
    if (until !== undefined && until > this.now()) return Promise.resolve('cached');
    let p = this.inflight.get(key);
    if (!p) {
      p = this.create(key, roomId, userId, name).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Forgets a consumer (deleted elsewhere), so the next ensure creates it again. */
  forget(roomId: string, name: string): void {
    this.known.delete(`${roomId}.${name}`);
  }

  private async create(
    key: string,
    roomId: string,
    userId: string,
    name: string,
  ): Promise<EnsureResult> {
    // Add is idempotent for an identical config; a consumer that exists with another config
    // (an older Torii) is updated to ours.
    await ensureConsumer(
      this.jsm,
      roomStreamName(roomId),
      userConsumerConfig(roomId, userId, this.inactiveThresholdMs, name),
    );
    if (this.known.size >= MAX_CACHED) this.known.clear();
    this.known.set(key, this.now() + this.cacheTtlMs);
    return 'created';
  }
}
