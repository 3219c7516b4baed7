/**
 * KV buckets (DESIGN.md §9) and an in-memory cache that follows a bucket through a watch, so hot
 * paths (the callout's room, block and presence lookups) read memory, not JetStream.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { describeError } from './errors.js';
import type { Logger } from './logger.js';
import { kvStreamName, kvSubject, type Bucket } from './subjects.js';

/** Options of Torii's buckets: one value per key, file storage. */
export function bucketOptions(replicas = 1): Partial<KvOptions> {
  return { history: 1, replicas, storage: 'file' };
}

/** Opens a bucket, creating it with Torii's options when it does not exist. */
export async function openBucket(nc: NatsConnection, name: Bucket, replicas = 1): Promise<KV> {
  const kvm = new Kvm(jetstream(nc));
  // open() does not check that the bucket exists; status() does.
  try {
    const kv = await kvm.open(name);
    await kv.status();
    return kv;
  } catch {
    return kvm.create(name, bucketOptions(replicas));
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
  private readonly listeners: ((key: string, value: T | undefined) => void)[] = [];
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

  /** Called after every change, with `undefined` for deletions. */
  onChange(fn: (key: string, value: T | undefined) => void): void {
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
        // Every key's last value is delivered, and the last message filed under the bucket's
        // subjects is one of them: seeing its revision means the snapshot is complete. Not the
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
        this.watcher = await this.kv.watch();
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

  /** Sequence of the last message filed under one of the bucket's keys; 0 when there is none. */
  private async lastKeySeq(): Promise<number> {
    const jsm = await jetstreamManager(this.nc, { checkAPI: false });
    const last = await jsm.streams.getMessage(kvStreamName(this.name), {
      last_by_subj: kvSubject(this.name, '>'),
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
    this.set(e.key, value);
  }

  private set(key: string, value: T | undefined): void {
    if (value === undefined) {
      if (!this.map.delete(key)) return;
    } else {
      this.map.set(key, value);
    }
    for (const fn of this.listeners) fn(key, value);
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.stop();
  }
}
