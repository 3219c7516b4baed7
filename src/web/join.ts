/**
 * How the classroom page gets into its room: the first join is retried like the SDK's
 * reconnects are. Kept apart from the page (no DOM here) so that a unit test drives it.
 */
import { backoffCeilingMs } from '../domain/retry.js';

/** Wait before the first retry of a failed join, in milliseconds; doubles on each failure. */
export const JOIN_RETRY_FIRST_MS = 500;
/** Longest wait between two joins, in milliseconds: a page left open gets in soon after the servers are back. */
export const JOIN_RETRY_MAX_MS = 15_000;

/** What a failed join says. */
export const JoinFailure = {
  /** The token has expired: no retry can succeed. */
  Expired: 'expired',
  /** The servers refused the user (a kick, or a callout that did not answer in time). */
  Refused: 'refused',
  /** Anything else (no network, a server restarting, a request timing out): try again. */
  Transient: 'transient',
} as const;
export type JoinFailure = (typeof JoinFailure)[keyof typeof JoinFailure];

/** How {@link joinWithRetry} ended. */
type JoinResult<T> =
  { joined: T } | { gaveUp: 'expired' | 'kicked'; error: unknown; attempts: number };

/** The wait before retry number `retry` (1 for the first): doubling from the first, capped. */
export function joinRetryDelayMs(retry: number): number {
  return backoffCeilingMs({ firstMs: JOIN_RETRY_FIRST_MS, maxMs: JOIN_RETRY_MAX_MS }, retry);
}

/**
 * Joins with `attempt` until it succeeds, the token expires, or the servers refused
 * `refusalsForKick` times in a row (the rule the SDK applies once connected: one refusal alone
 * may be a callout replica restarting). A transient failure is retried with capped backoff,
 * forever: a page open in a classroom should get in once the network is back. `onRetry` is told
 * each failure that is retried, with the wait before the next try.
 */
export async function joinWithRetry<T>(o: {
  attempt: () => Promise<T>;
  classify: (e: unknown) => JoinFailure;
  refusalsForKick: number;
  onRetry?: (e: unknown, delayMs: number) => void;
  sleep?: (ms: number) => Promise<void>;
}): Promise<JoinResult<T>> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let refusals = 0;
  for (let attempts = 1; ; attempts++) {
    try {
      return { joined: await o.attempt() };
    } catch (e) {
      const failure = o.classify(e);
      if (failure === JoinFailure.Expired) return { gaveUp: 'expired', error: e, attempts };
      // Never connected in between: refusals count on across transient failures.
      if (failure === JoinFailure.Refused && ++refusals >= o.refusalsForKick)
        return { gaveUp: 'kicked', error: e, attempts };
      const delayMs = joinRetryDelayMs(attempts);
      o.onRetry?.(e, delayMs);
      await sleep(delayMs);
    }
  }
}
