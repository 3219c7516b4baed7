import { dropExpired, TrustedCache } from '../../src/domain/trusted-cache.js';

describe('dropExpired', () => {
  test('drops the expired entries at the front and stops at the first that is still good', () => {
    const map = new Map([
      ['a', { until: 10 }],
      ['b', { until: 20 }],
      ['c', { until: 30 }],
      ['d', { until: 15 }], // out of order: kept until the ones before it go
    ]);
    dropExpired(map, 20);
    expect([...map.keys()]).toEqual(['c', 'd']);
    dropExpired(map, 30);
    expect([...map.keys()]).toEqual([]);
  });

  test('an empty map, or nothing expired, changes nothing', () => {
    const empty = new Map<string, { until: number }>();
    dropExpired(empty, 100);
    expect(empty.size).toBe(0);
    const fresh = new Map([['a', { until: 200 }]]);
    dropExpired(fresh, 100);
    expect([...fresh.keys()]).toEqual(['a']);
  });
});

describe('TrustedCache', () => {
  const clock = (): { now: () => number; at: (t: number) => void } => {
    let t = 1_000;
    return { now: () => t, at: (v) => (t = v) };
  };

  test('answers a value only while it is trusted, and forgets it after', () => {
    const c = clock();
    const cache = new TrustedCache<string, number>({ maxEntries: 10, now: c.now });
    cache.trust('a', 1, 100);
    expect(cache.get('a')).toBe(1);
    c.at(1_099);
    expect(cache.get('a')).toBe(1);
    c.at(1_100);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  test('holds only the entries within their time, not every key it saw', () => {
    const c = clock();
    const cache = new TrustedCache<string, number>({ maxEntries: 1_000, now: c.now });
    for (let i = 0; i < 500; i++) {
      c.at(1_000 + i * 10);
      cache.trust(`k${i}`, i, 100);
    }
    // Each insert drops those at the front that expired: about ttl / spacing are left.
    expect(cache.size).toBeLessThanOrEqual(11);
    expect(cache.get('k499')).toBe(499);
  });

  test('a key trusted again moves to the end and keeps its new time', () => {
    const c = clock();
    const cache = new TrustedCache<string, string>({ maxEntries: 10, now: c.now });
    cache.trust('a', 'old', 100);
    cache.trust('b', 'b', 100);
    c.at(1_050);
    cache.trust('a', 'new', 100);
    c.at(1_120);
    cache.trust('c', 'c', 100); // drops b (expired at the front); a is behind it and still trusted
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe('new');
  });

  test('when full the oldest goes first', () => {
    const cache = new TrustedCache<string, number>({ maxEntries: 2, now: () => 0 });
    cache.trust('a', 1, 100);
    cache.trust('b', 2, 100);
    cache.trust('c', 3, 100);
    expect(cache.size).toBe(2);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([undefined, 2, 3]);
  });

  test('peek sees what it last trusted, even past its time; forget and forgetWhere drop entries', () => {
    const c = clock();
    const cache = new TrustedCache<string, string>({ maxEntries: 10, now: c.now });
    cache.trust('r1/a', 'r1', 10);
    cache.trust('r1/b', 'r1', 10);
    cache.trust('r2/a', 'r2', 10);
    c.at(2_000);
    expect(cache.peek('r1/a')).toBe('r1');
    expect(cache.forgetWhere((_, room) => room === 'r1')).toBe(2);
    expect(cache.peek('r1/a')).toBeUndefined();
    expect(cache.forget('r2/a')).toBe(true);
    expect(cache.forget('r2/a')).toBe(false);
  });

  test('refuses a bound below one entry', () => {
    expect(() => new TrustedCache({ maxEntries: 0 })).toThrow(/at least one entry/);
  });
});
