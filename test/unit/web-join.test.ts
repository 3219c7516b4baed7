/** The classroom page's first join: retried with capped backoff, refusals counted like reconnects. */
import {
  JOIN_RETRY_FIRST_MS,
  JOIN_RETRY_MAX_MS,
  JoinFailure,
  joinRetryDelayMs,
  joinWithRetry,
} from '../../src/web/join.js';

/** Fails with each of `failures` in turn, then joins. */
function script(failures: JoinFailure[]) {
  const waits: number[] = [];
  let calls = 0;
  const run = joinWithRetry({
    attempt: () => {
      const f = failures[calls++];
      return f === undefined ? Promise.resolve('joined') : Promise.reject(new Error(f));
    },
    classify: (e) => (e as Error).message as JoinFailure,
    refusalsForKick: 2,
    // the waits are recorded, not slept: the test is about which they are
    sleep: (ms) => {
      waits.push(ms);
      return Promise.resolve();
    },
  });
  return { run, waits, calls: () => calls };
}

describe('joinWithRetry', () => {
  test('transient failures are retried until the join succeeds, backing off to the cap', async () => {
    const s = script(Array<JoinFailure>(8).fill(JoinFailure.Transient));
    expect(await s.run).toEqual({ joined: 'joined' });
    expect(s.calls()).toBe(9);
    expect(s.waits[0]).toBe(JOIN_RETRY_FIRST_MS);
    expect(s.waits[1]).toBe(2 * JOIN_RETRY_FIRST_MS);
    expect(s.waits.every((w, i) => i === 0 || w >= (s.waits[i - 1] ?? 0))).toBe(true);
    expect(Math.max(...s.waits)).toBe(JOIN_RETRY_MAX_MS);
  });

  test('one refusal is retried; two in a row are a kick', async () => {
    const once = script([JoinFailure.Refused]);
    expect(await once.run).toEqual({ joined: 'joined' });
    const twice = script([JoinFailure.Refused, JoinFailure.Refused]);
    expect(await twice.run).toMatchObject({ gaveUp: 'kicked', attempts: 2 });
  });

  test('a transient failure between two refusals does not reset the count (no connection)', async () => {
    const s = script([JoinFailure.Refused, JoinFailure.Transient, JoinFailure.Refused]);
    expect(await s.run).toMatchObject({ gaveUp: 'kicked', attempts: 3 });
  });

  test('an expired token gives up at once', async () => {
    const s = script([JoinFailure.Expired]);
    expect(await s.run).toMatchObject({ gaveUp: 'expired', attempts: 1 });
    expect(s.waits).toEqual([]);
  });

  test('the delay doubles from the first and stays at the cap', () => {
    expect(joinRetryDelayMs(1)).toBe(JOIN_RETRY_FIRST_MS);
    expect(joinRetryDelayMs(3)).toBe(4 * JOIN_RETRY_FIRST_MS);
    expect(joinRetryDelayMs(1_000)).toBe(JOIN_RETRY_MAX_MS);
  });
});
