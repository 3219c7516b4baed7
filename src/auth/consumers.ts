/**
 * Ensures each user's durable consumer on its room stream before the callout answers, so a
 * reconnecting user resumes where it acked. Known consumers are cached, and concurrent ensures of
 * one consumer share one JetStream call, so a reconnect storm does not hammer the JetStream API.
 *
 * The cache forgets what JetStream says is gone: a consumer's deletion, its stream's deletion or
 * creation (advisories in the stream's account), and everything after the connection was away
 * (advisories sent meanwhile are lost). A recreated room stream therefore never admits a user
 * whose consumer the cache still remembers from the old stream.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { ensureConsumer, userConsumerConfig } from '../core/streams.js';
import { JsAdvisory, parseJsAdvisory, roomStreamName } from '../core/subjects.js';

/** How long a consumer known to exist is trusted without asking JetStream, in milliseconds. */
export const DEFAULT_CONSUMER_CACHE_TTL_MS = 5 * 60_000;
/** Bound on cached consumers. */
const MAX_CACHED = 100_000;

/** `restored`: the consumer was offline (its server gone) and was created again elsewhere. */
export type EnsureResult = 'cached' | 'created' | 'restored';

export class ConsumerEnsurer {
  /** roomId → consumer name → trusted until (ms since the epoch). */
  private readonly known = new Map<string, Map<string, number>>();
  private size = 0;
  /**
   * Bumped for a room whenever its consumers may have gone: an ensure that started before keeps
   * its result out of the cache (its consumer may have been deleted after it was created).
   */
  private readonly generation = new Map<string, number>();
  /** Bumped by {@link clear}, for every room at once. */
  private epoch = 0;
  private readonly inflight = new Map<string, Promise<EnsureResult>>();
  private subs: Subscription[] = [];

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
    const until = this.known.get(roomId)?.get(name);
    if (until !== undefined && until > this.now()) return Promise.resolve('cached');
    const key = `${roomId}.${name}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.create(roomId, userId, name).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Forgets a consumer (deleted elsewhere), so the next ensure creates it again. */
  forget(roomId: string, name: string): void {
    const room = this.known.get(roomId);
    if (room?.delete(name)) this.size--;
    if (room?.size === 0) this.known.delete(roomId);
    this.bump(roomId);
  }

  /** Forgets every consumer of a room (its stream was deleted or created). */
  forgetRoom(roomId: string): void {
    this.size -= this.known.get(roomId)?.size ?? 0;
    this.known.delete(roomId);
    this.bump(roomId);
  }

  /** Forgets everything. */
  clear(): void {
    this.known.clear();
    this.size = 0;
    this.epoch++;
  }

  /**
   * Follows the advisories of `nc`'s account (where the room streams are) and its reconnects, so
   * that what JetStream deleted is forgotten at once.
   */
  watch(nc: NatsConnection): void {
    const onAdvisory = (subject: string): void => {
      const a = parseJsAdvisory(subject);
      if (!a) return;
      // A room stream is named after its room (roomStreamName), so the stream is the room id.
      if (a.kind === 'CONSUMER' && a.consumer !== undefined) this.forget(a.stream, a.consumer);
      else this.forgetRoom(a.stream);
    };
    this.subs = [
      JsAdvisory.consumerDeleted('*', '*'),
      JsAdvisory.streamDeleted('*'),
      JsAdvisory.streamCreated('*'),
    ].map((subject) =>
      nc.subscribe(subject, {
        callback: (err, m) => {
          if (!err) onAdvisory(m.subject);
        },
      }),
    );
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') this.clear();
    })();
  }

  /** Stops following advisories. */
  unwatch(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
  }

  private bump(roomId: string): void {
    this.generation.set(roomId, (this.generation.get(roomId) ?? 0) + 1);
  }

  private async create(roomId: string, userId: string, name: string): Promise<EnsureResult> {
    const gen = this.generation.get(roomId) ?? 0;
    const epoch = this.epoch;
    // Add is idempotent for an identical config; a consumer that exists with another config
    // (an older Torii) is updated to ours.
    const done = await ensureConsumer(
      this.jsm,
      roomStreamName(roomId),
      userConsumerConfig(roomId, userId, this.inactiveThresholdMs, name),
    );
    const result = done === 'restored' ? 'restored' : 'created';
    if ((this.generation.get(roomId) ?? 0) !== gen || this.epoch !== epoch) return result;
    if (this.size >= MAX_CACHED) {
      this.known.clear();
      this.size = 0;
    }
    let room = this.known.get(roomId);
    if (!room) this.known.set(roomId, (room = new Map<string, number>()));
    if (!room.has(name)) this.size++;
    room.set(name, this.now() + this.cacheTtlMs);
    return result;
  }
}
