import { MsgId, SystemMsgIds } from '../../src/infra/msg-ids.js';

describe('system message ids', () => {
  test('the same logical message gets the same id in every process holding the secret', () => {
    const a = new SystemMsgIds('service-password');
    const b = new SystemMsgIds('service-password');
    expect(a.of('left', 'n5', 'hana', '2026-12-07T08:00:00.000Z')).toBe(
      b.of('left', 'n5', 'hana', '2026-12-07T08:00:00.000Z'),
    );
    expect(a.of('evt', '12-345', 0)).toBe(b.of('evt', '12-345', '0'));
  });

  test('another secret, another message or another split of the parts gives another id', () => {
    const a = new SystemMsgIds('service-password');
    const ids = new Set([
      a.of('left', 'n5', 'hana', 't'),
      new SystemMsgIds('other-password').of('left', 'n5', 'hana', 't'),
      a.of('lowered', 'n5', 'hana', 't'),
      a.of('left', 'n5-hana', 't'),
      a.of('left', 'n5', 'hana-t'),
    ]);
    expect(ids.size).toBe(5);
  });

  test('ids show nothing of the message and fit a Nats-Msg-Id', () => {
    const id = new SystemMsgIds('service-password').of('room-updated', 'n5', 42);
    expect(id).toMatch(/^sys-[A-Za-z0-9_-]{43}$/);
    expect(id).not.toContain('n5');
    expect(() => new SystemMsgIds('')).toThrow(/non-empty secret/);
  });
});

describe('MsgId: the logical messages Torii stores', () => {
  const ids = new SystemMsgIds('service-password');
  const t = '2026-12-07T08:00:00.000Z';

  test('keep the ids earlier versions gave, so a rolling upgrade stores no message twice', () => {
    expect(ids.of(...MsgId.answer('12-345'))).toBe(ids.of('ans', '12-345'));
    expect(ids.of(...MsgId.eventBroadcast('12-345', 1))).toBe(ids.of('evt', '12-345', 1));
    expect(ids.of(...MsgId.presenceBatch('n5', 3, 40))).toBe(ids.of('batch', 'n5', 3, 40));
    expect(ids.of(...MsgId.joined('n5', 'hana', t))).toBe(ids.of('joined', 'n5', 'hana', t));
    expect(ids.of(...MsgId.left('n5', 'hana', t))).toBe(ids.of('left', 'n5', 'hana', t));
    expect(ids.of(...MsgId.handLoweredOnLeave('n5', 'hana', t))).toBe(
      ids.of('lowered', 'n5', 'hana', t),
    );
    expect(ids.of(...MsgId.roomUpdated('n5', 42))).toBe(ids.of('room-updated', 'n5', 42));
  });

  test('no two kinds name the same message, whatever their parts', () => {
    const all = [
      MsgId.answer('n5'),
      MsgId.eventBroadcast('n5', 0),
      MsgId.presenceBatch('n5', 0, 0),
      MsgId.joined('n5', 'hana', t),
      MsgId.left('n5', 'hana', t),
      MsgId.handLoweredOnLeave('n5', 'hana', t),
      MsgId.roomUpdated('n5', 0),
    ].map((parts) => ids.of(...parts));
    expect(new Set(all).size).toBe(all.length);
  });
});
