/**
 * The auth callout against a real nats-server configured by the same renderer as
 * `torii nats-config` (xkey-encrypted requests, AUTH/APP/CLIENTS/SYS accounts). Tested from the client's
 * side: what a room client may do, what it may not, and which tokens never get in.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { AuthorizationError, type NatsConnection } from '@nats-io/transport-node';
import { SignJWT, generateKeyPair, importJWK, type JWK } from 'jose';
import { KeyFile } from '../../src/infra/keys.js';
import { DEFAULT_ACCOUNTS } from '../../src/infra/natsconf.js';
import { Sys } from '../../src/protocol/subjects.js';
import { findTool } from '../../src/devtools/tools.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { expectViolation } from '../helpers/assert-nats.js';
import { startNats, testKeys, type TestKeys, type TestNats } from '../helpers/nats.js';
import { runAsync, waitFor } from '../helpers/procs.js';
import { publishRoom, putBlock, putPresence } from '../helpers/room.js';

let server: TestNats;
let svc: NatsConnection;
let callout: TestCallout;
const clients: NatsConnection[] = [];

async function client(room: string, user: string, role = 'student'): Promise<NatsConnection> {
  const nc = await connectClient(
    server.url,
    room,
    user,
    await token(server.keys, { room, sub: user, role }),
  );
  clients.push(nc);
  return nc;
}

/** Signs arbitrary claims with the real signing key (bypassing Torii's own checks). */
async function rawToken(
  keys: TestKeys,
  payload: Record<string, unknown>,
  o: { expIn?: number; nbfIn?: number; iss?: string; aud?: string } = {},
): Promise<string> {
  const jwk = JSON.parse(readFileSync(path.join(keys.dir, KeyFile.TokenSigningJwk), 'utf8')) as JWK;
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid })
    .setIssuer(o.iss ?? 'torii')
    .setAudience(o.aud ?? 'torii-nats')
    .setIssuedAt(now)
    .setExpirationTime(now + (o.expIn ?? 600));
  if (o.nbfIn !== undefined) jwt.setNotBefore(now + o.nbfIn);
  return jwt.sign(await importJWK(jwk, 'EdDSA'));
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, 'n5', { maxParticipants: 50 });
  await publishRoom(svc, 'other');
  await publishRoom(svc, 'tiny', { maxParticipants: 2 });
  callout = await startCallout(server.keys, [server.url]);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await svc?.close();
  await callout?.stop();
  await server?.destroy();
});

describe('a student in its room', () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await client('n5', 'hana');
  });

  test('publishes events to sysJsWorker.{room}.{self}.{role} with JetStream', async () => {
    const ack = await jetstream(nc).publish(
      'sysJsWorker.n5.hana.student',
      JSON.stringify({ event: 'REQ_INITIAL_DATA', id: 'c-1' }),
      { msgID: 'c-1' },
    );
    expect(ack.stream).toBe('sysJsWorker');
  });

  test('reads its own consumer through its private inbox, and acks', async () => {
    await jetstream(svc).publish(
      'room.n5.evt',
      JSON.stringify({ event: 'EVT_ROOM_UPDATED', data: {}, at: new Date().toISOString() }),
    );
    await jetstream(svc).publish('room.n5.user.kenji', 'not for hana');
    const consumer = await jetstream(nc).consumers.get('n5', 'hana');
    const info = await consumer.info();
    expect(info.config.filter_subjects).toEqual([
      'room.n5.chat.*',
      'room.n5.wb.*',
      'room.n5.evt',
      'room.n5.evt.*',
      'room.n5.user.hana',
    ]);
    expect(info.config.mem_storage).toBe(true);
    expect(info.config.num_replicas).toBe(1);
    const m = await consumer.next({ expires: 2_000 });
    expect(m?.subject).toBe('room.n5.evt');
    await m?.ackAck();
    const none = await consumer.next({ expires: 1_000 });
    expect(none).toBeNull(); // the other user's answer is not in hana's consumer
  });

  test('gets $JS.API.CONSUMER.INFO of its own consumer', async () => {
    const r = await nc.request('$JS.API.CONSUMER.INFO.n5.hana', '', { timeout: 2_000 });
    expect(r.json<{ stream_name: string; name: string }>()).toMatchObject({
      stream_name: 'n5',
      name: 'hana',
    });
  });

  test('chats as itself and reads live cursors of the room', async () => {
    const ack = await jetstream(nc).publish('room.n5.chat.hana', 'こんにちは');
    expect(ack.stream).toBe('n5');
    const sub = nc.subscribe('room.n5.live.*', { max: 1 });
    const peer = await client('n5', 'yuki');
    peer.publish('room.n5.live.yuki', 'cursor');
    for await (const m of sub) expect(m.subject).toBe('room.n5.live.yuki');
  });

  test.each([
    ['publish as another user', 'sysJsWorker.n5.kenji.student'],
    ['publish to another room', 'sysJsWorker.other.hana.student'],
    ['publish events with another role', 'sysJsWorker.n5.hana.teacher'],
    ['publish events without a role', 'sysJsWorker.n5.hana'],
    ['chat in another room', 'room.other.chat.hana'],
    ['chat as another user', 'room.n5.chat.kenji'],
    ['draw on the whiteboard (students may not)', 'room.n5.wb.hana'],
    ['broadcast room events', 'room.n5.evt'],
    ['broadcast about a user', 'room.n5.evt.kenji'],
    ['answer as the worker', 'room.n5.user.hana'],
    ["read another user's consumer", '$JS.API.CONSUMER.INFO.n5.kenji'],
    ["pull from another user's consumer", '$JS.API.CONSUMER.MSG.NEXT.n5.kenji'],
    ["ack another user's messages", '$JS.ACK.n5.kenji.1.1.1.1.1.0'],
    ['create a consumer', '$JS.API.CONSUMER.CREATE.n5.evil'],
    ['create a durable consumer', '$JS.API.CONSUMER.DURABLE.CREATE.n5.evil'],
    ['delete its consumer', '$JS.API.CONSUMER.DELETE.n5.hana'],
    ['create a stream', '$JS.API.STREAM.CREATE.evil'],
    ['delete the room stream', '$JS.API.STREAM.DELETE.n5'],
    ['purge the room stream', '$JS.API.STREAM.PURGE.n5'],
    ['read another room', '$JS.API.STREAM.INFO.other'],
    ["read its room stream's info (its subjects name who got answers)", '$JS.API.STREAM.INFO.n5'],
    ['read the room config KV', '$KV.torii_rooms.n5'],
    ['kick through the system account', '$SYS.REQ.SERVER.PING'],
    ["call the platform's service endpoints", 'torii.tokens.issue'],
    ['forge a platform event', 'torii.events.participant.joined'],
    ['impersonate a live cursor', 'room.n5.live.kenji'],
  ])('may not %s (%s)', async (_what, subject) => {
    await expectViolation(nc, 'publish', subject, () => nc.publish(subject, 'x'));
  });

  test.each([
    ["another user's inbox", '_INBOX.n5.kenji.>'],
    ['every inbox', '_INBOX.>'],
    ['another room', 'room.other.live.*'],
    ['the room stream subjects directly', 'room.n5.>'],
    ["another user's answers", 'room.n5.user.kenji'],
    ['everything', '>'],
    ["the platform's events", 'torii.events.>'],
  ])('may not subscribe to %s (%s)', async (_what, subject) => {
    await expectViolation(nc, 'subscription', subject, () => nc.subscribe(subject));
  });

  test('the connection survives the denials', async () => {
    expect(nc.isClosed()).toBe(false);
    const r = await nc.request('$JS.API.CONSUMER.INFO.n5.hana', '', { timeout: 2_000 });
    expect(r.json<{ name: string }>().name).toBe('hana');
  });
});

describe('roles', () => {
  test('a teacher may draw; an observer may neither chat nor draw', async () => {
    const teacher = await client('n5', 'sensei', 'teacher');
    expect((await jetstream(teacher).publish('room.n5.wb.sensei', 'stroke')).stream).toBe('n5');
    const observer = await client('n5', 'guest', 'observer');
    await expectViolation(observer, 'publish', 'room.n5.chat.guest', () =>
      observer.publish('room.n5.chat.guest', 'hi'),
    );
    await expectViolation(observer, 'publish', 'room.n5.wb.guest', () =>
      observer.publish('room.n5.wb.guest', 'x'),
    );
  });

  test('the connection is placed in CLIENTS, not APP, and named {roomId}/{userId} for presence', async () => {
    const sys = await server.connectSystem();
    try {
      const events = sys.subscribe(Sys.connect(DEFAULT_ACCOUNTS.clients), {
        max: 1,
        timeout: 5_000,
      });
      await sys.flush();
      const t = await token(
        server.keys,
        { room: 'n5', sub: 'taro', role: 'student' },
        { ttlMs: 600_000 },
      );
      const nc = await connectClient(server.url, 'n5', 'taro', t, { name: 'taro-tab-1' });
      clients.push(nc);
      for await (const m of events) {
        expect(
          m.json<{ client: { user: string; acc: string; kind: string } }>().client,
        ).toMatchObject({ user: 'n5/taro', acc: 'CLIENTS', kind: 'Client' });
      }
      const cid = nc.info?.client_id;
      const r = await sys.request(
        `$SYS.REQ.SERVER.${nc.info?.server_id}.CONNZ`,
        JSON.stringify({ cid, auth: true }),
        { timeout: 2_000 },
      );
      const conn = r.json<{
        data: { connections: { authorized_user: string; account: string }[] };
      }>().data.connections[0];
      expect(conn?.account).toBe('CLIENTS');
      expect(conn?.authorized_user).toBe('n5/taro');
    } finally {
      await sys.close();
    }
  });
});

describe('the server closes the connection when the user JWT expires', () => {
  test('short-lived token', async () => {
    const t = await rawToken(
      server.keys,
      { sub: 'brief', room: 'n5', role: 'student' },
      { expIn: 3 },
    );
    const nc = await connectClient(server.url, 'n5', 'brief', t, { reconnect: false });
    const errors: string[] = [];
    void (async () => {
      for await (const st of nc.status()) if (st.type === 'error') errors.push(String(st.error));
    })();
    const started = Date.now();
    await nc.closed();
    expect(Date.now() - started).toBeLessThan(8_000);
    // the server said why it closed the connection
    expect(errors.join('\n')).toMatch(/Authentication Expired/i);
  });
});

describe('refused connections', () => {
  const valid = { sub: 'mallory', room: 'n5', role: 'student' };
  test.each<[string, () => Promise<string>, string]>([
    ['expired', () => rawToken(server.keys, valid, { expIn: -120 }), 'token_expired'],
    ['not yet valid', () => rawToken(server.keys, valid, { nbfIn: 120 }), 'token_not_yet_valid'],
    ['wrong issuer', () => rawToken(server.keys, valid, { iss: 'evil' }), 'token_wrong_issuer'],
    [
      'wrong audience',
      () => rawToken(server.keys, valid, { aud: 'some-other-service' }),
      'token_wrong_audience',
    ],
    [
      'bad signature (another key, same kid)',
      async () => {
        const jwk = JSON.parse(
          readFileSync(path.join(server.keys.dir, KeyFile.TokenSigningJwk), 'utf8'),
        ) as JWK;
        const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
        return new SignJWT(valid)
          .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid })
          .setIssuer('torii')
          .setAudience('torii-nats')
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(privateKey);
      },
      'token_bad_signature',
    ],
    [
      'alg none',
      () => {
        const now = Math.floor(Date.now() / 1000);
        const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
        return Promise.resolve(
          `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ ...valid, iss: 'torii', aud: 'torii-nats', iat: now, exp: now + 300 })}.`,
        );
      },
      'token_bad_algorithm',
    ],
    [
      'HS256 signed with the public key (algorithm confusion)',
      () => {
        // the attacker knows the published JWKS and uses it as the HMAC secret
        const jwks = readFileSync(path.join(server.keys.dir, KeyFile.TokenJwks));
        return new SignJWT(valid)
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('torii')
          .setAudience('torii-nats')
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(jwks);
      },
      'token_bad_algorithm',
    ],
    [
      'unknown room',
      () => token(server.keys, { sub: 'u1', room: 'ghost', role: 'student' }),
      'unknown_room',
    ],
    [
      'unknown role',
      () => token(server.keys, { sub: 'u1', room: 'n5', role: 'admin' }),
      'unknown_role',
    ],
    [
      'room id with a dot',
      () => rawToken(server.keys, { ...valid, room: 'n5.evil' }),
      'invalid_id',
    ],
    ['user id with *', () => rawToken(server.keys, { ...valid, sub: 'u*' }), 'invalid_id'],
    ['user id with >', () => rawToken(server.keys, { ...valid, sub: '>' }), 'invalid_id'],
    ['user id with a space', () => rawToken(server.keys, { ...valid, sub: 'a b' }), 'invalid_id'],
    ['role missing', () => rawToken(server.keys, { sub: 'u1', room: 'n5' }), 'token_missing_claim'],
    ['garbage instead of a JWT', () => Promise.resolve('this-is-not-a-jwt'), 'token_malformed'],
  ])('%s', async (_name, makeToken, reason) => {
    const before = await callout.rejections(reason);
    await expect(connectClient(server.url, 'n5', 'mallory', await makeToken())).rejects.toThrow(
      AuthorizationError,
    );
    await waitFor(
      `rejection counted as ${reason}`,
      async () => (await callout.rejections(reason)) === before + 1,
    );
  });

  test('a blocked user', async () => {
    await putBlock(svc, {
      roomId: 'n5',
      userId: 'troll',
      until: new Date(Date.now() + 3_600_000).toISOString(),
    });
    await putBlock(svc, {
      roomId: 'n5',
      userId: 'pardoned',
      until: new Date(Date.now() - 1_000).toISOString(),
    });
    const before = await callout.rejections('blocked');
    await waitFor('block cached', async () => {
      await expect(
        connectClient(
          server.url,
          'n5',
          'troll',
          await token(server.keys, { room: 'n5', sub: 'troll', role: 'student' }),
        ),
      ).rejects.toThrow(AuthorizationError);
      return (await callout.rejections('blocked')) > before;
    });
    clients.push(await client('n5', 'pardoned')); // an expired block no longer applies
  });

  test('a full room, except for users already seated', async () => {
    await putPresence(svc, { roomId: 'tiny', userId: 'u1', state: 'online' });
    await putPresence(svc, { roomId: 'tiny', userId: 'u2', state: 'away' });
    await putPresence(svc, { roomId: 'tiny', userId: 'u3', state: 'left' });
    const before = await callout.rejections('room_full');
    await waitFor('presence cached', async () => {
      await expect(
        connectClient(
          server.url,
          'tiny',
          'u4',
          await token(server.keys, { room: 'tiny', sub: 'u4', role: 'student' }),
        ),
      ).rejects.toThrow(AuthorizationError);
      return (await callout.rejections('room_full')) > before;
    });
    clients.push(await client('tiny', 'u1')); // a second tab of a seated user
  });

  test('a 1 MB token, and no token at all', async () => {
    const huge = 'a'.repeat(1024 * 1024);
    await expect(connectClient(server.url, 'n5', 'big', huge)).rejects.toThrow();
    await expect(connectClient(server.url, 'n5', 'none', '', { token: undefined })).rejects.toThrow(
      AuthorizationError,
    );
  });

  test('the callout stayed up through all of them', async () => {
    const nc = await client('n5', 'after-the-storm');
    expect(nc.isClosed()).toBe(false);
  });
});

describe('encryption', () => {
  test('a callout without the xkey refuses the encrypted requests of a server configured with one', async () => {
    const keys = await testKeys();
    const s2 = await startNats({ keys });
    const plain = await startCallout(keys, [s2.url], { xkeySeed: undefined });
    try {
      const svc2 = await s2.connectService();
      await publishRoom(svc2, 'n5');
      await svc2.close();
      await expect(
        connectClient(
          s2.url,
          'n5',
          'u1',
          await token(keys, { room: 'n5', sub: 'u1', role: 'student' }),
          { timeout: 4_000 },
        ),
      ).rejects.toThrow();
      expect(await plain.rejections('request_encrypted')).toBe(1);
    } finally {
      await plain.stop();
      await s2.destroy();
    }
  });
});

describe('two callout replicas', () => {
  test('stopping one mid-storm loses no connection attempt', async () => {
    const keys = await testKeys();
    const s2 = await startNats({ keys });
    const a = await startCallout(keys, [s2.url]);
    const b = await startCallout(keys, [s2.url]);
    const conns: NatsConnection[] = [];
    try {
      const svc2 = await s2.connectService();
      await publishRoom(svc2, 'storm', { maxParticipants: 1000 });
      await svc2.close();
      const total = 300;
      let started = 0;
      let stopping: Promise<void> | undefined;
      const failures: unknown[] = [];
      const workers = Array.from({ length: 20 }, async () => {
        while (started < total) {
          const i = started++;
          if (i === 100) stopping = a.stop(); // mid-storm, while requests are in flight
          try {
            conns.push(
              await connectClient(
                s2.url,
                'storm',
                `u${i}`,
                await token(keys, { room: 'storm', sub: `u${i}`, role: 'student' }),
              ),
            );
          } catch (e) {
            failures.push(e);
          }
        }
      });
      await Promise.all(workers);
      await stopping;
      expect(failures).toEqual([]);
      expect(conns).toHaveLength(total);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
      await b.stop();
      await a.stop();
      await s2.destroy();
    }
  });
});

describe('the nats CLI as a second, independent client', () => {
  const nats = (args: string[], t: string, user: string) =>
    runAsync(
      findTool('nats'),
      [
        '--server',
        server.url,
        '--token',
        t,
        '--inbox-prefix',
        `_INBOX.n5.${user}`,
        '--timeout',
        '2s',
        ...args,
      ],
      {
        env: { ...process.env, NATS_CONTEXT: '', HOME: server.dir },
      },
    );

  test('token auth: allowed and denied subjects', async () => {
    const t = await token(server.keys, { room: 'n5', sub: 'cli', role: 'student' });
    const info = await nats(['req', '$JS.API.CONSUMER.INFO.n5.cli', ''], t, 'cli');
    expect(info.stderr + info.stdout).toMatch(/"stream_name":\s*"n5"/);
    expect(info.status).toBe(0);

    const denied = await nats(['req', '$JS.API.STREAM.INFO.other', ''], t, 'cli');
    // natscli reports the violation but exits 0; what matters is that no answer came back
    expect(denied.stdout).not.toMatch(/"name"/);
    expect(denied.stderr + denied.stdout).toMatch(
      /Permissions Violation for Publish to "\$JS\.API\.STREAM\.INFO\.other"/,
    );

    const badToken = await nats(['req', '$JS.API.CONSUMER.INFO.n5.cli', ''], 'garbage', 'cli');
    expect(badToken.status).not.toBe(0);
    expect(badToken.stderr + badToken.stdout).toMatch(/Authorization Violation/);
  });
});
