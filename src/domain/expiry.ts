/**
 * In-memory caches whose entries stop being trusted after a while. An entry past its time is
 * useless, yet a map keeps it until something deletes it: without {@link dropExpired}, such a
 * cache holds every key it ever saw, up to its size bound.
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
