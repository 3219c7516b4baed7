/**
 * KV buckets (DESIGN.md §9) and an in-memory cache that follows a bucket through a watch, so hot
 * paths (the callout's room, block and presence lookups) read memory, not JetStream.
 */
import {
  JetStreamApiCodes,
  JetStreamApiError,
  JetStreamError,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type StoredMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry, type KvOptions, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { describeError, ErrorCode, ToriiError } from './errors.js';
import type { Logger } from './logger.js';
import { nanos } from './streams.js';
import { Bucket, kvStreamName, kvSubject } from './subjects.js';

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
export function bucketOptions(name: Bucket, replicas = 1): Partial<KvOptions> {
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
export const CAS_ATTEMPTS = 10;

/** A compare-and-set lost to a writer that kept winning: retrying later may succeed. */
export class CasConflictError extends ToriiError {
  constructor(key: string, options?: { cause?: unknown }) {
    super(ErrorCode.Conflict, `${key} changed ${CAS_ATTEMPTS} times while being updated`, options);
  }
}

/** True for the JetStream answer to a write whose expected revision was not the key's last. */
export function isCasConflict(e: unknown): boolean {
  return (
    e instanceof JetStreamApiError &&
    (e.code === JetStreamApiCodes.StreamWrongLastSequence ||
      e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** What {@link casUpdate} writes: a new value, a deletion, or nothing (`undefined`). */
export type CasStep<T> = { put: T } | { delete: true } | undefined;

/** The outcome of {@link casUpdate}. */
export interface CasResult<T> {
  /** The value before the write that won (undefined when there was none). */
  previous: T | undefined;
  /** What was written: the step, or undefined when `decide` asked for nothing. */
  step: CasStep<T>;
}

/**
 * The one compare-and-set of Torii: reads `key`, lets `decide` say what to write given the value
 * there (undefined when absent, deleted or malformed) and when it was stored (the server's time;
 * undefined when absent), and writes it only if no one wrote the key
 * in between, reading again after each conflict. Any other error propagates at once: a JetStream
 * outage is not a conflict and must not be retried into a long stall. `decide` may run several
 * times and must not have effects of its own; act on the returned step instead.
 *
 * A deletion leaves a marker that expires after {@link DELETE_MARKER_TTL}, so deleted keys leave
 * nothing behind.
 */
export async function casUpdate<T>(
  kv: KV,
  key: string,
  parse: (data: unknown) => T | undefined,
  decide: (current: T | undefined, storedAt: Date | undefined) => CasStep<T>,
): Promise<CasResult<T>> {
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
      } else if (e) {
        await kv.update(key, JSON.stringify(step.put), revision);
      } else {
        await kv.create(key, JSON.stringify(step.put));
      }
      return { previous: current, step };
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

/** Delay before re-watching after the watch ended unexpectedly, in milliseconds. */
const REWATCH_DELAY_MS = 1_000;

/**
 * A map that mirrors a KV bucket. Values are decoded by `parse`; a value that does not parse is
 * logged and treated as absent (one bad record must not poison the cache). After a reconnect the
 * bucket is re-created if the server lost it and the watch starts over; the old content stays
 * visible until the new snapshot is complete, then keys that vanished are dropped.
 */
export class KvCache<T> {
  private readonly map = new Map<string, T>();
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
export interface ScannedEntry {
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
