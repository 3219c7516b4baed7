/**
 * In-memory caches whose entries stop being trusted after a while: what a role learned from a
 * store (a verified token, a member record read or written, a consumer known to exist) and may
 * take as true without asking again until then. One mechanism for all of them: an entry past its
 * time is never returned, an entry past its time does not linger (a map would keep it until
 * something deleted it, so a cache would hold every key it ever saw), and the size is bounded.
 */

/**
 * Deletes the entries at the front of `map` whose `until` (epoch milliseconds) is not after
 * `now`, stopping at the first that still is. A cache that inserts its entries in the order they
 * expire (a key written again is deleted first, so it moves to the end) thus holds only entries
 * within their time, at a constant cost per insert.
 */
export function dropExpired<K>(map: Map<K, { until: number }>, now: number): void {
  for (const [key, entry] of map) {
    if (entry.until > now) return;
    map.delete(key);
  }
}

/** Options of {@link TrustedCache}. */
interface TrustedCacheOptions {
  /** Most entries held; when full, the oldest goes first. */
  maxEntries: number;
  /** The clock, in epoch milliseconds. Default `Date.now`. */
  now?: () => number;
}

/**
 * Values trusted until a time each. Entries are kept in the order they were trusted, which is the
 * order they stop being trusted wherever the trust period is one constant (nearly, where it is
 * capped by the value's own expiry): each insert drops the expired ones at the front, so the cache
 * holds the last period's entries, not the last `maxEntries`.
 */
export class TrustedCache<K, V> {
  private readonly map = new Map<K, { value: V; until: number }>();
  private readonly max: number;
  private readonly now: () => number;

  constructor(o: TrustedCacheOptions) {
    if (!(o.maxEntries >= 1)) throw new RangeError('a trusted cache holds at least one entry');
    this.max = o.maxEntries;
    this.now = o.now ?? Date.now;
  }

  /** Entries held, trusted or not yet dropped. */
  get size(): number {
    return this.map.size;
  }

  /** The value of `key` while it is trusted; undefined when unknown or no longer trusted. */
  get(key: K): V | undefined {
    const hit = this.map.get(key);
    if (!hit) return undefined;
    if (hit.until > this.now()) return hit.value;
    this.map.delete(key);
    return undefined;
  }

  /**
   * The value last trusted for `key`, whether or not it still is: to compare what a watch saw
   * with what this cache would answer.
   */
  peek(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  /** Trusts `value` for `key` for `ttlMs` milliseconds from now. */
  trust(key: K, value: V, ttlMs: number): void {
    this.trustUntil(key, value, this.now() + ttlMs);
  }

  /** Trusts `value` for `key` until `until` (epoch milliseconds). */
  trustUntil(key: K, value: V, until: number): void {
    // Deleted first, so that the key moves to the end: the map stays in the order it expires.
    this.map.delete(key);
    dropExpired(this.map, this.now());
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as K);
    this.map.set(key, { value, until });
  }

  /** Stops trusting `key`; true when it was held. */
  forget(key: K): boolean {
    return this.map.delete(key);
  }

  /** Stops trusting every entry for which `matches` is true; returns how many. */
  forgetWhere(matches: (key: K, value: V) => boolean): number {
    let n = 0;
    for (const [key, e] of this.map)
      if (matches(key, e.value)) {
        this.map.delete(key);
        n++;
      }
    return n;
  }

  /** Stops trusting everything. */
  clear(): void {
    this.map.clear();
  }
}
