/**
 * KV buckets (docs/worker.md) and an in-memory cache that follows a bucket through a watch, so hot
 * paths (the callout's room, block and presence lookups) read memory, not JetStream.
 */
import {
  JetStreamError,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type StoredMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry, type KvOptions, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { describeError, ErrorCode, ToriiError } from '../protocol/errors.js';
import type { Logger } from '../runtime/logger.js';
import { nanos } from './streams.js';
import { Bucket, kvStreamName, kvSubject } from '../protocol/subjects.js';
import {
  isJsError,
  JS_STREAM_WRONG_LAST_SEQUENCE,
  JS_STREAM_WRONG_LAST_SEQUENCE_UNKNOWN,
} from '../protocol/jetstream.js';

/** Largest value Torii writes to any bucket, in bytes (a compiled room config is the largest). */
export const MAX_KV_VALUE_BYTES = 256 * 1024;
/**
 * Bytes each bucket may hold, at most: a bound no bug and no flood can pass. With one value per
 * key and records of departed users deleted after the retention period, real use stays far below
 * (a presence record is about 400 bytes: 64 MiB holds 150,000 users). JetStream reserves these
 * bytes on every server that holds a replica, so they count against `max_file_store`
 * (docs/operations.md).
 */
export const BUCKET_MAX_BYTES: Readonly<Record<Bucket, number>> = {
  [Bucket.Rooms]: 32 * 1024 ** 2,
  [Bucket.Presence]: 64 * 1024 ** 2,
  [Bucket.RoomState]: 128 * 1024 ** 2,
  [Bucket.Blocks]: 16 * 1024 ** 2,
};
/**
 * How long the marker of a deleted or expired key stays before it expires too, in milliseconds
 * (5 minutes). A marker is there for watchers that are following the bucket: a KvCache that was
 * away reads a new snapshot after reconnecting, which no longer has the key, so it needs none.
 * Every departed user leaves a marker or two, and with an hour they were most of what a bucket
 * held (docs/decisions.md, "Delete markers live five minutes").
 */
export const DELETE_MARKER_TTL_MS = 300_000;
/** {@link DELETE_MARKER_TTL_MS} as the Go duration JetStream's `Nats-TTL` header takes. */
export const DELETE_MARKER_TTL = `${DELETE_MARKER_TTL_MS / 1000}s`;

/** Options of Torii's buckets: one value per key, file storage, bounded, per-message TTLs. */
function bucketOptions(name: Bucket, replicas = 1): Partial<KvOptions> {
  return {
    history: 1,
    replicas,
    storage: 'file',
    max_bytes: BUCKET_MAX_BYTES[name],
    maxValueSize: MAX_KV_VALUE_BYTES,
    // Per-message TTLs, and a marker when a key expires, so watchers (every KvCache) see it go.
    markerTTL: DELETE_MARKER_TTL_MS,
  };
}

/** The stream settings {@link openBucket} keeps on a bucket that already exists. */
function boundedConfig(name: Bucket, c: StreamConfig): Partial<StreamConfig> | undefined {
  const want: Partial<StreamConfig> = {
    max_bytes: BUCKET_MAX_BYTES[name],
    max_msg_size: MAX_KV_VALUE_BYTES,
    // Records expire on their own (`Nats-TTL`): renewal stamps, blocks, delete markers.
    allow_msg_ttl: true,
    subject_delete_marker_ttl: nanos(DELETE_MARKER_TTL_MS),
  };
  const stale = (Object.keys(want) as (keyof StreamConfig)[]).some((k) => c[k] !== want[k]);
  return stale ? want : undefined;
}

/**
 * Opens a bucket, creating it with Torii's options when it does not exist, and brings an existing
 * bucket's limits up to ours (a bucket made by an older Torii had none).
 */
export async function openBucket(nc: NatsConnection, name: Bucket, replicas = 1): Promise<KV> {
  const js = jetstream(nc);
  const kvm = new Kvm(js);
  let kv: KV;
  // open() does not check that the bucket exists; status() does.
  try {
    kv = await kvm.open(name);
    await kv.status();
  } catch {
    kv = await kvm.create(name, bucketOptions(name, replicas));
  }
  const jsm = await js.jetstreamManager();
  const info = await jsm.streams.info(kvStreamName(name));
  const update = boundedConfig(name, info.config);
  if (update) await jsm.streams.update(kvStreamName(name), { ...info.config, ...update });
  return kv;
}

/** Attempts of a compare-and-set before it fails with CONFLICT. */
const CAS_ATTEMPTS = 10;

/** A compare-and-set lost to a writer that kept winning: retrying later may succeed. */
export class CasConflictError extends ToriiError {
  constructor(key: string, options?: { cause?: unknown }) {
    super(ErrorCode.Conflict, `${key} changed ${CAS_ATTEMPTS} times while being updated`, options);
  }
}

/** True for the JetStream answer to a write whose expected revision was not the key's last. */
function isCasConflict(e: unknown): boolean {
  return isJsError(e, JS_STREAM_WRONG_LAST_SEQUENCE, JS_STREAM_WRONG_LAST_SEQUENCE_UNKNOWN);
}

/** What {@link casUpdate} writes: a new value, a deletion, or nothing (`undefined`). */
type CasStep<T> = { put: T } | { delete: true } | undefined;

/** The outcome of {@link casUpdate}. */
interface CasResult<T> {
  /** The value before the write that won (undefined when there was none). */
  previous: T | undefined;
  /** What was written: the step, or undefined when `decide` asked for nothing. */
  step: CasStep<T>;
  /** The revision a put was stored at. */
  revision?: number;
}

/**
 * What a follower of a bucket last saw of a key, offered to {@link casUpdate} in place of a read:
 * the value and the revision it was stored at (0 when the key has no message at all).
 */
interface CasHint<T> {
  value: T | undefined;
  /** Revision of the key's last message; 0 when there is none. */
  revision: number;
  /** Whether that message is a put (not a delete or purge marker). */
  put: boolean;
  /** When it was stored (the server's time), when known. */
  storedAt?: Date;
}

/** A source of {@link CasHint}s that also learns the revisions {@link casUpdate} writes. */
export interface CasHints<T> {
  hint(key: string): CasHint<T> | undefined;
  wrote(key: string, revision: number, data: unknown): void;
}

/** Options of {@link casUpdate}. */
interface CasOptions<T> {
  /** What the key is believed to hold, tried before reading it. */
  hint?: CasHint<T>;
  /** A follower of the bucket (a {@link KvCache}): its hint is tried, and it learns the write. */
  cache?: CasHints<T>;
}

/**
 * The one compare-and-set of Torii: reads `key`, lets `decide` say what to write given the value
 * there (undefined when absent, deleted or malformed) and when it was stored (the server's time;
 * undefined when absent), and writes it only if no one wrote the key
 * in between, reading again after each conflict. Any other error propagates at once: a JetStream
 * outage is not a conflict and must not be retried into a long stall. `decide` may run several
 * times and must not have effects of its own; act on the returned step instead.
 *
 * With a hint (or a cache that has one), the first try skips the read: the write is conditional on
 * the hinted revision, so a stale hint costs a conflict and a read, never a wrong write. A decision
 * to write nothing (or to delete what the hint says is absent) is never taken on a hint: the key is
 * read and decided again. A first-time key (hint revision 0) is thus created with one call and no
 * failing read (JetStream answers a read of an absent key with an error).
 *
 * A deletion leaves a marker that expires after {@link DELETE_MARKER_TTL}, so deleted keys leave
 * nothing behind.
 */
export async function casUpdate<T>(
  kv: KV,
  key: string,
  parse: (data: unknown) => T | undefined,
  decide: (current: T | undefined, storedAt: Date | undefined) => CasStep<T>,
  o: CasOptions<T> = {},
): Promise<CasResult<T>> {
  const h = o.hint ?? o.cache?.hint(key);
  const hinted = h && decide(h.value, h.put ? h.storedAt : undefined);
  if (h && hinted && !('delete' in hinted)) {
    try {
      // put with an expected revision, not update: update refuses revision 0 (the key's creation).
      const revision = await kv.put(key, JSON.stringify(hinted.put), { previousSeq: h.revision });
      o.cache?.wrote(key, revision, hinted.put);
      return { previous: h.value, step: hinted, revision };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const e = await kv.get(key);
    const put = e?.operation === 'PUT' ? e : undefined;
    const current = put ? parseEntry(put, parse) : undefined;
    const step = decide(current, put?.created);
    if (step === undefined) return { previous: current, step };
    const revision = e?.revision ?? 0;
    try {
      if ('delete' in step) {
        if (!e || e.operation !== 'PUT') return { previous: current, step: undefined };
        await kv.purge(key, { previousSeq: revision, ttl: DELETE_MARKER_TTL });
        return { previous: current, step };
      }
      const written = e
        ? await kv.update(key, JSON.stringify(step.put), revision)
        : await kv.create(key, JSON.stringify(step.put));
      o.cache?.wrote(key, written, step.put);
      return { previous: current, step, revision: written };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
  throw new CasConflictError(key);
}

/**
 * Deletes a key without a trace: its messages up to `revision` are purged from the bucket's
 * stream and no delete marker is written, so a scan of the bucket never meets it again. A write
 * after `revision` survives. Only for keys that no cache or subscriber follows: the deletion
 * publishes nothing.
 */
export async function eraseKey(
  jsm: JetStreamManager,
  bucket: Bucket,
  key: string,
  revision: number,
): Promise<void> {
  await jsm.streams.purge(kvStreamName(bucket), {
    filter: kvSubject(bucket, key),
    seq: revision + 1,
  });
}

function parseEntry<T>(e: KvEntry, parse: (data: unknown) => T | undefined): T | undefined {
  try {
    return parse(e.json());
  } catch {
    return undefined;
  }
}

/** Bound on the writes a {@link KvCache} remembers ahead of its watch. */
const MAX_AHEAD = 10_000;
/** Delete markers a {@link KvCache} remembers before it drops the expired ones. */
const MAX_MARKERS = 100_000;

/** Delay before re-watching after the watch ended unexpectedly, in milliseconds. */
const REWATCH_DELAY_MS = 1_000;

/**
 * A map that mirrors a KV bucket. Values are decoded by `parse`; a value that does not parse is
 * logged and treated as absent (one bad record must not poison the cache). After a reconnect the
 * bucket is re-created if the server lost it and the watch starts over; the old content stays
 * visible until the new snapshot is complete, then keys that vanished are dropped.
 */
export class KvCache<T> implements CasHints<T> {
  private readonly map = new Map<string, T>();
  /**
   * Revision and time of each followed key's last message (a put, also when its value did not
   * parse, or a delete marker).
   */
  private readonly stored = new Map<string, { revision: number; at: Date; put: boolean }>();
  /**
   * Puts {@link casUpdate} made through this cache that the watch has not delivered yet: the
   * revision to try next, so back-to-back updates of one key need no read.
   */
  private readonly ahead = new Map<string, { revision: number; value: T | undefined }>();
  /** Delete markers noted in {@link stored} since the last sweep of expired ones. */
  private markers = 0;
  private readonly listeners: ((
    key: string,
    value: T | undefined,
    previous: T | undefined,
    revision: number | undefined,
  ) => void)[] = [];
  private watcher: QueuedIterator<KvWatchEntry> | undefined;
  private stopped = false;
  private resolveReady!: () => void;
  /** Resolves once the cache holds the bucket's content as of the start. */
  readonly ready: Promise<void> = new Promise((r) => (this.resolveReady = r));
  private isReady = false;
  private kv: KV | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly name: Bucket,
    private readonly parse: (data: unknown, key: string) => T | undefined,
    private readonly log: Logger,
    private readonly replicas = 1,
    /** Keys to follow (KV wildcards): the whole bucket by default. */
    private readonly filter = '>',
  ) {}

  /** The bucket (opened or created by {@link start}). */
  get bucket(): KV {
    if (!this.kv) throw new Error(`KV cache ${this.name} not started`);
    return this.kv;
  }

  /** True once the initial content is loaded. */
  get loaded(): boolean {
    return this.isReady;
  }

  get(key: string): T | undefined {
    return this.map.get(key);
  }

  entries(): IterableIterator<[string, T]> {
    return this.map.entries();
  }

  /**
   * What this cache last saw of a followed key, for {@link casUpdate}: undefined until the
   * initial content is loaded. A delete marker is offered while it lives
   * ({@link DELETE_MARKER_TTL_MS}), then the key as absent (revision 0).
   */
  hint(key: string): CasHint<T> | undefined {
    if (!this.isReady) return undefined;
    const stored = this.stored.get(key);
    const mine = this.ahead.get(key);
    if (mine && mine.revision > (stored?.revision ?? 0))
      return { value: mine.value, revision: mine.revision, put: true };
    if (!stored || (!stored.put && Date.now() - stored.at.getTime() >= DELETE_MARKER_TTL_MS))
      return { value: undefined, revision: 0, put: false };
    return {
      value: this.map.get(key),
      revision: stored.revision,
      put: stored.put,
      storedAt: stored.at,
    };
  }

  /** Drops the delete markers that have expired (a marker left alone is never delivered again). */
  private forgetMarkers(): void {
    const now = Date.now();
    this.markers = 0;
    for (const [key, st] of this.stored) {
      if (st.put) continue;
      if (now - st.at.getTime() >= DELETE_MARKER_TTL_MS) this.stored.delete(key);
      else this.markers++;
    }
    if (this.markers >= MAX_MARKERS) {
      for (const [key, st] of this.stored) if (!st.put) this.stored.delete(key);
      this.markers = 0;
    }
  }

  /** Learns a put {@link casUpdate} made, ahead of the watch. */
  wrote(key: string, revision: number, data: unknown): void {
    if (revision <= (this.stored.get(key)?.revision ?? 0)) return;
    if (this.ahead.size >= MAX_AHEAD) this.ahead.clear();
    let value: T | undefined;
    try {
      value = this.parse(data, key);
    } catch {
      value = undefined;
    }
    this.ahead.set(key, { revision, value });
  }

  /**
   * Called after every change, with `undefined` for deletions, the value it replaced, and the
   * revision of the change (undefined for a key dropped because a new snapshot lacks it).
   */
  onChange(
    fn: (
      key: string,
      value: T | undefined,
      previous: T | undefined,
      revision: number | undefined,
    ) => void,
  ): void {
    this.listeners.push(fn);
  }

  /** Starts following the bucket; resolves when the initial content is loaded. */
  async start(): Promise<void> {
    this.kv = await openBucket(this.nc, this.name, this.replicas);
    void this.follow();
    void (async () => {
      for await (const s of this.nc.status()) {
        if (this.stopped) return;
        if (s.type === 'reconnect') this.watcher?.stop(); // start over: the server may have lost the bucket
      }
    })();
    await this.ready;
  }

  private markReady(): void {
    if (!this.isReady) {
      this.isReady = true;
      this.resolveReady();
    }
  }

  private async follow(): Promise<void> {
    while (!this.stopped) {
      try {
        this.kv = await openBucket(this.nc, this.name, this.replicas);
        // Every key's last value is delivered, and the last message filed under the followed
        // keys' subjects is one of them: seeing its revision means the snapshot is complete. Not the
        // stream's last_seq: a stream stores whatever is published on its subjects under the
        // subject it was delivered with, and a watch never delivers what is filed elsewhere.
        const lastSeq = await this.lastKeySeq();
        const seen = new Set<string>();
        let snapshot = true;
        const finishSnapshot = (): void => {
          snapshot = false;
          for (const key of [...this.map.keys()]) if (!seen.has(key)) this.set(key, undefined);
          for (const key of [...this.stored.keys()]) if (!seen.has(key)) this.stored.delete(key);
          this.markReady();
        };
        if (lastSeq === 0) finishSnapshot();
        this.watcher = await this.kv.watch({ key: this.filter });
        for await (const e of this.watcher) {
          if (snapshot) seen.add(e.key);
          this.apply(e);
          if (snapshot && e.revision >= lastSeq) finishSnapshot();
        }
      } catch (e) {
        if (this.stopped) return;
        this.log.warn({ bucket: this.name, err: describeError(e) }, 'KV watch failed; retrying');
      }
      if (!this.stopped)
        await new Promise((r) => setTimeout(r, this.isReady ? 100 : REWATCH_DELAY_MS));
    }
  }

  /** Sequence of the last message filed under one of the followed keys; 0 when there is none. */
  private async lastKeySeq(): Promise<number> {
    const jsm = await jetstreamManager(this.nc, { checkAPI: false });
    const last = await jsm.streams.getMessage(kvStreamName(this.name), {
      last_by_subj: kvSubject(this.name, this.filter),
    });
    return last?.seq ?? 0;
  }

  private apply(e: KvWatchEntry): void {
    this.stored.set(e.key, { revision: e.revision, at: e.created, put: e.operation === 'PUT' });
    if (e.operation !== 'PUT' && ++this.markers >= MAX_MARKERS) this.forgetMarkers();
    const mine = this.ahead.get(e.key);
    if (mine && mine.revision <= e.revision) this.ahead.delete(e.key);
    let value: T | undefined;
    if (e.operation === 'PUT') {
      try {
        value = this.parse(e.json(), e.key);
      } catch {
        value = undefined;
      }
      if (value === undefined)
        this.log.warn({ bucket: this.name, key: e.key }, 'ignoring malformed KV value');
    }
    this.set(e.key, value, e.revision);
  }

  private set(key: string, value: T | undefined, revision?: number): void {
    const previous = this.map.get(key);
    if (value === undefined) {
      if (!this.map.delete(key)) return;
    } else {
      this.map.set(key, value);
    }
    for (const fn of this.listeners) fn(key, value, previous, revision);
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.stop();
  }
}

const EMPTY_ROOM: ReadonlyMap<string, never> = new Map<string, never>();

/**
 * The values of a {@link KvCache} whose keys start with a room id (`{roomId}.{rest}`: presence,
 * blocks), grouped by room and kept up to date from the cache's changes: what one room holds
 * costs that room's size to read, not the bucket's.
 */
export class RoomIndex<T> {
  private readonly rooms = new Map<string, Map<string, T>>();

  /**
   * @param keep - which values to index (all by default): presence indexes only users who hold a
   *   seat, so ten thousand users who left cost a room's readers nothing.
   */
  constructor(
    cache: {
      entries: KvCache<T>['entries'];
      onChange(fn: (key: string, value: T | undefined) => void): void;
    },
    private readonly keep: (value: T) => boolean = () => true,
  ) {
    for (const [key, value] of cache.entries()) this.set(key, value);
    cache.onChange((key, value) => this.set(key, value));
  }

  /** The room's values by the rest of their key (`{userId}` for presence). */
  room(roomId: string): ReadonlyMap<string, T> {
    return this.rooms.get(roomId) ?? EMPTY_ROOM;
  }

  /** Rooms with at least one value. */
  roomIds(): IterableIterator<string> {
    return this.rooms.keys();
  }

  private set(key: string, value: T | undefined): void {
    const dot = key.indexOf('.');
    if (dot <= 0) return;
    const roomId = key.slice(0, dot);
    const rest = key.slice(dot + 1);
    let room = this.rooms.get(roomId);
    if (value === undefined || !this.keep(value)) {
      if (!room?.delete(rest)) return;
      if (room.size === 0) this.rooms.delete(roomId);
      return;
    }
    if (!room) this.rooms.set(roomId, (room = new Map<string, T>()));
    room.set(rest, value);
  }
}

/** Messages one direct batch get of {@link scanBucket} asks for. */
const SCAN_PAGE = 1_000;
/** The status with which a direct get that found nothing ends. */
const STATUS_NOT_FOUND = 404;

/** One message of a bucket as {@link scanBucket} reads it. */
interface ScannedEntry {
  /** The key (the subject without the bucket's prefix). */
  key: string;
  /** A deletion or purge (a delete marker), not a value. */
  deleted: boolean;
  msg: StoredMsg;
}

/**
 * Every message of `bucket` whose key matches `filter` (KV wildcards), in stream order, read with
 * direct batch gets page by page: no consumer is made, so the read leaves nothing behind and
 * changes no consumer count. A deletion is a `DEL` or `PURGE` operation, a message with no data,
 * or a server marker (`Nats-Marker-Reason`).
 */
export async function* scanBucket(
  jsm: JetStreamManager,
  bucket: Bucket,
  filter = '>',
): AsyncGenerator<ScannedEntry> {
  const prefix = kvSubject(bucket, '');
  for (let seq = 1; ;) {
    let got = 0;
    let pending = 0;
    try {
      const page = await jsm.direct.getBatch(kvStreamName(bucket), {
        seq,
        batch: SCAN_PAGE,
        next_by_subj: kvSubject(bucket, filter),
      });
      for await (const m of page) {
        got++;
        seq = m.seq + 1;
        pending = m.pending;
        const op = m.header?.get('KV-Operation');
        const deleted =
          op === 'DEL' ||
          op === 'PURGE' ||
          m.data.length === 0 ||
          (m.header?.get('Nats-Marker-Reason') ?? '') !== '';
        yield { key: m.subject.slice(prefix.length), deleted, msg: m };
      }
    } catch (e) {
      // A page that finds nothing (an empty bucket, or nothing after `seq`) ends with a 404.
      const status = (e as { code?: unknown } | null)?.code;
      if (!(e instanceof JetStreamError && status === STATUS_NOT_FOUND && got === 0)) throw e;
    }
    // A page may end early at the server's byte limit; the last message says what is left
    // (negative: the server did not say, so a full page means there may be more).
    const more = pending > 0 || (pending < 0 && got === SCAN_PAGE);
    if (got === 0 || !more) return;
  }
}

/**
 * The last value of every key of `bucket` that matches `filter` (KV wildcards), read with
 * {@link scanBucket} in stream order, so a later message of a key replaces an earlier one. No
 * consumer is made: `kv.keys()` leaves an ordered consumer behind for minutes, and a read on
 * every `REQ_INITIAL_DATA` filled the stream's consumer limit (1,000) within minutes. Not one
 * `multi_last` get either: the server refuses it past 1,024 keys ("too many results"), delete
 * markers included, and a room's hand keys pass that within minutes of a busy room's hands
 * (markers stay {@link DELETE_MARKER_TTL_MS}). Deleted keys and values that are not JSON are left out.
 */
export async function lastValues(
  jsm: JetStreamManager,
  bucket: Bucket,
  filter: string,
): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for await (const { key, deleted, msg } of scanBucket(jsm, bucket, filter)) {
    if (deleted) {
      out.delete(key);
      continue;
    }
    try {
      out.set(key, msg.json());
    } catch {
      out.delete(key); // not one of ours
    }
  }
  return out;
}
