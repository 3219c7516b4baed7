import { jest } from '@jest/globals';
import { PresenceState, type PresenceRecord } from '../../src/domain/presence.js';
import { silentLogger } from '../../src/runtime/logger.js';
import {
  DUE_HEAP_SLACK,
  DueIndex,
  DueQueue,
  SWEEP_CONCURRENCY,
  type Due,
} from '../../src/worker/presence-due.js';

const noop = (): Promise<void> => Promise.resolve();
const due = (at: number): Due => ({ at, run: noop });

describe('DueQueue: records by the time their period ends', () => {
  test('takeDue returns what is due at the time given, earliest first, and only once', () => {
    const q = new DueQueue();
    q.set('c', due(30));
    q.set('a', due(10));
    q.set('later', due(100));
    q.set('b', due(20));
    expect(q.takeDue(30).map(([k]) => k)).toEqual(['a', 'b', 'c']);
    expect(q.takeDue(30)).toEqual([]);
    expect(q.has('later')).toBe(true);
    expect(q.takeDue(100).map(([k]) => k)).toEqual(['later']);
    expect(q.has('later')).toBe(false);
  });

  test('any order of times comes out sorted', () => {
    const q = new DueQueue();
    const ats = Array.from({ length: 500 }, (_, i) => (i * 7919) % 1_000);
    ats.forEach((at, i) => q.set(`k${i}`, due(at)));
    const out = q.takeDue(Number.MAX_SAFE_INTEGER).map(([, d]) => d.at);
    expect(out).toHaveLength(ats.length);
    expect(out).toEqual([...ats].sort((x, y) => x - y));
  });

  test('a key set again keeps only its latest due; a deleted key never comes up', () => {
    const q = new DueQueue();
    const latest = due(50);
    q.set('k', due(10));
    q.set('k', latest);
    q.set('gone', due(5));
    q.delete('gone');
    expect(q.has('gone')).toBe(false);
    expect(q.takeDue(10)).toEqual([]);
    expect(q.takeDue(50)).toEqual([['k', latest]]);
  });

  test('entries replaced many times do not pile up in the heap', () => {
    const q = new DueQueue();
    q.set('other', due(1));
    for (let i = 0; i < 10 * DUE_HEAP_SLACK; i++) q.set('k', due(1_000 + i));
    expect(q.heapSize).toBeLessThanOrEqual(2 * 2 + DUE_HEAP_SLACK + 1);
    expect(q.takeDue(Number.MAX_SAFE_INTEGER)).toEqual([
      ['other', expect.objectContaining({ at: 1 })],
      ['k', expect.objectContaining({ at: 1_000 + 10 * DUE_HEAP_SLACK - 1 })],
    ]);
  });
});

/** A record of `state` with connections on `servers`, its times `msAgo` before now. */
function record(state: PresenceState, msAgo: number, servers: string[] = []): PresenceRecord {
  const at = new Date(Date.now() - msAgo).toISOString();
  return {
    roomId: 'room',
    userId: 'user',
    state,
    connections: servers.map((server, cid) => ({ server, cid, since: at })),
    since: at,
    changedAt: at,
    ...(state === PresenceState.Away ? { awayAt: at } : {}),
  };
}

const GRACE_MS = 60_000;
const RETENTION_MS = 3_600_000;

/** An index whose work only records what it was asked. */
function index(fail = false): { idx: DueIndex; calls: string[] } {
  const calls: string[] = [];
  const idx = new DueIndex(
    { graceMs: GRACE_MS, retentionMs: RETENTION_MS },
    {
      graceOver: (r, awayAt) => {
        calls.push(`grace_over ${r.userId} ${awayAt}`);
        return fail ? Promise.reject(new Error('JetStream hiccup')) : Promise.resolve();
      },
      retentionOver: (r, changedAt) => {
        calls.push(`retention_over ${r.userId} ${changedAt}`);
        return Promise.resolve();
      },
    },
    silentLogger(),
  );
  return { idx, calls };
}

describe('DueIndex: records by server and by the end of their period', () => {
  afterEach(() => jest.restoreAllMocks());

  test('keys follow the servers their connections are on', () => {
    const { idx } = index();
    idx.track('room.a', record(PresenceState.Online, 0, ['s1', 's2']));
    idx.track('room.b', record(PresenceState.Online, 0, ['s1']));
    expect([...idx.keysOn('s1')].sort()).toEqual(['room.a', 'room.b']);
    expect([...idx.servers()].sort()).toEqual(['s1', 's2']);
    idx.track('room.a', record(PresenceState.Online, 0, ['s2']));
    idx.track('room.b', undefined);
    expect([...idx.keysOn('s1')]).toEqual([]);
    expect([...idx.servers()]).toEqual(['s2']);
    idx.track('room.a', record(PresenceState.Away, 0));
    expect([...idx.servers()]).toEqual([]);
  });

  test('an away user is due when its grace period is over, not before', async () => {
    const { idx, calls } = index();
    const r = record(PresenceState.Away, GRACE_MS - 10_000);
    idx.track('room.user', r);
    await idx.sweep();
    expect(calls).toEqual([]);
    const now = Date.now();
    jest.spyOn(Date, 'now').mockReturnValue(now + 10_000);
    await idx.sweep();
    expect(calls).toEqual([`grace_over user ${r.awayAt}`]);
    await idx.sweep();
    expect(calls).toHaveLength(1);
  });

  test('a departed user is due when its retention period is over; an online one never', async () => {
    const { idx, calls } = index();
    const left = record(PresenceState.Left, RETENTION_MS + 1);
    idx.track('room.left', left);
    idx.track('room.online', record(PresenceState.Online, RETENTION_MS + 1, ['s1']));
    await idx.sweep();
    expect(calls).toEqual([`retention_over user ${left.changedAt}`]);
  });

  test('a record that changes is due by its new state: a user back online is not', async () => {
    const { idx, calls } = index();
    idx.track('room.user', record(PresenceState.Away, GRACE_MS + 1));
    idx.track('room.user', record(PresenceState.Online, 0, ['s1']));
    await idx.sweep();
    expect(calls).toEqual([]);
  });

  test('a step that fails is tried again a grace period later', async () => {
    const { idx, calls } = index(true);
    idx.track('room.user', record(PresenceState.Away, GRACE_MS + 1));
    await idx.sweep();
    expect(calls).toHaveLength(1);
    await idx.sweep();
    expect(calls).toHaveLength(1);
    const now = Date.now();
    jest.spyOn(Date, 'now').mockReturnValue(now + GRACE_MS + 1);
    await idx.sweep();
    expect(calls).toHaveLength(2);
  });

  test(`one sweep runs ${SWEEP_CONCURRENCY} steps at once at most, and sweeps do not overlap`, async () => {
    let running = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done: string[] = [];
    const idx = new DueIndex(
      { graceMs: GRACE_MS, retentionMs: RETENTION_MS },
      {
        graceOver: async (r) => {
          running++;
          most = Math.max(most, running);
          await gate;
          running--;
          done.push(r.userId);
        },
        retentionOver: noop,
      },
      silentLogger(),
    );
    const users = 2 * SWEEP_CONCURRENCY + 1;
    for (let i = 0; i < users; i++)
      idx.track(`room.u${i}`, { ...record(PresenceState.Away, GRACE_MS + 1), userId: `u${i}` });
    const first = idx.sweep();
    await idx.sweep(); // returns at once: the first is still running
    expect(running).toBe(SWEEP_CONCURRENCY);
    release();
    await first;
    expect(most).toBe(SWEEP_CONCURRENCY);
    expect(done).toHaveLength(users);
  });
});
