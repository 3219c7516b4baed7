/**
 * Moderation reaching every plane (issue 22), against real nats-server, callout, worker and
 * LiveKit: a kick removes the user from LiveKit's own participant list (and again when a modified
 * client rejoins with its old token), a blocked user gets no media token, and a kick with LiveKit
 * down still closes the NATS side. A Room change that takes a right away reaches connections
 * already open: a student whose chat was turned off cannot store chat within seconds (read back
 * from the room stream), the teacher still can, and the SDK tells the student its new
 * permissions.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as nodeConnect, type NatsConnection } from '@nats-io/transport-node';
import { RoomServiceClient } from 'livekit-server-sdk';
import { Classroom, RoomClient, RoomRequestError } from '../../src/client/index.js';
import type { MediaServerData, Permissions } from '../../src/client/classroom.js';
import { RequestEvent } from '../../src/protocol/events.js';
import type { LiveKitServerProcess } from '../../src/devtools/livekit-server.js';
import {
  DEFAULT_ROLE_SPECS,
  ROOM_API_GROUP,
  ROOM_API_VERSION,
  ROOM_KIND,
} from '../../src/domain/room-spec.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openBucket } from '../../src/infra/kv.js';
import {
  Bucket,
  chatSubject,
  roomStreamName,
  ServiceSubject,
} from '../../src/protocol/subjects.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { signal, startLiveKit, type SignalSession } from '../helpers/livekit.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { startController, type TestController } from '../helpers/controller.js';
import { freePort, tempDir, waitFor } from '../helpers/procs.js';
import { publishRoom, putBlock } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'mod-media';
const LIVEKIT_ROOM = 'mod-media-lk';
const CHAT_ROOM = 'mod-chat';

let nats: TestNats;
let livekit: LiveKitServerProcess;
let callout: TestCallout;
let worker: TestWorker;
let svc: NatsConnection;
let jsm: JetStreamManager;
let ctl: TestController;
const roomsDir = tempDir('moderation-rooms');

/** Writes the chat room's Room file, as an operator would; the controller publishes it. */
function writeChatRoom(studentChat: boolean): void {
  const room = {
    apiVersion: `${ROOM_API_GROUP}/${ROOM_API_VERSION}`,
    kind: ROOM_KIND,
    metadata: { name: CHAT_ROOM },
    spec: {
      roles: {
        ...DEFAULT_ROLE_SPECS,
        student: { ...DEFAULT_ROLE_SPECS.student, chat: studentChat },
      },
    },
  };
  // JSON is YAML.
  writeFileSync(path.join(roomsDir, `${CHAT_ROOM}.yaml`), JSON.stringify(room));
}
let lk: RoomServiceClient;
const clients: RoomClient[] = [];
const classrooms: Classroom[] = [];
const sessions: SignalSession[] = [];
const raws: NatsConnection[] = [];

const workerLiveKit = (url: string) => ({
  url,
  apiKey: livekit.keys.apiKey,
  apiSecret: livekit.keys.apiSecret,
  ttlSeconds: 7_200,
});

beforeAll(async () => {
  [nats, livekit] = await Promise.all([startNats(), startLiveKit()]);
  svc = await nats.connectService();
  jsm = await jetstreamManager(svc);
  await publishRoom(svc, ROOM, { media: { livekitRoom: LIVEKIT_ROOM } });
  writeChatRoom(true);
  ctl = await startController(nats.keys, [nats.url], { roomsDir });
  const published = await openBucket(svc, Bucket.Rooms);
  await waitFor('the controller published the chat room', async () =>
    (await published.get(CHAT_ROOM))?.operation === 'PUT' ? true : undefined,
  );
  callout = await startCallout(nats.keys, [nats.url]);
  worker = await startWorker(nats.keys, [nats.url], { livekit: workerLiveKit(livekit.url) });
  lk = new RoomServiceClient(livekit.httpUrl, livekit.keys.apiKey, livekit.keys.apiSecret);
});
afterAll(async () => {
  for (const s of sessions) s.close();
  await Promise.all(classrooms.map((c) => c.leave().catch(() => undefined)));
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(raws.map((c) => c.close().catch(() => undefined)));
  await worker?.stop();
  await ctl?.stop();
  await callout?.stop();
  await svc?.close();
  await nats?.destroy();
  await livekit?.stop();
});

async function join(room: string, user: string, role: string): Promise<RoomClient> {
  const c = await RoomClient.connect({
    connect: nodeConnect,
    servers: nats.url,
    roomId: room,
    userId: user,
    token: await token(nats.keys, { room, sub: user, role }),
  });
  clients.push(c);
  return c;
}

async function enterMedia(c: RoomClient): Promise<{ answer: MediaServerData; s: SignalSession }> {
  const answer = await c.request<MediaServerData>(RequestEvent.MediaServerData);
  const s = await signal(answer.url, answer.token);
  sessions.push(s);
  return { answer, s };
}

const identities = async (room: string): Promise<string[]> =>
  (await lk.listParticipants(room)).map((p) => p.identity).sort();

const kick = async (userId: string, room = ROOM): Promise<Record<string, unknown>> =>
  (
    await svc.request(ServiceSubject.RoomsKick, JSON.stringify({ roomId: room, userId }), {
      timeout: 10_000,
    })
  ).json<Record<string, unknown>>();

describe('a kick ends media', () => {
  test("the kicked user leaves LiveKit's participant list within seconds, also after a rejoin with its old token", async () => {
    const teacher = await join(ROOM, 'sensei', 'teacher');
    const student = await join(ROOM, 'troll', 'student');
    await enterMedia(teacher);
    const { answer } = await enterMedia(student);
    await waitFor('both in LiveKit', async () =>
      (await identities(LIVEKIT_ROOM)).join() === 'sensei,troll' ? true : undefined,
    );

    const kicked = await kick('troll');
    await waitFor(
      'the kicked user gone from LiveKit',
      async () => ((await identities(LIVEKIT_ROOM)).join() === 'sensei' ? true : undefined),
      { timeoutMs: 5_000 },
    );
    expect(kicked).toMatchObject({ userId: 'troll', kicked: 1, media: 'removed' });

    // A modified client keeps its media token (LiveKit cannot revoke one) and joins again.
    const back = await signal(answer.url, answer.token);
    sessions.push(back);
    expect(back.received.find((m) => m.message.case === 'join')?.message.value).toMatchObject({
      participant: { identity: 'troll' },
    });
    await waitFor(
      'the rejoined user removed again',
      async () => ((await identities(LIVEKIT_ROOM)).join() === 'sensei' ? true : undefined),
      { timeoutMs: 10_000 },
    );
    expect(await identities(LIVEKIT_ROOM)).toEqual(['sensei']);
  }, 60_000);

  test('a blocked user is refused a media token', async () => {
    const c = await join(ROOM, 'latecomer', 'student');
    // The block lands while the connection is still open (a kick racing this request).
    await putBlock(svc, {
      roomId: ROOM,
      userId: 'latecomer',
      until: new Date(Date.now() + 60_000).toISOString(),
    });
    await waitFor('the workers see the block', async () => {
      const r = await c.request(RequestEvent.MediaServerData).then(
        () => undefined,
        (e: unknown) => e,
      );
      return r instanceof RoomRequestError ? r : undefined;
    }).then((e) => expect(e.code).toBe('FORBIDDEN'));
  });
});

describe('a deleted Room', () => {
  test('ends its LiveKit room, and keeps out who was in it', async () => {
    await publishRoom(svc, 'mod-doomed', { media: { livekitRoom: 'mod-doomed-lk' } });
    const { answer } = await enterMedia(await join('mod-doomed', 'ann', 'student'));
    await waitFor('ann in LiveKit', async () =>
      (await identities('mod-doomed-lk')).join() === 'ann' ? true : undefined,
    );
    await (await openBucket(svc, Bucket.Rooms)).delete('mod-doomed');
    await waitFor(
      'the LiveKit room gone',
      async () =>
        (await lk.listRooms()).some((r) => r.name === 'mod-doomed-lk') ? undefined : true,
      { timeoutMs: 5_000 },
    );
    // LiveKit makes the room again for a token it still takes; the one who was there is removed.
    const again = await signal(answer.url, answer.token);
    sessions.push(again);
    expect(again.received.find((m) => m.message.case === 'join')?.message.value).toMatchObject({
      participant: { identity: 'ann' },
    });
    await waitFor(
      'the returning participant removed',
      async () => ((await identities('mod-doomed-lk')).length === 0 ? true : undefined),
      { timeoutMs: 10_000 },
    );
  });
});

describe('a Room change reaches connections already open', () => {
  test("a media grant taken away reaches LiveKit's participant at once", async () => {
    // sensei joined LiveKit in the first test and is still there, publishing allowed.
    const grant = async (identity: string) =>
      (await lk.listParticipants(LIVEKIT_ROOM)).find((p) => p.identity === identity)?.permission;
    expect(await grant('sensei')).toMatchObject({ canPublish: true });
    await publishRoom(svc, ROOM, {
      media: { livekitRoom: LIVEKIT_ROOM },
      roles: {
        ...DEFAULT_ROLE_SPECS,
        teacher: {
          ...DEFAULT_ROLE_SPECS.teacher,
          media: { canPublish: false, canSubscribe: true, canPublishData: true },
        },
      },
    });
    await waitFor(
      "LiveKit holds the teacher's narrower grant",
      async () => ((await grant('sensei'))?.canPublish === false ? true : undefined),
      { timeoutMs: 5_000 },
    );
    expect(await grant('sensei')).toMatchObject({ canSubscribe: true, canPublishData: true });
  });

  test("turning the students' chat off refuses their chat within seconds; the teacher's still works", async () => {
    const stream = roomStreamName(CHAT_ROOM);
    const stored = async (user: string): Promise<number> => {
      const subj = chatSubject(CHAT_ROOM, user);
      return (
        (await jsm.streams.info(stream, { subjects_filter: subj })).state.subjects?.[subj] ?? 0
      );
    };
    const teacher = await Classroom.join({
      connect: nodeConnect,
      servers: nats.url,
      token: await token(nats.keys, { room: CHAT_ROOM, sub: 'sensei', role: 'teacher' }),
    });
    classrooms.push(teacher);
    const student = await Classroom.join({
      connect: nodeConnect,
      servers: nats.url,
      token: await token(nats.keys, { room: CHAT_ROOM, sub: 'hana', role: 'student' }),
    });
    classrooms.push(student);
    const teacherStates: string[] = [];
    teacher.on((e) => {
      if (e.type === 'connection') teacherStates.push(e.state);
    });
    const changes: Permissions[] = [];
    student.on((e) => {
      if (e.type === 'permissions-changed') changes.push(e.permissions);
    });
    // A modified client: a raw connection with the student's token that reconnects by itself.
    const raw = await connectClient(
      nats.url,
      CHAT_ROOM,
      'hana',
      await token(nats.keys, { room: CHAT_ROOM, sub: 'hana', role: 'student' }),
      { maxReconnectAttempts: -1, reconnectTimeWait: 100 },
    );
    raws.push(raw);
    const rawChat = (text: string): Promise<boolean> =>
      jetstream(raw)
        .publish(chatSubject(CHAT_ROOM, 'hana'), JSON.stringify({ text }), { timeout: 1_000 })
        .then(
          () => true,
          () => false,
        );
    await student.chat('before');
    expect(await rawChat('before, raw')).toBe(true);
    expect(await stored('hana')).toBe(2);

    writeChatRoom(false);
    await waitFor('the raw connection refused chat', async () => !(await rawChat('during')), {
      timeoutMs: 5_000,
      intervalMs: 250,
    });
    const at = await stored('hana');
    for (let i = 0; i < 3; i++) expect(await rawChat(`after ${i}`)).toBe(false);
    await expect(student.client.chat('after, sdk', 2_000)).rejects.toThrow();
    await teacher.chat('teachers keep chat');
    expect(await stored('sensei')).toBe(1);
    expect(await stored('hana')).toBe(at);

    const told = await waitFor('the SDK tells the new permissions', () => changes[0], {
      timeoutMs: 10_000,
    });
    expect(told).toMatchObject({ chat: false, moderator: false });
    expect(student.permissions.chat).toBe(false);
    expect(teacher.permissions.chat).toBe(true);
    // Only the roles that lost a right were closed.
    expect(teacherStates).toEqual([]);

    // Given back: the SDK sees EVT_ROOM_UPDATED, tells it, and reconnects to be admitted with it.
    writeChatRoom(true);
    const back = await waitFor('the SDK tells chat is back', () => changes[1], {
      timeoutMs: 10_000,
    });
    expect(back).toMatchObject({ chat: true });
    await waitFor('the student chats again', () =>
      student.chat('back').then(
        () => true,
        () => false,
      ),
    );
    expect(await stored('hana')).toBe(at + 1);
  }, 60_000);
});

describe('a kick with LiveKit down', () => {
  test('still blocks and closes the NATS connections, and says media was not reached', async () => {
    await worker.stop();
    // Nothing listens there: every LiveKit call fails.
    worker = await startWorker(nats.keys, [nats.url], {
      livekit: workerLiveKit(`ws://127.0.0.1:${await freePort()}`),
    });
    await join(ROOM, 'unlucky', 'student');
    const started = Date.now();
    const r = await kick('unlucky');
    expect(r).toMatchObject({ userId: 'unlucky', kicked: 1, media: 'failed' });
    expect(Date.now() - started).toBeLessThan(8_000);
    await waitFor('the NATS connection refused', async () => {
      const again = await connectClient(
        nats.url,
        ROOM,
        'unlucky',
        await token(nats.keys, { room: ROOM, sub: 'unlucky', role: 'student' }),
      ).then(
        (nc) => nc,
        () => undefined,
      );
      if (again) raws.push(again);
      return again === undefined;
    });
  }, 60_000);
});
