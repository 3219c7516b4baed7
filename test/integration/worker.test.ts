/**
 * The worker pool and endpoints with real clients: a teacher and three students join through the
 * callout and talk to the workers over JetStream, as docs/protocol.md describes.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Svcm } from '@nats-io/services';
import { connect as nodeConnect, type NatsConnection } from '@nats-io/transport-node';
import { SignJWT, importJWK, type JWK } from 'jose';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { TokenVerifier as LiveKitVerifier } from 'livekit-server-sdk';
import {
  RoomClient,
  RoomRequestError,
  type LiveMessage,
  type RoomMessage,
} from '../../src/client/index.js';
import { KeyFile } from '../../src/infra/keys.js';
import { liveSubject, roleWorkerSubject, userAnswerSubject } from '../../src/protocol/subjects.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestKeys, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { LIVEKIT, startWorker, type TestWorker } from '../helpers/worker.js';

let server: TestNats;
let callout: TestCallout;
let worker: TestWorker;
let svc: NatsConnection;
const clients: RoomClient[] = [];

async function join(
  room: string,
  user: string,
  role: string,
  tokenValue?: string,
): Promise<RoomClient> {
  const c = await RoomClient.connect({
    connect: nodeConnect,
    servers: server.url,
    roomId: room,
    userId: user,
    token:
      tokenValue ?? (await token(server.keys, { room, sub: user, role, name: user.toUpperCase() })),
  });
  clients.push(c);
  return c;
}

function collect(c: RoomClient, kind: RoomMessage['kind'] = 'event'): RoomMessage[] {
  const got: RoomMessage[] = [];
  c.on((m) => m.kind === kind && got.push(m));
  return got;
}

async function rawToken(
  keys: TestKeys,
  claims: Record<string, unknown>,
  expIn: number,
): Promise<string> {
  const jwk = JSON.parse(readFileSync(path.join(keys.dir, KeyFile.TokenSigningJwk), 'utf8')) as JWK;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid })
    .setIssuer('torii')
    .setAudience('torii-nats')
    .setIssuedAt(now)
    .setExpirationTime(now + expIn)
    .sign(await importJWK(jwk, 'EdDSA'));
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, 'n5', { media: { broadcast: true } });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

describe('a class of four', () => {
  let teacher: RoomClient;
  let s1: RoomClient;
  let s2: RoomClient;
  let s3: RoomClient;
  beforeAll(async () => {
    teacher = await join('n5', 'sensei', 'teacher');
    s1 = await join('n5', 'hana', 'student');
    s2 = await join('n5', 'kenji', 'student');
    s3 = await join('n5', 'yuki', 'student');
  });

  test('initial data lists all four participants, the room and my permissions', async () => {
    type Initial = {
      room: { id: string };
      me: { userId: string; role: string; permissions: { moderator: boolean } };
      participants: { userId: string; role: string; name: string }[];
      hands: unknown[];
      snapshotSeq: number;
    };
    const data = await waitFor('four participants', async () => {
      const d = await s1.request<Initial>('REQ_INITIAL_DATA');
      return d.participants.length === 4 ? d : undefined;
    });
    expect(data.room.id).toBe('n5');
    expect(data.me).toMatchObject({
      userId: 'hana',
      role: 'student',
      permissions: { moderator: false },
    });
    expect(data.participants.map((p) => p.userId).sort()).toEqual([
      'hana',
      'kenji',
      'sensei',
      'yuki',
    ]);
    expect(data.participants.find((p) => p.userId === 'sensei')).toMatchObject({
      role: 'teacher',
      name: 'SENSEI',
    });
    expect(data.hands).toEqual([]);
    expect(typeof data.snapshotSeq).toBe('number');
  });

  test('raise and lower hand broadcasts reach everyone, in the same order', async () => {
    const seen = [teacher, s1, s2, s3].map((c) => collect(c));
    await s1.request('REQ_RAISE_HAND', { note: '質問があります' });
    await s2.request('REQ_RAISE_HAND');
    await s1.request('REQ_LOWER_HAND');
    const order = (m: RoomMessage[]) =>
      m
        .map(
          (x) =>
            `${(x.body as { event: string }).event}:${(x.body as { data: { userId: string } }).data.userId}`,
        )
        .filter((x) => x.includes('HAND'));
    for (const got of seen) await waitFor('three hand events', () => order(got).length >= 3);
    for (const got of seen)
      expect(order(got)).toEqual([
        'EVT_HAND_RAISED:hana',
        'EVT_HAND_RAISED:kenji',
        'EVT_HAND_LOWERED:hana',
      ]);
    expect(
      (
        seen[0]?.find((m) => (m.body as { event: string }).event === 'EVT_HAND_RAISED')?.body as {
          data: { note: string };
        }
      ).data.note,
    ).toBe('質問があります');
    const d = await teacher.request<{ hands: { userId: string }[] }>('REQ_INITIAL_DATA');
    expect(d.hands.map((h) => h.userId)).toEqual(['kenji']);
  });

  test('live updates reach the room over core NATS and are not stored; chat is stored', async () => {
    const jsm = await jetstreamManager(svc);
    const before = (await jsm.streams.info('n5')).state.last_seq;
    const seen = new Promise<LiveMessage>((resolve) => {
      const off = s2.onLive((m) => {
        off();
        resolve(m);
      });
    });
    s1.live({ x: 1, y: 2 });
    expect(await seen).toEqual({ from: 'hana', data: { x: 1, y: 2 } });
    await s1.chat('stored');
    const info = await jsm.streams.info('n5', { subjects_filter: 'room.n5.>' });
    expect(info.state.last_seq).toBe(before + 1);
    expect(Object.keys(info.state.subjects ?? {})).not.toContain(liveSubject('n5', 'hana'));
  });

  test('what arrives before the first listener is delivered to it: nothing is lost while joining', async () => {
    const late = await join('n5', 'late-listener', 'student');
    await s1.chat('before anyone listens');
    const jsm = await jetstreamManager(svc);
    const last = (await jsm.streams.info('n5')).state.last_seq;
    // The late client has received it, with no listener yet.
    await waitFor('late client received the chat', () => late.lastSequence >= last);
    const got: RoomMessage[] = [];
    late.on((m) => got.push(m));
    const texts = got
      .filter((m) => m.kind === 'chat' && m.from === 'hana')
      .map((m) => (m.body as { text?: string }).text);
    expect(texts).toContain('before anyone listens');
    // only the first listener gets the backlog
    const second: RoomMessage[] = [];
    late.on((m) => second.push(m));
    expect(second).toEqual([]);
  });

  test("a student lowering another's hand gets FORBIDDEN; the teacher can", async () => {
    await expect(s3.request('REQ_LOWER_HAND', { userId: 'kenji' })).rejects.toMatchObject({
      code: 'FORBIDDEN',
    });
    const seen = collect(s2);
    await teacher.request('REQ_LOWER_HAND', { userId: 'kenji' });
    await waitFor('lowered', () =>
      seen.some((m) => (m.body as { event: string }).event === 'EVT_HAND_LOWERED'),
    );
    expect(
      seen.find((m) => (m.body as { event: string }).event === 'EVT_HAND_LOWERED')?.body,
    ).toMatchObject({ data: { userId: 'kenji', by: 'sensei' } });
  });

  test('media tokens verify with LiveKit and carry the role grants (broadcast: only presenters publish)', async () => {
    const verifier = new LiveKitVerifier(LIVEKIT.apiKey, LIVEKIT.apiSecret);
    const t = await teacher.request<{
      url: string;
      token: string;
      room: string;
      identity: string;
      expiresAt: string;
    }>('REQ_MEDIA_SERVER_DATA');
    expect(t).toMatchObject({ url: LIVEKIT.url, room: 'n5', identity: 'sensei', broadcast: true });
    const tg = await verifier.verify(t.token);
    expect(tg.video).toMatchObject({
      roomJoin: true,
      room: 'n5',
      canPublish: true,
      canSubscribe: true,
    });
    const s = await s1.request<{ token: string }>('REQ_MEDIA_SERVER_DATA');
    const sg = await verifier.verify(s.token);
    expect(sg.video).toMatchObject({
      roomJoin: true,
      room: 'n5',
      canPublish: false,
      canSubscribe: true,
      canPublishData: true,
    });
    expect(sg.video?.roomAdmin).toBeFalsy();
  });

  test('identity comes from the subject, never from the payload', async () => {
    const seen = collect(teacher);
    await s3.request('REQ_RAISE_HAND', { userId: 'sensei', note: 'forged' });
    await waitFor('raised', () =>
      seen.some((m) => (m.body as { event: string }).event === 'EVT_HAND_RAISED'),
    );
    expect(
      seen.find((m) => (m.body as { event: string }).event === 'EVT_HAND_RAISED')?.body,
    ).toMatchObject({ data: { userId: 'yuki' } });
    await s3.request('REQ_LOWER_HAND');
  });
});

describe('garbage on sysJsWorker', () => {
  /** A fresh student, and the answers it receives. */
  async function victimOf(): Promise<{
    victim: RoomClient;
    userId: string;
    answers: RoomMessage[];
  }> {
    const userId = `g-${Math.random().toString(36).slice(2, 8)}`;
    const victim = await join('n5', userId, 'student');
    return { victim, userId, answers: collect(victim, 'answer') };
  }

  test.each([
    ['no event', JSON.stringify({ id: 'g1' }), 'g1', 'BAD_REQUEST'],
    ['event of the wrong type', JSON.stringify({ event: 42, id: 'g2' }), 'g2', 'BAD_REQUEST'],
    ['event of another shape', JSON.stringify({ event: 'raise', id: 'g7' }), 'g7', 'BAD_REQUEST'],
    [
      'data not an object',
      JSON.stringify({ event: 'REQ_RAISE_HAND', id: 'g3', data: 'x' }),
      'g3',
      'BAD_REQUEST',
    ],
    [
      'unknown event',
      JSON.stringify({ event: 'REQ_SELF_DESTRUCT', id: 'g4' }),
      'g4',
      'UNKNOWN_EVENT',
    ],
    [
      'note of the wrong type',
      JSON.stringify({ event: 'REQ_RAISE_HAND', id: 'g5', data: { note: { x: 1 } } }),
      'g5',
      'BAD_REQUEST',
    ],
  ])('%s → an error answer naming the id, nothing applied', async (_name, payload, id, code) => {
    const { victim, userId, answers } = await victimOf();
    svc.publish(roleWorkerSubject('n5', userId, 'student'), payload);
    await waitFor('error answer', () => answers.length > 0);
    expect(answers[0]?.body).toMatchObject({ ok: false, id, error: { code } });
    const d = await victim.request<{ hands: { userId: string }[] }>('REQ_INITIAL_DATA');
    expect(d.hands.map((h) => h.userId)).not.toContain(userId);
  });

  test.each([
    ['not JSON', '{not json'],
    ['an array', '[1,2]'],
    ['no id', JSON.stringify({ event: 'REQ_RAISE_HAND' })],
    ['an id with a dot', JSON.stringify({ event: 'REQ_RAISE_HAND', id: 'a.b' })],
    ['an id of 65 characters', JSON.stringify({ event: 'REQ_RAISE_HAND', id: 'x'.repeat(65) })],
    [
      '20 KB payload',
      JSON.stringify({ event: 'REQ_RAISE_HAND', id: 'g6', data: { note: 'x'.repeat(20_000) } }),
    ],
  ])('%s → no answer (none stored), nothing applied', async (_name, payload) => {
    const { victim, userId, answers } = await victimOf();
    svc.publish(roleWorkerSubject('n5', userId, 'student'), payload);
    // One user's events are handled in order: once this is answered, the garbage was handled.
    const d = await victim.request<{ hands: { userId: string }[] }>('REQ_INITIAL_DATA');
    expect(d.hands.map((h) => h.userId)).not.toContain(userId);
    const jsm = await jetstreamManager(svc);
    const info = await jsm.streams.info('n5', { subjects_filter: userAnswerSubject('n5', userId) });
    expect(info.state.subjects).toEqual({ [userAnswerSubject('n5', userId)]: 1 });
    await waitFor('the initial data answer handed on', () => answers.length > 0);
    expect(answers.map((a) => (a.body as { ok: boolean }).ok)).toEqual([true]);
  });

  test('a 1 MB event never reaches the workers, and the worker stays up', async () => {
    const c = await join('n5', 'bigsender', 'student');
    // the client refuses it before the server would close the connection for it
    await expect(
      c.request('REQ_RAISE_HAND', { note: 'x'.repeat(1024 * 1024) }),
    ).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    // and the work-queue stream refuses anything over its max_msg_size, whoever sends it
    const { jetstream } = await import('@nats-io/jetstream');
    await expect(
      jetstream(svc).publish(
        roleWorkerSubject('n5', 'bigsender', 'student'),
        'x'.repeat(200 * 1024),
      ),
    ).rejects.toThrow(/maximum/i);
    await expect(c.request('REQ_INITIAL_DATA')).resolves.toBeDefined();
  });
});

describe('token renewal', () => {
  test('gives a token that connects after the old NATS JWT expired; at most one per 10 s', async () => {
    const short = await rawToken(
      server.keys,
      { sub: 'taro', room: 'n5', role: 'student', name: 'Taro' },
      4,
    );
    const c = await join('n5', 'taro', 'student', short);
    const renewed = await c.renew();
    expect(renewed.token).not.toBe(short);
    await expect(c.request('REQ_RENEW_WAJLC_TOKEN')).rejects.toMatchObject({
      code: 'RATE_LIMITED',
    });
    // The server drops the connection when the old JWT expires; the client comes back with the new token.
    let reconnected = false;
    void (async () => {
      for await (const s of c.nc.status()) if (s.type === 'reconnect') reconnected = true;
    })();
    await waitFor('reconnected after expiry', () => reconnected, { timeoutMs: 15_000 });
    await expect(c.request('REQ_INITIAL_DATA')).resolves.toBeDefined();
    expect(c.currentToken).toBe(renewed.token);
  });
});

describe('service endpoints', () => {
  test('two replicas answer through the queue group; $SRV.PING finds them', async () => {
    const second = await startWorker(server.keys, [server.url]);
    try {
      const client = new Svcm(svc).client();
      const pings = [];
      for await (const p of await client.ping('torii')) pings.push(p);
      expect(pings.length).toBe(2);
      const room = (await svc.request('torii.rooms.get', JSON.stringify({ roomId: 'n5' }))).json<{
        roomId: string;
        participants: number;
      }>();
      expect(room.roomId).toBe('n5');
      const list = (await svc.request('torii.rooms.list', '')).json<{ roomId: string }[]>();
      expect(list.map((r) => r.roomId)).toContain('n5');
      const parts = (
        await svc.request('torii.rooms.participants', JSON.stringify({ roomId: 'n5' }))
      ).json<{ participants: { userId: string }[] }>();
      expect(parts.participants.map((p) => p.userId)).toContain('sensei');
      const issued = (
        await svc.request(
          'torii.tokens.issue',
          JSON.stringify({ roomId: 'n5', userId: 'newbie', role: 'student' }),
        )
      ).json<{ token: string }>();
      const c = await join('n5', 'newbie', 'student', issued.token);
      await expect(c.request('REQ_INITIAL_DATA')).resolves.toBeDefined();
      const missing = await svc.request('torii.rooms.get', JSON.stringify({ roomId: 'nope' }));
      expect(missing.headers?.get('Nats-Service-Error-Code')).toBe('404');
      const bad = await svc.request(
        'torii.tokens.issue',
        JSON.stringify({ roomId: 'n5', userId: 'a.b', role: 'student' }),
      );
      expect(bad.headers?.get('Nats-Service-Error-Code')).toBe('400');
      expect(bad.headers?.get('Nats-Service-Error')).toMatch(/userId/);
    } finally {
      await second.stop();
    }
  });

  test('room clients cannot call the endpoints', async () => {
    const c = await join('n5', 'curious', 'student');
    await expect(
      c.nc.request(
        'torii.tokens.issue',
        JSON.stringify({ roomId: 'n5', userId: 'x', role: 'teacher' }),
        { timeout: 1_000 },
      ),
    ).rejects.toThrow();
  });
});

test('RoomRequestError carries the code', () => {
  expect(new RoomRequestError('FORBIDDEN', 'no').code).toBe('FORBIDDEN');
});
