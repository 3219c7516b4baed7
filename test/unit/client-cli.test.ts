import { formatRoomMessage, tokenIdentity } from '../../src/commands/client.js';
import type { RoomMessage } from '../../src/client/index.js';
import { ConfigError } from '../../src/protocol/errors.js';

/** An unsigned JWT with these claims: the client only reads them (the server verifies). */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'EdDSA', typ: 'JWT' })}.${part(claims)}.sig`;
}

const evt = (event: string, data: Record<string, unknown>, seq = 1): RoomMessage => ({
  kind: 'event',
  subject: 'room.r1.evt',
  seq,
  body: { event, data, at: '2026-11-26T00:00:00.000Z' },
});

describe('torii client', () => {
  test('reads room, user and role from the token', () => {
    expect(tokenIdentity(jwt({ room: 'demo', sub: 'hana', role: 'student' }))).toEqual({
      roomId: 'demo',
      userId: 'hana',
      role: 'student',
    });
  });

  test.each([
    ['not a JWT', 'garbage', /--token \(TORII_TOKEN\): not a JWT/],
    ['no room claim', jwt({ sub: 'hana' }), /no room or sub claim/],
    [
      'a room id that would inject into subjects',
      jwt({ room: 'a.>', sub: 'hana' }),
      /room: invalid roomId/,
    ],
    ['a user id with a wildcard', jwt({ room: 'demo', sub: '*' }), /sub: invalid userId/],
  ])('refuses a token with %s', (_what, token, message) => {
    expect(() => tokenIdentity(token)).toThrow(ConfigError);
    expect(() => tokenIdentity(token)).toThrow(message);
  });

  test('formats what happens in the room with display names', () => {
    const names = new Map<string, string>([['sensei', 'Tanaka Sensei']]);
    expect(
      formatRoomMessage(
        evt('EVT_PARTICIPANT_JOINED', { userId: 'hana', name: 'Hana', role: 'student' }),
        names,
      ),
    ).toBe('* Hana joined as student');
    // the join taught it hana's name
    expect(
      formatRoomMessage(
        { kind: 'chat', subject: 'room.r1.chat.hana', seq: 2, from: 'hana', body: { text: 'hi' } },
        names,
      ),
    ).toBe('<Hana> hi');
    expect(formatRoomMessage(evt('EVT_HAND_RAISED', { userId: 'hana', note: 'q' }), names)).toBe(
      '* Hana raised a hand: q',
    );
    expect(
      formatRoomMessage(evt('EVT_HAND_LOWERED', { userId: 'hana', by: 'sensei' }), names),
    ).toBe("* Tanaka Sensei lowered Hana's hand");
    expect(formatRoomMessage(evt('EVT_HAND_LOWERED', { userId: 'hana', by: 'hana' }), names)).toBe(
      '* Hana lowered a hand',
    );
    expect(formatRoomMessage(evt('EVT_PARTICIPANT_LEFT', { userId: 'kenji' }), names)).toBe(
      '* kenji left',
    );
    expect(formatRoomMessage(evt('EVT_SESSION_ENDED', { roomId: 'r1' }), names)).toBe(
      '* the session has ended',
    );
    expect(
      formatRoomMessage(
        { kind: 'answer', subject: 'room.r1.user.hana', seq: 3, body: { ok: true } },
        names,
      ),
    ).toBeUndefined();
  });
});
