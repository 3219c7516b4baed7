/**
 * Media tokens against a real LiveKit server: the workers' `REQ_MEDIA_SERVER_DATA` answers get a
 * teacher, a student and an observer into the LiveKit room, where `RoomServiceClient` shows each
 * with its role's grants; in a broadcast room LiveKit itself refuses a student's track (and
 * accepts the teacher's); an expired media token is refused at the door.
 */
import { connect as nodeConnect, type NatsConnection } from '@nats-io/transport-node';
import { RequestResponse_Reason } from '@livekit/protocol';
import { RoomServiceClient } from 'livekit-server-sdk';
import { RoomClient } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import type { LiveKitServerProcess } from '../../src/devtools/livekit-server.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import {
  addCameraTrack,
  signal,
  SignalRefused,
  startLiveKit,
  type SignalSession,
} from '../helpers/livekit.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';
import type { MediaServerData } from '../../src/client/classroom.js';

/** The room's LiveKit name differs from its Torii id, to see which one the token names. */
const ROOM = 'n5-lecture';
const LIVEKIT_ROOM = 'n5-lecture-media';
/**
 * How long past `exp` LiveKit still takes a token, in milliseconds: its verifier (go-jose's
 * `Claims.Validate`) allows the library's default leeway of one minute.
 */
const LIVEKIT_EXP_LEEWAY_MS = 60_000;

let nats: TestNats;
let livekit: LiveKitServerProcess;
let callout: TestCallout;
let worker: TestWorker;
let svc: NatsConnection;
let rooms: RoomServiceClient;
const clients: RoomClient[] = [];
const sessions: SignalSession[] = [];

async function join(user: string, role: string): Promise<RoomClient> {
  const c = await RoomClient.connect({
    connect: nodeConnect,
    servers: nats.url,
    roomId: ROOM,
    userId: user,
    token: await token(nats.keys, { room: ROOM, sub: user, role, name: user.toUpperCase() }),
  });
  clients.push(c);
  return c;
}

async function mediaOf(user: string, role: string): Promise<MediaServerData> {
  const c = await join(user, role);
  return c.request<MediaServerData>(RequestEvent.MediaServerData);
}

async function enter(answer: MediaServerData): Promise<SignalSession> {
  const s = await signal(answer.url, answer.token);
  sessions.push(s);
  return s;
}

const workerLiveKit = (ttlSeconds: number) => ({
  url: livekit.url,
  apiKey: livekit.keys.apiKey,
  apiSecret: livekit.keys.apiSecret,
  ttlSeconds,
});

beforeAll(async () => {
  [nats, livekit] = await Promise.all([startNats(), startLiveKit()]);
  svc = await nats.connectService();
  await publishRoom(svc, ROOM, { media: { livekitRoom: LIVEKIT_ROOM, broadcast: true } });
  callout = await startCallout(nats.keys, [nats.url]);
  worker = await startWorker(nats.keys, [nats.url], { livekit: workerLiveKit(3_600) });
  rooms = new RoomServiceClient(livekit.httpUrl, livekit.keys.apiKey, livekit.keys.apiSecret);
});
afterAll(async () => {
  for (const s of sessions) s.close();
  await Promise.all(clients.map((c) => c.close()));
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await nats?.destroy();
  await livekit?.stop();
});

describe('media answers against LiveKit', () => {
  let teacher: MediaServerData;
  let student: MediaServerData;
  let teacherSignal: SignalSession;
  let studentSignal: SignalSession;

  beforeAll(async () => {
    teacher = await mediaOf('sensei', 'teacher');
    student = await mediaOf('hana', 'student');
  });

  test('the answer names this LiveKit, the room and the user', () => {
    expect(teacher).toMatchObject({
      url: livekit.url,
      room: LIVEKIT_ROOM,
      identity: 'sensei',
      broadcast: true,
    });
    expect(student).toMatchObject({ url: livekit.url, room: LIVEKIT_ROOM, identity: 'hana' });
    expect(Date.parse(teacher.expiresAt)).toBeGreaterThan(Date.now() + 3_500_000);
  });

  test("each participant joins the LiveKit room with its token and LiveKit holds its role's grants", async () => {
    teacherSignal = await enter(teacher);
    studentSignal = await enter(student);
    const observer = await enter(await mediaOf('obs', 'observer'));
    const join = observer.received.find((m) => m.message.case === 'join')?.message.value;
    expect(join).toMatchObject({ room: { name: LIVEKIT_ROOM }, participant: { identity: 'obs' } });

    const listed = await waitFor('three participants in the LiveKit room', async () => {
      const ps = await rooms.listParticipants(LIVEKIT_ROOM);
      return ps.length === 3 ? ps : undefined;
    });
    const grants = Object.fromEntries(
      listed.map((p) => [
        p.identity,
        {
          name: p.name,
          canPublish: p.permission?.canPublish,
          canSubscribe: p.permission?.canSubscribe,
          canPublishData: p.permission?.canPublishData,
        },
      ]),
    );
    expect(grants).toEqual({
      sensei: { name: 'SENSEI', canPublish: true, canSubscribe: true, canPublishData: true },
      hana: { name: 'HANA', canPublish: false, canSubscribe: true, canPublishData: true },
      obs: { name: 'OBS', canPublish: false, canSubscribe: true, canPublishData: false },
    });
  });

  test("in a broadcast room LiveKit itself refuses a student's track and takes the teacher's", async () => {
    studentSignal.send(addCameraTrack('student-cam'));
    const refusal = await studentSignal.next('requestResponse');
    expect(refusal.reason).toBe(RequestResponse_Reason.NOT_ALLOWED);
    expect(refusal.request).toMatchObject({ case: 'addTrack', value: { cid: 'student-cam' } });

    teacherSignal.send(addCameraTrack('teacher-cam'));
    const published = await teacherSignal.next('trackPublished');
    expect(published.cid).toBe('teacher-cam');
    // The refusal was final: no track was ever published for the student.
    expect(studentSignal.received.some((m) => m.message.case === 'trackPublished')).toBe(false);
  });
});

describe('an expired media token', () => {
  test('is refused by LiveKit', async () => {
    // A worker whose tokens live one second; the first worker leaves so this one answers.
    await worker.stop();
    worker = await startWorker(nats.keys, [nats.url], { livekit: workerLiveKit(1) });
    const answer = await mediaOf('kenji', 'student');
    const exp = Date.parse(answer.expiresAt);
    expect(exp).toBeLessThanOrEqual(Date.now() + 1_000);
    // Within the leeway LiveKit still takes it: the refusal below is the expiry, nothing else.
    await waitFor('the token has expired', () => Date.now() > exp, { timeoutMs: 5_000 });
    const late = await signal(answer.url, answer.token);
    late.close();
    await waitFor(
      'the token is past LiveKit’s leeway',
      () => Date.now() > exp + LIVEKIT_EXP_LEEWAY_MS,
      { timeoutMs: LIVEKIT_EXP_LEEWAY_MS + 10_000, intervalMs: 500 },
    );
    const refused = await signal(answer.url, answer.token).then(
      (s) => {
        sessions.push(s);
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(SignalRefused);
    expect((refused as SignalRefused).status).toBe(401);
    expect((refused as SignalRefused).body).toMatch(/expired|exp/i);
  }, 120_000);
});
