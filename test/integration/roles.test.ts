/**
 * A user's role comes from the connection that sent the event, never from a record shared by all
 * its connections (issue 13). The attacker holds a teacher token and a student token for the same
 * user, and uses the student connection.
 */
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeJwt } from 'jose';
import type { RoomClient, RoomMessage } from '../../src/client/index.js';
import { roleWorkerSubject } from '../../src/protocol/subjects.js';
import { expectViolation } from '../helpers/assert-nats.js';
import {
  connectClient,
  joinRoom,
  startCallout,
  token,
  type TestCallout,
} from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'roles';
let server: TestNats;
let callout: TestCallout;
let worker: TestWorker;
let svc: NatsConnection;
const clients: RoomClient[] = [];
const raw: NatsConnection[] = [];

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, ROOM);
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(raw.map((c) => c.close()));
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

async function join(user: string, role: string, deviceId: string): Promise<RoomClient> {
  const c = await joinRoom(server.url, server.keys, ROOM, user, { role, deviceId });
  clients.push(c);
  return c;
}

describe('one user connected twice, as teacher and as student', () => {
  let student: RoomClient;
  let teacher: RoomClient;
  let hana: RoomClient;
  beforeAll(async () => {
    hana = await join('hana', 'student', 'laptop');
    // The student connection first, the teacher last: whatever record the last admission wrote
    // says "teacher".
    student = await join('kai', 'student', 'phone');
    teacher = await join('kai', 'teacher', 'desk');
  });

  test("the student connection may not lower another user's hand; the teacher connection may", async () => {
    await hana.request('REQ_RAISE_HAND', { note: 'question' });
    await expect(student.request('REQ_LOWER_HAND', { userId: 'hana' })).rejects.toMatchObject({
      code: 'FORBIDDEN',
    });
    const d = await hana.request<{ hands: { userId: string }[] }>('REQ_INITIAL_DATA');
    expect(d.hands.map((h) => h.userId)).toEqual(['hana']);
    await teacher.request('REQ_LOWER_HAND', { userId: 'hana' });
  });

  test('each connection sees its own role in the initial data', async () => {
    type Me = { me: { role: string; permissions: { moderator: boolean } } };
    expect((await student.request<Me>('REQ_INITIAL_DATA')).me).toMatchObject({
      role: 'student',
      permissions: { moderator: false },
    });
    expect((await teacher.request<Me>('REQ_INITIAL_DATA')).me).toMatchObject({
      role: 'teacher',
      permissions: { moderator: true },
    });
  });

  test('renewal from the student connection returns a student token', async () => {
    const r = await student.request<{ token: string }>('REQ_RENEW_WAJLC_TOKEN');
    expect(decodeJwt(r.token)).toMatchObject({ sub: 'kai', room: ROOM, role: 'student' });
  });

  test('a raw student connection may not publish on the teacher role subject', async () => {
    const nc = await connectClient(
      server.url,
      ROOM,
      'kai',
      await token(server.keys, { room: ROOM, sub: 'kai', role: 'student' }),
    );
    raw.push(nc);
    await expectViolation(nc, 'publish', roleWorkerSubject(ROOM, 'kai', 'teacher'), () =>
      nc.publish(
        roleWorkerSubject(ROOM, 'kai', 'teacher'),
        JSON.stringify({ event: 'REQ_LOWER_HAND', id: 'x1', data: { userId: 'hana' } }),
      ),
    );
    // its own role's subject works
    const ack = await jetstream(nc).publish(
      roleWorkerSubject(ROOM, 'kai', 'student'),
      JSON.stringify({ event: 'REQ_INITIAL_DATA', id: 'x2' }),
    );
    expect(ack.stream).toBe('sysJsWorker');
  });
});

test('an event on a role the room does not define is refused with a clear error', async () => {
  const c = await join('ren', 'student', 'tab');
  const answers: RoomMessage[] = [];
  c.on((m) => m.kind === 'answer' && answers.push(m));
  await jetstream(svc).publish(
    roleWorkerSubject(ROOM, 'ren', 'ghost'),
    JSON.stringify({ event: 'REQ_INITIAL_DATA', id: 'ghost-1' }),
  );
  await waitFor('an answer', () =>
    answers.find((a) => (a.body as { id?: string }).id === 'ghost-1'),
  );
  expect(answers.find((a) => (a.body as { id?: string }).id === 'ghost-1')?.body).toMatchObject({
    ok: false,
    error: { code: 'FORBIDDEN', message: `role ghost is not defined in room ${ROOM}` },
  });
});
