import { RoomIndex } from '../../src/infra/kv.js';

/** The two parts of a KvCache that the index reads. */
function fakeCache(initial: [string, number][]) {
  const map = new Map(initial);
  const listeners: ((k: string, v: number | undefined) => void)[] = [];
  return {
    entries: () => map.entries(),
    onChange: (fn: (k: string, v: number | undefined) => void) => void listeners.push(fn),
    set(k: string, v: number | undefined) {
      if (v === undefined) map.delete(k);
      else map.set(k, v);
      for (const l of listeners) l(k, v);
    },
  };
}

describe('RoomIndex', () => {
  test('groups by room what is there at start and what changes after', () => {
    const cache = fakeCache([
      ['r1.hana', 1],
      ['r1.kenji', 2],
      ['r2.sora', 3],
    ]);
    const index = new RoomIndex(cache);
    expect([...index.room('r1')]).toEqual([
      ['hana', 1],
      ['kenji', 2],
    ]);
    cache.set('r2.aoi', 4);
    cache.set('r1.hana', undefined);
    expect([...index.room('r1').keys()]).toEqual(['kenji']);
    expect([...index.room('r2').keys()].sort()).toEqual(['aoi', 'sora']);
    expect(index.room('nowhere').size).toBe(0);
  });

  test('keeps only what the filter accepts; a room with nothing left is dropped', () => {
    const cache = fakeCache([['r1.hana', 1]]);
    const odd = new RoomIndex(cache, (v) => v % 2 === 1);
    cache.set('r1.kenji', 2); // filtered out
    expect([...odd.room('r1').keys()]).toEqual(['hana']);
    cache.set('r1.hana', 4); // no longer accepted: leaves the index
    expect(odd.room('r1').size).toBe(0);
    expect([...odd.roomIds()]).toEqual([]);
  });

  test('keys without a room part are ignored', () => {
    const cache = fakeCache([['noroom', 1]]);
    const index = new RoomIndex(cache);
    expect([...index.roomIds()]).toEqual([]);
  });
});
