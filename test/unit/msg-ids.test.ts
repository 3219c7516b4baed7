import { SystemMsgIds } from '../../src/infra/msg-ids.js';

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
