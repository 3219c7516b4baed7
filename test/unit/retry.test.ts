import { backoffCeilingMs, jittered, retry } from '../../src/domain/retry.js';

describe('retry: the one backoff', () => {
  const b = { firstMs: 100, maxMs: 1_000 };

  test('the ceiling doubles from the first wait and stops at the longest', () => {
    expect([1, 2, 3, 4, 5, 50].map((n) => backoffCeilingMs(b, n))).toEqual([
      100, 200, 400, 800, 1_000, 1_000,
    ]);
  });

  test('a jittered wait lies between half the ceiling and the ceiling', () => {
    expect(jittered(800, () => 0)).toBe(400);
    expect(jittered(800, () => 0.999999)).toBeCloseTo(800, 3);
    for (let i = 0; i < 100; i++) {
      const w = jittered(800);
      expect(w).toBeGreaterThanOrEqual(400);
      expect(w).toBeLessThanOrEqual(800);
    }
  });

  test('tries until it works, waiting between tries', async () => {
    const waits: number[] = [];
    let n = 0;
    const r = await retry(
      (attempt) => {
        n = attempt;
        return attempt < 3 ? Promise.reject(new Error(`fail ${attempt}`)) : Promise.resolve('ok');
      },
      { firstMs: 2, maxMs: 4, random: () => 1, onRetry: (_e, w) => waits.push(w) },
    );
    expect(r).toBe('ok');
    expect(n).toBe(3);
    expect(waits).toEqual([2, 4]);
  });

  test('throws the last failure: not retryable, stopped, or past the deadline', async () => {
    const fail = (): Promise<never> => Promise.reject(new Error('no'));
    let tries = 0;
    const counted = (): Promise<never> => {
      tries++;
      return fail();
    };
    await expect(retry(counted, { ...b, retryable: () => false })).rejects.toThrow('no');
    expect(tries).toBe(1);
    await expect(retry(counted, { ...b, stopped: () => true })).rejects.toThrow('no');
    expect(tries).toBe(2);
    await expect(retry(counted, { ...b, deadline: Date.now() + 10 })).rejects.toThrow('no');
    expect(tries).toBe(3);
  });
});
