/**
 * Ensures each user's (or device's) durable consumer on its room stream before the callout
 * answers, so the client's catch-up right after it connects finds it. The consumer lives only
 * while it is used: nats-server deletes it its inactive threshold after the last pull
 * (`DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS`), and the next admission creates it again. Known
 * consumers are cached, and concurrent ensures of one consumer share one JetStream call, so a
 * reconnect storm does not hammer the JetStream API.
 *
 * The cache forgets what JetStream says is gone: a consumer's deletion, its stream's deletion or
 * creation (advisories in the stream's account), and everything after the connection was away
 * (advisories sent meanwhile are lost). A recreated room stream therefore never admits a user
 * whose consumer the cache still remembers from the old stream.
 *
 * A departed user's consumer is kept until its inactive threshold or its presence cleanup, so a
 * burst of admissions can fill a room stream with them; at its limit, the consumers of users who are not present are deleted, oldest first, to
 * make room (docs/decisions.md, "A room's consumer limit counts who is there").
 */
import type { ConsumerInfo, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { TrustedCache } from '../domain/trusted-cache.js';
import { ensureConsumer, userConsumerConfig } from '../infra/streams.js';
import { isJsError } from '../protocol/jetstream.js';
import { JS_CONSUMER_NOT_FOUND, JS_MAX_CONSUMERS } from '../protocol/jetstream.js';
import { consumerUser, JsAdvisory, parseJsAdvisory, roomStreamName } from '../protocol/subjects.js';

/**
 * How long a consumer known to exist is trusted without asking JetStream, at most, in
 * milliseconds. Never longer than {@link CONSUMER_CACHE_SHARE} of the consumers' inactive
 * threshold: the server deletes an idle consumer after that threshold, and its deletion advisory
 * makes the cache forget it at once; should the advisory be lost, the entry is gone before the
 * consumer could have been, so an admission after the expiry creates it again.
 */
const DEFAULT_CONSUMER_CACHE_TTL_MS = 5 * 60_000;
/** Share of the inactive threshold a known consumer is trusted for, at most. */
const CONSUMER_CACHE_SHARE = 0.5;
/** Bound on cached consumers. */
const MAX_CACHED = 100_000;
/**
 * Share of a room stream's consumer limit deleted at once when the limit is reached (at least
 * one), so that a stream full of departed users' consumers is listed once per batch of admissions,
 * not once per admission.
 */
const EVICT_SHARE = 0.1;

/** Whether a user holds a seat in a room (present, away or within its grace period). */
type IsPresent = (roomId: string, userId: string) => boolean;

/** Options of {@link ConsumerEnsurer}. */
interface ConsumerEnsurerOptions {
  /**
   * How long a consumer known to exist is trusted, in milliseconds. Default 5 minutes; never more
   * than {@link CONSUMER_CACHE_SHARE} of the inactive threshold.
   */
  cacheTtlMs?: number;
  now?: () => number;
  /** Who is present; consumers of users for whom it is false may be deleted at the limit. */
  isPresent?: IsPresent;
  /** Called with the number of consumers deleted to make room. */
  onEvicted?: (roomId: string, count: number) => void;
}

/** `restored`: the consumer was offline (its server gone) and was created again elsewhere. */
type EnsureResult = 'cached' | 'created' | 'restored';

export class ConsumerEnsurer {
  /** Consumers known to exist, by {@link cacheKey}, with their room. */
  private readonly known: TrustedCache<string, string>;
  /**
   * Bumped for a room whenever its consumers may have gone: an ensure that started before keeps
   * its result out of the cache (its consumer may have been deleted after it was created).
   */
  private readonly generation = new Map<string, number>();
  /** Bumped by {@link clear}, for every room at once. */
  private epoch = 0;
  private readonly inflight = new Map<string, Promise<EnsureResult>>();
  /** Evictions in progress, by room: admissions at the limit wait for the same one. */
  private readonly making = new Map<string, Promise<number>>();
  private subs: Subscription[] = [];
  private readonly cacheTtlMs: number;
  private readonly now: () => number;
  private readonly isPresent: IsPresent;
  private readonly onEvicted: (roomId: string, count: number) => void;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly inactiveThresholdMs: number,
    o: ConsumerEnsurerOptions = {},
  ) {
    this.cacheTtlMs = Math.min(
      o.cacheTtlMs ?? DEFAULT_CONSUMER_CACHE_TTL_MS,
      inactiveThresholdMs * CONSUMER_CACHE_SHARE,
    );
    this.now = o.now ?? Date.now;
    this.known = new TrustedCache({ maxEntries: MAX_CACHED, now: this.now });
    // Without a view of presence nobody counts as gone: nothing is deleted.
    this.isPresent = o.isPresent ?? (() => true);
    this.onEvicted = o.onEvicted ?? (() => undefined);
  }

  /**
   * Makes sure the consumer exists (the user's own, or `name`, one of its devices'); resolves
   * without a JetStream call when it is known.
   */
  ensure(roomId: string, userId: string, name: string = userId): Promise<EnsureResult> {
    const key = cacheKey(roomId, name);
    if (this.known.get(key) !== undefined) return Promise.resolve('cached');
    let p = this.inflight.get(key);
    if (!p) {
      p = this.create(roomId, userId, name).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Forgets a consumer (deleted elsewhere), so the next ensure creates it again. */
  forget(roomId: string, name: string): void {
    this.known.forget(cacheKey(roomId, name));
    this.bump(roomId);
  }

  /** Forgets every consumer of a room (its stream was deleted or created). */
  forgetRoom(roomId: string): void {
    // Rare (a stream created or deleted), so a pass over the cache is fine.
    this.known.forgetWhere((_, room) => room === roomId);
    this.bump(roomId);
  }

  /** Forgets everything. */
  clear(): void {
    this.known.clear();
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

  /**
   * Deletes the consumers of users who are not present, least recently active first, up to
   * {@link EVICT_SHARE} of the limit; never one of `userId`'s. Resolves with how many went.
   */
  private makeRoom(roomId: string, userId: string): Promise<number> {
    let p = this.making.get(roomId);
    if (!p) {
      p = this.evict(roomId, userId).finally(() => this.making.delete(roomId));
      this.making.set(roomId, p);
    }
    return p;
  }

  private async evict(roomId: string, userId: string): Promise<number> {
    const stream = roomStreamName(roomId);
    const limit = (await this.jsm.streams.info(stream)).config.max_consumers;
    const gone: ConsumerInfo[] = [];
    for await (const c of this.jsm.consumers.list(stream)) {
      const user = consumerUser(c.name);
      if (user !== userId && !this.isPresent(roomId, user)) gone.push(c);
    }
    // The server sends `last_active` as a time (RFC 3339), whatever nats.js's types say.
    const time = (v: unknown): number => (typeof v === 'string' ? Date.parse(v) || 0 : 0);
    const active = (c: ConsumerInfo): number =>
      Math.max(time(c.created), time(c.delivered.last_active), time(c.ack_floor.last_active));
    gone.sort((a, b) => active(a) - active(b));
    const batch = gone.slice(0, Math.max(1, Math.ceil(limit * EVICT_SHARE)));
    await Promise.all(
      batch.map(async (c) => {
        try {
          await this.jsm.consumers.delete(stream, c.name);
        } catch (e) {
          if (!isJsError(e, JS_CONSUMER_NOT_FOUND)) throw e;
        }
        this.forget(roomId, c.name);
      }),
    );
    if (batch.length > 0) this.onEvicted(roomId, batch.length);
    return batch.length;
  }

  private bump(roomId: string): void {
    this.generation.set(roomId, (this.generation.get(roomId) ?? 0) + 1);
  }

  private async create(roomId: string, userId: string, name: string): Promise<EnsureResult> {
    const gen = this.generation.get(roomId) ?? 0;
    const epoch = this.epoch;
    // Add is idempotent for an identical config; a consumer that exists with another config
    // (an older Torii) is updated to ours.
    const config = userConsumerConfig(roomId, userId, this.inactiveThresholdMs, name);
    let done;
    try {
      done = await ensureConsumer(this.jsm, roomStreamName(roomId), config);
    } catch (e) {
      if (!isJsError(e, JS_MAX_CONSUMERS) || (await this.makeRoom(roomId, userId)) === 0) throw e;
      done = await ensureConsumer(this.jsm, roomStreamName(roomId), config);
    }
    const result = done === 'restored' ? 'restored' : 'created';
    if ((this.generation.get(roomId) ?? 0) !== gen || this.epoch !== epoch) return result;
    this.known.trust(cacheKey(roomId, name), roomId, this.cacheTtlMs);
    return result;
  }
}

/** One consumer's key in the cache; ids never hold a NUL, so no two pairs share one. */
const cacheKey = (roomId: string, name: string): string => `${roomId}\u0000${name}`;
