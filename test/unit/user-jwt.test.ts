import { buildUserClaims } from '../../src/auth/user-jwt.js';
import { compileRoom } from '../../src/domain/room-compile.js';

const room = compileRoom('n5', { features: { whiteboard: false } });
const now = new Date('2026-03-01T10:00:00Z');
const nowSec = now.getTime() / 1000;
const base = {
  issuer: 'AISSUER',
  userNkey: 'UUSER',
  clientAccount: 'CLIENTS',
  roomId: 'n5',
  userId: 'hana',
  roleName: 'teacher',
  role: room.roles.teacher!,
  tokenExp: nowSec + 3600,
  maxTtlMs: 24 * 3_600_000,
  sharedInbox: false,
  now,
};

describe('user JWT claims (docs/auth-callout.md)', () => {
  test('identity, audience, tags and expiry', () => {
    const c = buildUserClaims(base);
    expect(c).toMatchObject({
      iss: 'AISSUER',
      sub: 'UUSER',
      aud: 'CLIENTS',
      name: 'n5/hana',
      iat: nowSec,
      exp: nowSec + 3600,
    });
    expect(c.nats.tags).toEqual(['room:n5', 'user:hana', 'role:teacher']);
    expect(c.nats).toMatchObject({
      type: 'user',
      version: 2,
      // limits are the CLIENTS account's (natsconf.ts): the server ignores a callout JWT's
      subs: -1,
      data: -1,
      payload: -1,
      allowed_connection_types: ['STANDARD', 'WEBSOCKET'],
    });
  });

  test('permissions are the room template filled with this room, user and role', () => {
    const c = buildUserClaims(base);
    expect(c.nats.pub.allow).toEqual([
      'sysJsWorker.n5.hana.teacher', // events only on the connection's own role

      // no STREAM.INFO: its subjects_filter answer would name every user who got an answer
      '$JS.API.CONSUMER.INFO.n5.hana',
      '$JS.API.CONSUMER.MSG.NEXT.n5.hana',
      '$JS.API.CONSUMER.RESET.n5.hana',
      '$JS.ACK.n5.hana.*.*.*.*.*', // acks of its consumer, v1 and v2 formats
      '$JS.ACK.*.*.n5.hana.*.*.*.*.>',
      'room.n5.chat.hana',
      'room.n5.live.hana',
    ]); // no whiteboard: the room disables the feature even for teachers
    expect(c.nats.sub.allow).toEqual([
      '_INBOX.n5.hana.>',
      'room.n5.live.*',
      // the room stream's republished copies: everyone's chat, whiteboard, events; own answers
      'room.n5.rp.chat.*',
      'room.n5.rp.wb.*',
      'room.n5.rp.evt',
      'room.n5.rp.evt.*',
      'room.n5.rp.user.hana',
    ]);
    expect(JSON.stringify(c)).not.toContain('{roomId}');
  });

  test('expiry is capped by --max-ttl', () => {
    expect(
      buildUserClaims({ ...base, tokenExp: nowSec + 7 * 86400, maxTtlMs: 3_600_000 }).exp,
    ).toBe(nowSec + 3600);
  });

  test('--inbox-policy shared adds _INBOX.>', () => {
    expect(buildUserClaims({ ...base, sharedInbox: true }).nats.sub.allow).toContain('_INBOX.>');
  });
});
