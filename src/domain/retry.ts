/**
 * The one retry mechanism: capped exponential backoff with jitter and a deadline. Browser-safe
 * (timers only), so the SDK, the page and the roles share it.
 */

/** How long to wait between tries, in milliseconds. */
export interface Backoff {
  /** Wait after the first failure. */
  firstMs: number;
  /** Longest wait, however many failures. */
  maxMs: number;
}

/** The longest wait after `failures` failures (1 for the first): doubling from the first, capped. */
export function backoffCeilingMs(b: Backoff, failures: number): number {
  return Math.min(b.maxMs, b.firstMs * 2 ** Math.max(0, failures - 1));
}

/**
 * A wait between half of `ms` and `ms`: the half that is random keeps clients that failed
 * together (a server restart, a leader election) from all trying again at the same moment.
 */
export function jittered(ms: number, random: () => number = Math.random): number {
  return ms / 2 + (ms / 2) * random();
}

/** Options of {@link retry}. */
interface RetryOptions extends Backoff {
  /** No try starts after this time (epoch milliseconds); unbounded when absent. */
  deadline?: number;
  /** Whether a failure may be tried again; every failure when absent. */
  retryable?: (e: unknown) => boolean;
  /** Stops trying (the caller is closing): the last failure is thrown. */
  stopped?: () => boolean;
  /** Told each failure that will be tried again, with the wait before the next try. */
  onRetry?: (e: unknown, waitMs: number) => void;
  /** For tests: where the random half of each wait comes from. */
  random?: () => number;
}

/**
 * Runs `fn` until it resolves. After a failure that is retryable, it waits a jittered backoff
 * and tries again, unless the caller stopped or the next try would start after the deadline;
 * then the last failure is thrown.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const wait = jittered(backoffCeilingMs(o, attempt), o.random);
      if (
        (o.retryable && !o.retryable(e)) ||
        o.stopped?.() === true ||
        (o.deadline !== undefined && Date.now() + wait > o.deadline)
      )
        throw e;
      o.onRetry?.(e, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
