import { dropExpired } from '../../src/domain/expiry.js';

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
