import { TokenBucket, WorkQueue, type Clock } from '../../src/controller/queue.js';
import { setCondition } from '../../src/controller/reconciler.js';

/** A manual clock: timers fire when `advance` passes their time. */
class FakeClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
}

describe('WorkQueue', () => {
  test('de-duplicates queued keys and hands them out in order', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  test('a key added while processing is processed again after done, never concurrently', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = await q.get();
    q.add('a'); // changed while being reconciled
    expect(q.length).toBe(0);
    const second = q.get();
    let got: string | undefined;
    void second.then((x) => (got = x));
    await Promise.resolve();
    expect(got).toBeUndefined();
    q.done(k as string);
    expect(await second).toBe('a');
  });

  test('failures back off exponentially per key and never give up', () => {
    const clock = new FakeClock();
    const q = new WorkQueue({
      clock,
      backoffBaseMs: 5,
      backoffMaxMs: 1_000_000,
      retryQps: 1e9,
      retryBurst: 1e9,
    });
    const delays = Array.from({ length: 30 }, () => q.addRateLimited('a'));
    expect(delays.slice(0, 4)).toEqual([5, 10, 20, 40]);
    expect(delays.at(-1)).toBe(1_000_000); // capped, still retried
    expect(q.retries('a')).toBe(30);
    q.forget('a');
    expect(q.addRateLimited('a')).toBe(5);
  });

  test('delayed keys arrive after their delay; the earliest pending delay wins', () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    q.addAfter('a', 5_000);
    q.addAfter('a', 9_000);
    clock.advance(4_999);
    expect(q.length).toBe(0);
    clock.advance(1);
    expect(q.length).toBe(1);
    clock.advance(10_000);
    expect(q.length).toBe(1);
  });

  test('the global retry bucket spaces retries of many keys', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(10, 2, clock);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([0, 0, 100, 200]);
    clock.advance(1_000);
    expect(bucket.take()).toBe(0);
  });

  test('shutdown releases waiting workers', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.shutdown();
    expect(await waiting).toBeUndefined();
    q.add('x');
    expect(await q.get()).toBeUndefined();
  });
});

describe('setCondition', () => {
  test('keeps the transition time while the status holds', () => {
    const t1 = new Date('2026-01-01T00:00:00Z');
    const t2 = new Date('2026-01-01T00:05:00Z');
    const a = setCondition(
      undefined,
      { type: 'Ready', status: 'True', reason: 'Reconciled', message: 'ok' },
      t1,
    );
    const b = setCondition(
      a,
      { type: 'Ready', status: 'True', reason: 'Reconciled', message: 'still ok' },
      t2,
    );
    expect(b[0]?.lastTransitionTime).toBe(t1.toISOString());
    const c = setCondition(
      b,
      { type: 'Ready', status: 'False', reason: 'NatsUnavailable', message: 'down' },
      t2,
    );
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({
      status: 'False',
      reason: 'NatsUnavailable',
      lastTransitionTime: t2.toISOString(),
    });
  });
});
