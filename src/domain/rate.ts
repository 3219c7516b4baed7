/**
 * Token buckets, as plain data: a bucket is stored where the state it guards lives (a KV record
 * under compare-and-set, so every worker replica draws from the same bucket) or kept in memory.
 * Pure; nothing Node-only, so the SDK uses it too.
 */

/** A bucket's state: tokens left at `at` (epoch milliseconds). */
export interface RateBudget {
  tokens: number;
  at: number;
}

/** `burst` tokens at most; one comes back every `refillMs` milliseconds. */
export interface RateLimit {
  burst: number;
  refillMs: number;
}

/** A limit of `count` per `windowMs`: a full bucket of `count`, refilled over the window. */
export const perWindow = (count: number, windowMs: number): RateLimit => ({
  burst: count,
  refillMs: windowMs / count,
});

/** Parses a stored budget; undefined (a full bucket) for anything else. */
export function parseBudget(data: unknown): RateBudget | undefined {
  const b = data as Partial<RateBudget> | null | undefined;
  return b && Number.isFinite(b.tokens) && Number.isFinite(b.at) ? (b as RateBudget) : undefined;
}

/**
 * Takes `cost` tokens at `now`: `ok` says whether there were enough, `next` is the bucket to
 * store when `ok` (unchanged otherwise), `retryInMs` how long until there are. A missing bucket is
 * full; a clock that went back refills nothing.
 */
export function takeTokens(
  b: RateBudget | undefined,
  now: number,
  limit: RateLimit,
  cost = 1,
): { ok: boolean; next: RateBudget; retryInMs: number } {
  const elapsed = b ? Math.max(0, now - b.at) : 0;
  const tokens = b
    ? Math.min(limit.burst, b.tokens + elapsed / Math.max(limit.refillMs, 1e-9))
    : limit.burst;
  if (tokens + 1e-9 >= cost)
    return { ok: true, next: { tokens: tokens - cost, at: now }, retryInMs: 0 };
  return {
    ok: false,
    next: b ?? { tokens, at: now },
    retryInMs: Math.ceil((cost - tokens) * limit.refillMs),
  };
}

/**
 * Buckets by key in memory, for bounds one process enforces alone (the SDK's per-sender live
 * filter, a worker replica's request bound). Idle keys are forgotten once their bucket is full
 * again, and at most `maxKeys` are kept, so a stream of new keys cannot grow it.
 */
export class RateGate {
  private readonly buckets = new Map<string, RateBudget>();

  constructor(
    private readonly limit: RateLimit,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes `cost` from `key`'s bucket; false (and nothing taken) when it has not enough. */
  take(key: string, now: number, cost = 1): boolean {
    const r = takeTokens(this.buckets.get(key), now, this.limit, cost);
    if (!r.ok) return false;
    this.buckets.delete(key); // re-inserted last: the map stays in order of last use
    if (this.buckets.size >= this.maxKeys) this.forget(now);
    this.buckets.set(key, r.next);
    return true;
  }

  /** Drops buckets that are full again (nothing to remember), then the oldest if still too many. */
  private forget(now: number): void {
    const fullAfter = this.limit.burst * this.limit.refillMs;
    for (const [k, b] of this.buckets) if (now - b.at >= fullAfter) this.buckets.delete(k);
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.maxKeys) break;
      this.buckets.delete(k);
    }
  }
}
