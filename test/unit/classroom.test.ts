/**
 * The classroom state a client keeps (`RoomState`): the snapshot of REQ_INITIAL_DATA, broadcasts
 * above its snapshotSeq applied and those at or below ignored, the hand queue in order, chat and
 * whiteboard history kept whatever their sequence, and malformed strokes dropped.
 */
import { isStroke, RoomState, type InitialData } from '../../src/client/classroom.js';
import type { RoomMessage } from '../../src/client/index.js';
import { studentMe } from '../helpers/initial-data.js';

const initial: InitialData = {
  room: { id: 'demo', title: 'Demo', features: { chat: true, whiteboard: true, raiseHand: true } },
  me: studentMe('hana'),
  participants: [
    { userId: 'sensei', name: 'Tanaka Sensei', role: 'teacher', since: '2026-12-01T10:00:00Z' },
    { userId: 'hana', name: 'Hana', role: 'student', since: '2026-12-01T10:01:00Z' },
  ],
  participantCount: 2,
  hands: [{ userId: 'hana', raisedAt: '2026-12-01T10:02:00Z', note: '' }],
  snapshotSeq: 10,
};

const evt = (seq: number, event: string, data: Record<string, unknown>): RoomMessage => ({
  kind: 'event',
  subject: 'room.demo.evt',
  seq,
  body: { event, data, at: '2026-12-01T10:05:00Z' },
});

describe('RoomState', () => {
  test('lists the members in the order they joined, however precisely their times were written', () => {
    const s = new RoomState({
      ...initial,
      participants: [
        { userId: 'late', name: 'Late', role: 'student', since: '2026-12-01T10:00:00.5Z' },
        { userId: 'first', name: 'First', role: 'teacher', since: '2026-12-01T10:00:00Z' },
      ],
    });
    // nats-server writes no fractional digits on the second: "…00Z" is the earlier time.
    expect(s.participants().map((p) => p.userId)).toEqual(['first', 'late']);
  });

  test('broadcasts at or below snapshotSeq are already in the snapshot: ignored', () => {
    const s = new RoomState(initial);
    // the snapshot has hana's hand up; an older lowering must not take it down
    expect(s.receive(evt(9, 'EVT_HAND_LOWERED', { userId: 'hana', by: 'hana' }))).toEqual([]);
    expect(s.receive(evt(10, 'EVT_PARTICIPANT_LEFT', { userId: 'sensei' }))).toEqual([]);
    expect(s.queue.map((h) => h.userId)).toEqual(['hana']);
    expect([...s.members.keys()]).toEqual(['sensei', 'hana']);
  });

  test('broadcasts above it change the state, in order, and say what changed', () => {
    const s = new RoomState(initial);
    const joined = s.receive(
      evt(11, 'EVT_PARTICIPANT_JOINED', {
        userId: 'kenji',
        name: 'Kenji',
        role: 'student',
        since: '2026-12-01T10:03:00Z',
      }),
    );
    expect(joined).toEqual([
      {
        type: 'participant-joined',
        participant: {
          userId: 'kenji',
          name: 'Kenji',
          role: 'student',
          since: '2026-12-01T10:03:00Z',
        },
      },
    ]);
    s.receive(
      evt(12, 'EVT_HAND_RAISED', { userId: 'kenji', raisedAt: '2026-12-01T10:04:00Z', note: 'q' }),
    );
    // raisedAt orders the queue, not arrival
    s.receive(evt(13, 'EVT_HAND_RAISED', { userId: 'sensei', raisedAt: '2026-12-01T10:01:30Z' }));
    expect(s.queue.map((h) => h.userId)).toEqual(['sensei', 'hana', 'kenji']);
    expect(s.receive(evt(14, 'EVT_HAND_LOWERED', { userId: 'hana', by: 'sensei' }))).toEqual([
      { type: 'hand-lowered', userId: 'hana', by: 'sensei' },
    ]);
    expect(s.queue.map((h) => h.userId)).toEqual(['sensei', 'kenji']);
    s.receive(evt(15, 'EVT_PARTICIPANT_LEFT', { userId: 'kenji' }));
    expect([...s.members.keys()]).toEqual(['sensei', 'hana']);
    expect(s.receive(evt(16, 'EVT_SESSION_ENDED', { roomId: 'demo', reason: 'deleted' }))).toEqual([
      { type: 'session-ended', data: { roomId: 'demo', reason: 'deleted' } },
    ]);
    expect(s.receive(evt(17, 'EVT_FROM_A_NEWER_SERVER', {}))).toEqual([]);
  });

  test('chat and whiteboard are history whatever their sequence; bad strokes are dropped', () => {
    const s = new RoomState(initial);
    const stroke = {
      color: '#000',
      width: 0.01,
      points: [
        [0, 0],
        [1, 1],
      ],
    };
    s.receive({
      kind: 'chat',
      subject: 'room.demo.chat.sensei',
      seq: 3,
      from: 'sensei',
      body: { text: 'hi', at: 'x' },
    });
    s.receive({
      kind: 'whiteboard',
      subject: 'room.demo.wb.sensei',
      seq: 4,
      from: 'sensei',
      body: stroke,
    });
    s.receive({
      kind: 'whiteboard',
      subject: 'room.demo.wb.sensei',
      seq: 5,
      from: 'sensei',
      body: { points: 'x' },
    });
    s.receive({
      kind: 'chat',
      subject: 'room.demo.chat.hana',
      seq: 6,
      from: 'hana',
      body: 'not json',
    });
    expect(s.history).toEqual([
      { from: 'sensei', text: 'hi', at: 'x', seq: 3 },
      { ...stroke, from: 'sensei', seq: 4 },
    ]);
  });

  test('isStroke bounds what a sender can make others draw', () => {
    expect(isStroke({ color: '#000', width: 0.01, points: [[0.5, 0.5]] })).toBe(true);
    expect(isStroke({ color: '#000', width: 0.01, points: [[0.5, Infinity]] })).toBe(false);
    expect(isStroke({ color: 'x'.repeat(33), width: 0.01, points: [] })).toBe(false);
    const many = Array.from({ length: 501 }, () => [0, 0]);
    expect(isStroke({ color: '#000', width: 0.01, points: many })).toBe(false);
    expect(isStroke(null)).toBe(false);
  });
});
