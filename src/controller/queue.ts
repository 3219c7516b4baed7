/**
 * A work queue of keys in the style of client-go's: a key is queued at most once, is never
 * processed by two workers at a time (a key re-added while being processed is queued again when
 * done), failed keys come back with per-key exponential backoff, and retries share a global
 * token bucket. Keys are never dropped: a Room that keeps failing keeps being retried.
 */
import { backoffCeilingMs } from '../domain/retry.js';

/** Per-key backoff: first retry after this many milliseconds, doubling (controller-runtime). */
const DEFAULT_BACKOFF_BASE_MS = 5;
/** Longest per-key backoff, in milliseconds (1000 s, as controller-runtime). */
const DEFAULT_BACKOFF_MAX_MS = 1_000_000;
/** Global retry bucket: refill rate per second and burst (controller-runtime: 10 / 100). */
const DEFAULT_RETRY_QPS = 10;
const DEFAULT_RETRY_BURST = 100;

/** Clock and timers, injectable for tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Token bucket: `take()` returns how long to wait before the caller may proceed. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly clock: Clock = systemClock,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Reserves one token; returns the delay in milliseconds until it is available. */
  take(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.qps) * 1000);
  }
}

interface WorkQueueOptions {
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  retryQps?: number;
  retryBurst?: number;
  clock?: Clock;
}

/** The queue. Consumers call `get()` and must call `done(key)` after processing. */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; handle: unknown }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private readonly bucket: TokenBucket;
  private readonly clock: Clock;
  private shuttingDown = false;

  constructor(private readonly o: WorkQueueOptions = {}) {
    this.clock = o.clock ?? systemClock;
    this.bucket = new TokenBucket(
      o.retryQps ?? DEFAULT_RETRY_QPS,
      o.retryBurst ?? DEFAULT_RETRY_BURST,
      this.clock,
    );
  }

  /** Keys waiting to be processed (not counting delayed ones). */
  get length(): number {
    return this.queue.length;
  }

  /** Keys waiting, delayed or being processed. */
  get depth(): number {
    return this.queue.length + this.delayed.size + this.processing.size;
  }

  /** Queues a key now (de-duplicated). */
  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    const waiter = this.waiters.shift();
    if (waiter) {
      this.queued.delete(key);
      this.processing.add(key);
      waiter(key);
    } else {
      this.queue.push(key);
    }
  }

  /** Queues a key after a delay; an earlier pending delay for the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + delayMs;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    if (existing) this.clock.clearTimeout(existing.handle);
    const handle = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { at, handle });
  }

  /** Queues a failed key again after its backoff (and the global retry bucket). */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const backoff = backoffCeilingMs(
      {
        firstMs: this.o.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS,
        maxMs: this.o.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS,
      },
      n + 1,
    );
    const delay = Math.max(backoff, this.bucket.take());
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears a key's failure count after a success. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** How many times in a row the key failed. */
  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to process; undefined once the queue shuts down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks a key processed; re-queues it when it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  /** Stops handing out keys; waiting `get()` calls resolve with undefined. */
  shutdown(): void {
    this.shuttingDown = true;
    for (const { handle } of this.delayed.values()) this.clock.clearTimeout(handle);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
