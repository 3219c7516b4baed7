import {
  applyPresence,
  MAX_CLOSED_REMEMBERED,
  PresenceState,
  type PresenceEvent,
  type PresenceRecord,
} from '../../src/domain/presence.js';

const a = { server: 'S1', cid: 1 };
const b = { server: 'S1', cid: 2 };
const c = { server: 'S2', cid: 1 };
const t = (s: number): string => new Date(Date.UTC(2026, 11, 1, 9, 0, s)).toISOString();
const WINDOW_MS = 60_000;
/** `REQ_LEAVE` at second `s`, with a 60 s leave window. */
const leave = (s: number): PresenceEvent => ({
  type: 'leave_requested',
  at: t(s),
  windowMs: WINDOW_MS,
});

/** Applies events in order; returns the final record and every announcement. */
function run(events: PresenceEvent[], start?: PresenceRecord) {
  let r = start;
  const said: string[] = [];
  for (const ev of events) {
    const x = applyPresence(r, 'n5', 'hana', ev);
    if (x.joined) said.push('joined');
    if (x.left) said.push('left');
    if (x.next) r = x.next;
  }
  return { r, said };
}

describe('applyPresence', () => {
  test('first connection: online, joined, with the role and name given', () => {
    const { r, said } = run([
      { type: 'connect', conn: a, at: t(0), role: 'student', name: 'Hana' },
    ]);
    expect(said).toEqual(['joined']);
    expect(r).toMatchObject({ state: 'online', since: t(0), role: 'student', name: 'Hana' });
    expect(r?.connections).toEqual([{ ...a, since: t(0) }]);
  });

  test('two tabs: online until both close, then away; the grace period ends it', () => {
    const { r, said } = run([
      { type: 'connect', conn: a, at: t(0) },
      { type: 'connect', conn: b, at: t(1) },
      { type: 'disconnect', conn: a, at: t(2) },
    ]);
    expect(r?.state).toBe('online');
    expect(said).toEqual(['joined']);
    const away = run([{ type: 'disconnect', conn: b, at: t(3) }], r);
    expect(away.r).toMatchObject({ state: 'away', awayAt: t(3), connections: [] });
    expect(away.said).toEqual([]);
    expect(
      applyPresence(away.r, 'n5', 'hana', { type: 'grace_over', awayAt: t(9), at: t(20) }).next,
    ).toBeUndefined();
    const over = run([{ type: 'grace_over', awayAt: t(3), at: t(20) }], away.r);
    expect(over.said).toEqual(['left']);
    expect(over.r).toMatchObject({ state: 'left', changedAt: t(20) });
    expect(over.r?.awayAt).toBeUndefined();
  });

  test('reconnecting within the grace period: online again, nothing announced', () => {
    const { r, said } = run([
      { type: 'connect', conn: a, at: t(0) },
      { type: 'disconnect', conn: a, at: t(1) },
      { type: 'connect', conn: b, at: t(2) },
    ]);
    expect(said).toEqual(['joined']);
    expect(r).toMatchObject({ state: 'online', since: t(0) });
    expect(r?.awayAt).toBeUndefined();
    // The grace period of the old drop no longer applies.
    expect(
      applyPresence(r, 'n5', 'hana', { type: 'grace_over', awayAt: t(1), at: t(30) }).next,
    ).toBeUndefined();
  });

  test('a leave request makes the last close a departure at once', () => {
    const { r, said } = run([
      { type: 'connect', conn: a, at: t(0) },
      leave(1),
      { type: 'disconnect', conn: a, at: t(1) },
    ]);
    expect(said).toEqual(['joined', 'left']);
    expect(r).toMatchObject({ state: 'left', changedAt: t(1) });
    expect(r?.leaving).toBeUndefined();
  });

  test('a leave announced by one tab does not outlive it while another stays', () => {
    const { r } = run([
      { type: 'connect', conn: a, at: t(0) },
      { type: 'connect', conn: b, at: t(1) },
      leave(2),
      { type: 'disconnect', conn: a, at: t(2) },
      { type: 'disconnect', conn: b, at: t(3) },
    ]);
    expect(r?.state).toBe('away');
  });

  test('DISCONNECT before its CONNECT (two replicas): no ghost online', () => {
    const first = run([
      { type: 'disconnect', conn: a, at: t(1) },
      { type: 'connect', conn: a, at: t(0) },
    ]);
    expect(first.said).toEqual([]);
    expect(first.r).toMatchObject({ state: 'left', connections: [] });
    // The same with another connection open.
    const second = run([
      { type: 'connect', conn: b, at: t(0) },
      { type: 'disconnect', conn: a, at: t(2) },
      { type: 'connect', conn: a, at: t(1) },
    ]);
    expect(second.r?.connections.map((x) => x.cid)).toEqual([2]);
    const closed = run([{ type: 'disconnect', conn: b, at: t(3) }], second.r);
    expect(closed.r?.state).toBe('away');
  });

  test("a server's connections gone: the user is away; other servers' connections stay", () => {
    const { r } = run([
      { type: 'connect', conn: a, at: t(0) },
      { type: 'connect', conn: c, at: t(1) },
      { type: 'gone', conns: [a], at: t(2) },
    ]);
    expect(r?.state).toBe('online');
    expect(r?.connections.map((x) => x.server)).toEqual(['S2']);
    const gone = run([{ type: 'gone', conns: [c], at: t(3) }], r);
    expect(gone.r?.state).toBe('away');
    expect(
      applyPresence(undefined, 'n5', 'hana', { type: 'gone', conns: [a], at: t(3) }).next,
    ).toBeUndefined();
  });

  test('coming back after leaving: joined again, a new session', () => {
    const { r, said } = run([
      { type: 'connect', conn: a, at: t(0) },
      leave(1),
      { type: 'disconnect', conn: a, at: t(1) },
      { type: 'connect', conn: b, at: t(5), role: 'teacher' },
    ]);
    expect(said).toEqual(['joined', 'left', 'joined']);
    expect(r).toMatchObject({ state: 'online', since: t(5), role: 'teacher' });
  });

  test('a second REQ_LEAVE within the window takes the grace period: a rejoin announces nothing', () => {
    const { r, said } = run([
      { type: 'connect', conn: a, at: t(0) },
      leave(1),
      { type: 'disconnect', conn: a, at: t(1) },
      { type: 'connect', conn: b, at: t(2) },
      leave(3),
      { type: 'disconnect', conn: b, at: t(3) },
      { type: 'connect', conn: c, at: t(4) },
    ]);
    expect(said).toEqual(['joined', 'left', 'joined']);
    expect(r).toMatchObject({ state: 'online', leftAt: t(1) });
    // Once the window is over, a leave is immediate again.
    const later = run([leave(62), { type: 'disconnect', conn: c, at: t(62) }], r);
    expect(later.said).toEqual(['left']);
    expect(later.r).toMatchObject({ state: 'left', leftAt: t(62) });
  });

  test(`closed connections remembered: at most ${MAX_CLOSED_REMEMBERED}, the latest`, () => {
    const events: PresenceEvent[] = [];
    for (let i = 0; i < 40; i++) {
      events.push({ type: 'connect', conn: { server: 'S1', cid: i }, at: t(i) });
      events.push({ type: 'disconnect', conn: { server: 'S1', cid: i }, at: t(i) });
    }
    const { r } = run(events);
    expect(r?.closed?.map((x) => x.cid)).toEqual(
      Array.from({ length: MAX_CLOSED_REMEMBERED }, (_, i) => 40 - MAX_CLOSED_REMEMBERED + i),
    );
  });

  test('events that change nothing write nothing', () => {
    const { r } = run([{ type: 'connect', conn: a, at: t(0) }]);
    expect(
      applyPresence(r, 'n5', 'hana', { type: 'connect', conn: a, at: t(0) }).next,
    ).toBeUndefined();
    expect(applyPresence(undefined, 'n5', 'hana', leave(0)).next).toBeUndefined();
    const left: PresenceRecord = {
      ...(r as PresenceRecord),
      state: PresenceState.Left,
      connections: [],
    };
    expect(
      applyPresence(left, 'n5', 'hana', { type: 'grace_over', awayAt: t(0), at: t(9) }).next,
    ).toBeUndefined();
  });
});
