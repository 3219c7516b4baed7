/** The pure coalescing logic of large rooms (src/domain/presence-batch.ts). */
import {
  buildBatch,
  byJoined,
  checkPageRequest,
  cursorAfter,
  isLargeRoom,
  nextBatchMark,
  pageOf,
  PageRequestError,
  parseBatchMark,
  PRESENCE_BATCH_MAX_BYTES,
  PRESENCE_BATCH_MAX_LISTED,
  prunePending,
  relevantParticipants,
  seatChange,
  type ParticipantEntry,
  type PendingChange,
} from '../../src/domain/presence-batch.js';
import type { PresenceState } from '../../src/domain/presence.js';
import { type PresenceRecord } from '../../src/domain/presence.js';
import { RoomState } from '../../src/client/classroom.js';
import { MAX_PARTICIPANTS_PAGE } from '../../src/protocol/limits.js';
import { studentMe } from '../helpers/initial-data.js';

const rec = (userId: string, state: PresenceState): PresenceRecord => ({
  roomId: 'hall',
  userId,
  state,
  connections: [],
  since: '2026-12-07T10:00:00.000Z',
  changedAt: '2026-12-07T10:00:00.000Z',
});
const entry = (i: number): ParticipantEntry => ({
  userId: `u${i}`,
  name: `User ${i}`,
  role: 'student',
  since: new Date(Date.UTC(2026, 11, 7, 10, 0, i)).toISOString(),
});
const change = (i: number, rev: number, present = true): PendingChange => ({
  rev,
  present,
  entry: entry(i),
});

test('a room is large above the threshold, not at it', () => {
  expect(isLargeRoom(50, 50)).toBe(false);
  expect(isLargeRoom(51, 50)).toBe(true);
});

test('seat changes: taking a seat is a join, giving it up a departure, away keeps it', () => {
  expect(seatChange(undefined, rec('a', 'online'))).toBe('joined');
  expect(seatChange(rec('a', 'left'), rec('a', 'online'))).toBe('joined');
  expect(seatChange(rec('a', 'online'), rec('a', 'away'))).toBeUndefined();
  expect(seatChange(rec('a', 'away'), rec('a', 'left'))).toBe('left');
  expect(seatChange(rec('a', 'online'), undefined)).toBe('left');
  expect(seatChange(rec('a', 'left'), undefined)).toBeUndefined();
  expect(seatChange(undefined, rec('a', 'left'))).toBeUndefined();
});

test('the mark moves once per interval and only for changes above it', () => {
  const first = nextBatchMark(undefined, 10, 1_000, 1_000);
  expect(first).toEqual({ throughRev: 10, at: 1_000, n: 1 });
  // Another replica within the interval, or nothing new: no batch.
  expect(nextBatchMark(first, 20, 1_999, 1_000)).toBeUndefined();
  expect(nextBatchMark(first, 10, 5_000, 1_000)).toBeUndefined();
  expect(nextBatchMark(first, 20, 2_000, 1_000)).toEqual({ throughRev: 20, at: 2_000, n: 2 });
  expect(parseBatchMark({ throughRev: 1, at: 2, n: 3 })).toEqual({ throughRev: 1, at: 2, n: 3 });
  expect(parseBatchMark({ throughRev: '1', at: 2, n: 3 })).toBeUndefined();
  expect(parseBatchMark(null)).toBeUndefined();
});

test('however many joins in an interval, one batch per interval: n joins cost a member ⌈t/interval⌉ messages', () => {
  // 2,000 joins at 100/s, one replica's view: the batches a member receives are the marks moved.
  const interval = 1_000;
  let mark: ReturnType<typeof nextBatchMark>;
  let batches = 0;
  const pending = new Map<string, PendingChange>();
  for (let i = 0; i < 2_000; i++) {
    const now = i * 10; // 100 joins per second
    pending.set(`u${i}`, change(i, i + 1));
    // The worker ticks four times per interval; every tick tries.
    if (i % 2 === 0) {
      const next = nextBatchMark(mark, i + 1, now, interval);
      if (next) {
        const b = buildBatch(pending.values(), mark?.throughRev ?? 0, next.throughRev, {
          n: next.n,
          present: i + 1,
        });
        expect(b.joinedCount).toBe(next.throughRev - (mark?.throughRev ?? 0));
        expect(b.truncated).toBe(false);
        prunePending(pending, next.throughRev);
        mark = next;
        batches++;
      }
    }
  }
  expect(batches).toBeLessThanOrEqual(Math.ceil((2_000 * 10) / interval) + 1);
});

test('a batch lists changes in (after, through], departures first, within its caps', () => {
  const pending = [change(1, 5), change(2, 6, false), change(3, 7), change(4, 9)];
  const b = buildBatch(pending, 5, 8, { n: 3, present: 70 });
  expect(b).toEqual({
    n: 3,
    joined: [entry(3)],
    left: ['u2'],
    joinedCount: 1,
    leftCount: 1,
    present: 70,
    truncated: false,
  });
  const many = Array.from({ length: PRESENCE_BATCH_MAX_LISTED + 50 }, (_, i) => change(i, i + 1));
  const capped = buildBatch(many, 0, 10_000, { n: 1, present: 300 });
  expect(capped.joined).toHaveLength(PRESENCE_BATCH_MAX_LISTED);
  expect(capped.joinedCount).toBe(PRESENCE_BATCH_MAX_LISTED + 50);
  expect(capped.truncated).toBe(true);
  const long = many.map((c) => ({ ...c, entry: { ...c.entry, name: 'x'.repeat(128) } }));
  const byBytes = buildBatch(long, 0, 10_000, { n: 1, present: 300 });
  expect(JSON.stringify(byBytes.joined).length).toBeLessThanOrEqual(PRESENCE_BATCH_MAX_BYTES);
  expect(byBytes.truncated).toBe(true);
});

test('pruning drops what a mark covered, keeps what is newer', () => {
  const pending = new Map([
    ['u1', change(1, 3)],
    ['u2', change(2, 8)],
  ]);
  expect(prunePending(pending, 5)).toBe(true);
  expect([...pending.keys()]).toEqual(['u2']);
  expect(prunePending(pending, 8)).toBe(false);
});

test("a large room's initial data lists moderators, raised hands and the latest joiners", () => {
  const all = Array.from({ length: 300 }, (_, i) => entry(i));
  all[7] = { ...entry(7), role: 'teacher' };
  const list = relevantParticipants(all, {
    moderatorRoles: new Set(['teacher']),
    hands: new Set(['u9']),
    recent: 5,
  });
  expect(list.map((p) => p.userId)).toEqual(['u7', 'u9', 'u295', 'u296', 'u297', 'u298', 'u299']);
});

test('pages walk the list in join order, each exactly once', () => {
  const all = Array.from({ length: 23 }, (_, i) => entry(i)).reverse();
  const seen: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const req = checkPageRequest({ cursor, limit: 10 });
    const page = pageOf(all, req.after, req.limit);
    expect(page.total).toBe(23);
    seen.push(...page.participants.map((p) => p.userId));
    if (page.next === null) break;
    cursor = page.next;
  }
  expect(seen).toEqual(Array.from({ length: 23 }, (_, i) => `u${i}`));
  // A byte bound ends a page early, never with nothing.
  const small = pageOf(all, undefined, 10, 10);
  expect(small.participants).toHaveLength(1);
  expect(small.next).toBe(cursorAfter(entry(0)));
});

test('bad cursors and limits are refused with the field named', () => {
  const refused = (data: Record<string, unknown>): string => {
    try {
      checkPageRequest(data);
    } catch (e) {
      expect(e).toBeInstanceOf(PageRequestError);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };
  expect(refused({ limit: 0 })).toMatch(/^limit: /);
  expect(refused({ limit: 2.5 })).toMatch(/^limit: /);
  expect(refused({ limit: '10' })).toMatch(/^limit: /);
  expect(refused({ limit: MAX_PARTICIPANTS_PAGE + 1 })).toMatch(/^limit: .* more than the 500/);
  expect(refused({ cursor: 42 })).toMatch(/^cursor: /);
  expect(refused({ cursor: 'nonsense' })).toMatch(/^cursor: /);
  expect(refused({ cursor: 'not-a-time|u1' })).toMatch(/^cursor: /);
  expect(refused({ cursor: '2026-12-07T10:00:00.000Z|u.>' })).toMatch(/^cursor: /);
  expect(refused({ cursor: 'x'.repeat(200) })).toMatch(/^cursor: /);
  expect(checkPageRequest({})).toEqual({ after: undefined, limit: 100 });
});

test('the SDK applies batches to its list and count, and tells a missed batch', () => {
  const state = new RoomState({
    room: { id: 'hall', title: '', features: { chat: true, whiteboard: true, raiseHand: true } },
    me: studentMe('me'),
    participants: [entry(1), entry(2)],
    participantCount: 60,
    participantsPartial: true,
    hands: [],
    snapshotSeq: 10,
  });
  const batch = (seq: number, data: Record<string, unknown>) =>
    state.receive({
      kind: 'event',
      subject: 'room.hall.evt.~presence',
      seq,
      body: { event: 'EVT_PRESENCE_BATCH', data, at: '' },
    });
  // At or below the snapshot: already in it.
  expect(batch(9, { n: 1, joined: [entry(9)], left: [], present: 61 })).toEqual([]);
  const events = batch(11, { n: 2, joined: [entry(3)], left: ['u1'], present: 60 });
  expect(events.map((e) => e.type)).toEqual([
    'participant-left',
    'participant-joined',
    'participant-count',
  ]);
  expect([...state.members.keys()].sort()).toEqual(['u2', 'u3']);
  expect(state.count).toBe(60);
  // A page read before the departure of u3 does not bring it back.
  batch(12, { n: 3, joined: [], left: ['u3'], present: 59 });
  state.mergePage({ participants: [entry(3), entry(4)], next: null, total: 60, snapshotSeq: 11 });
  expect([...state.members.keys()].sort()).toEqual(['u2', 'u4']);
  expect(state.count).toBe(59);
  expect(batch(14, { n: 5, joined: [], left: [], present: 59 }).at(-1)).toEqual({
    type: 'participants-stale',
  });
});

describe('join order', () => {
  const entry = (userId: string, since: string) => ({ userId, name: userId, role: 's', since });

  test('by time, whatever the precision the server wrote it with (RFC 3339, trailing zeros cut)', () => {
    // nats-server writes a CONNECT time with as many fractional digits as it needs: none on the
    // second, so the text "…00Z" sorts after "…00.5Z" although it is earlier.
    const onTheSecond = entry('b', '2026-12-07T10:00:00Z');
    const halfPast = entry('a', '2026-12-07T10:00:00.5Z');
    const nanos = entry('c', '2026-12-07T10:00:00.000000001Z');
    expect([halfPast, nanos, onTheSecond].sort(byJoined).map((p) => p.userId)).toEqual([
      'b',
      'c',
      'a',
    ]);
    // Same time: by user id.
    expect(
      [entry('z', '2026-12-07T10:00:01Z'), entry('y', '2026-12-07T10:00:01.000Z')]
        .sort(byJoined)
        .map((p) => p.userId),
    ).toEqual(['y', 'z']);
  });
});
