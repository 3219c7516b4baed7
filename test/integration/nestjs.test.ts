/**
 * The platform's NestJS services (issue 16), with the real `@nestjs/microservices` NATS transport:
 * `ClientProxy.send` to every `torii.*` endpoint returns the endpoint's data, an endpoint's error
 * reaches the caller as an error carrying Torii's code, plain micro clients still get the micro
 * protocol's headers, and `$SRV.STATS` counts both kinds of caller. NestJS `@EventPattern`
 * handlers receive the platform events of a class of two once each, with two worker replicas.
 */
import 'reflect-metadata';
import { firstValueFrom } from 'rxjs';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NatsContext } from '@nestjs/microservices';
import { Ctx, EventPattern, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import type { NatsConnection } from '@nats-io/transport-node';
import { ServiceUser } from '../../src/infra/natsconf.js';
import { PLATFORM_EVENTS_ALL, PlatformEvent, ServiceSubject } from '../../src/protocol/subjects.js';
import { expectViolation } from '../helpers/assert-nats.js';
import type { RoomClient } from '../../src/client/index.js';
import {
  connectClient,
  joinRoom,
  startCallout,
  token,
  type TestCallout,
} from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { nestCaller } from '../helpers/nest.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'nest';
let server: TestNats;
let svc: NatsConnection;
let callout: TestCallout;
let worker: TestWorker;
let nest: ClientProxy;
const clients: NatsConnection[] = [];

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, ROOM, { title: 'Nest class' });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
  // What a platform service registers as `NATS_SERVICE` (ClientsModule builds the same proxy).
  nest = await nestCaller(server);
});
afterAll(async () => {
  await nest?.close();
  for (const c of clients) await c.close().catch(() => undefined);
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

const send = <T = unknown>(pattern: string, data: unknown): Promise<T> =>
  firstValueFrom(nest.send<T>(pattern, data));

/** The same request as a plain micro client makes it. */
const micro = async (subject: string, body: unknown) => {
  const m = await svc.request(subject, JSON.stringify(body), { timeout: 5_000 });
  return {
    code: m.headers?.get('Nats-Service-Error-Code') ?? '',
    error: m.headers?.get('Nats-Service-Error') ?? '',
    body: m.data.length > 0 ? m.json<unknown>() : undefined,
  };
};

describe('ClientProxy.send to each endpoint returns its data', () => {
  beforeAll(async () => {
    const t = await token(server.keys, { room: ROOM, sub: 'hana', role: 'student', name: 'Hana' });
    clients.push(await connectClient(server.url, ROOM, 'hana', t));
    await waitFor('hana tracked', async () => {
      const r = await micro(ServiceSubject.RoomsParticipants, { roomId: ROOM });
      return JSON.stringify(r.body).includes('"hana"');
    });
  });

  test('torii.rooms.list', async () => {
    const rooms = await send<{ roomId: string; title: string }[]>(ServiceSubject.RoomsList, {});
    expect(rooms).toEqual((await micro(ServiceSubject.RoomsList, {})).body);
    expect(rooms).toContainEqual(expect.objectContaining({ roomId: ROOM, title: 'Nest class' }));
  });

  test('torii.rooms.get', async () => {
    const room = await send(ServiceSubject.RoomsGet, { roomId: ROOM });
    expect(room).toMatchObject({ roomId: ROOM, title: 'Nest class', participants: 1 });
    expect(room).toEqual((await micro(ServiceSubject.RoomsGet, { roomId: ROOM })).body);
  });

  test('torii.rooms.participants', async () => {
    const r = await send(ServiceSubject.RoomsParticipants, { roomId: ROOM });
    expect(r).toMatchObject({
      roomId: ROOM,
      participants: [{ userId: 'hana', name: 'Hana', role: 'student', state: 'online' }],
    });
  });

  test('torii.tokens.issue', async () => {
    const r = await send<{ token: string; expiresAt: string }>(ServiceSubject.TokensIssue, {
      roomId: ROOM,
      userId: 'kenji',
      role: 'student',
      ttlSeconds: 60,
    });
    expect(r.token.split('.')).toHaveLength(3);
    // The token is one the callout admits.
    const nc = await connectClient(server.url, ROOM, 'kenji', r.token);
    clients.push(nc);
    expect(nc.isClosed()).toBe(false);
  });

  test('torii.rooms.kick', async () => {
    const hana = clients[0] as NatsConnection;
    const r = await send(ServiceSubject.RoomsKick, {
      roomId: ROOM,
      userId: 'hana',
      durationSeconds: 5,
    });
    expect(r).toMatchObject({ roomId: ROOM, userId: 'hana', kicked: 1 });
    await hana.closed();
  });
});

describe('errors', () => {
  test.each([
    ['an unknown room', ServiceSubject.RoomsGet, { roomId: 'nowhere' }, 'NOT_FOUND', /nowhere/],
    ['an invalid id', ServiceSubject.RoomsGet, { roomId: 'a.b' }, 'BAD_REQUEST', /roomId/],
    [
      'a role the room lacks',
      ServiceSubject.TokensIssue,
      { roomId: ROOM, userId: 'x', role: 'janitor' },
      'BAD_REQUEST',
      /role/,
    ],
  ])(
    '%s reaches the NestJS caller as an error with Torii’s code',
    async (_w, subject, data, code, msg) => {
      const err = await send(subject, data).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toEqual({ code, message: expect.stringMatching(msg) as unknown });
    },
  );

  test('a plain micro client still gets the micro headers and an empty body', async () => {
    const r = await micro(ServiceSubject.RoomsGet, { roomId: 'nowhere' });
    expect(r).toEqual({ code: '404', error: 'room nowhere does not exist', body: undefined });
  });

  test('a body that is not a JSON object is refused for either caller', async () => {
    expect(await micro(ServiceSubject.RoomsGet, [1])).toMatchObject({ code: '400' });
    await expect(send(ServiceSubject.RoomsGet, 'n5')).rejects.toEqual({
      code: 'BAD_REQUEST',
      message: 'request body must be a JSON object',
    });
  });
});

test('$SRV.STATS counts the requests and errors of NestJS callers too', async () => {
  type Stats = { endpoints: { name: string; num_requests: number; num_errors: number }[] };
  const stats = async () =>
    (await svc.request('$SRV.STATS.torii', '', { timeout: 5_000 }))
      .json<Stats>()
      .endpoints.find((e) => e.name === 'rooms_get');
  const before = await stats();
  await send(ServiceSubject.RoomsGet, { roomId: ROOM });
  await send(ServiceSubject.RoomsGet, { roomId: 'nowhere' }).catch(() => undefined);
  const after = await stats();
  expect(after?.num_requests).toBe((before?.num_requests ?? 0) + 2);
  expect(after?.num_errors).toBe((before?.num_errors ?? 0) + 1);
});

describe('platform events reach NestJS @EventPattern handlers once each, with two workers', () => {
  const CLASS = 'nest-class';
  type Seen = { service: string; subject: string; data: Record<string, unknown> };
  const seen: Seen[] = [];
  const apps: INestMicroservice[] = [];
  let second: TestWorker;

  /**
   * A NestJS service listening to every platform event in its queue group. The decorators are
   * NestJS's own, applied as functions: the test files are compiled without legacy decorators
   * (docs/platform.md's recipe, compiled with them, is run by platform-docs.test.ts).
   */
  async function listener(service: string, queue: string): Promise<INestMicroservice> {
    class Listener {
      on(data: Record<string, unknown>, ctx: NatsContext): void {
        seen.push({ service, subject: ctx.getSubject(), data });
      }
    }
    const on = Object.getOwnPropertyDescriptor(Listener.prototype, 'on') as PropertyDescriptor;
    EventPattern(Object.values(PlatformEvent))(Listener.prototype, 'on', on);
    Payload()(Listener.prototype, 'on', 0);
    Ctx()(Listener.prototype, 'on', 1);
    Controller()(Listener);
    class ListenerModule {}
    Module({ controllers: [Listener] })(ListenerModule);
    const app = await NestFactory.createMicroservice(ListenerModule, {
      transport: Transport.NATS,
      options: {
        servers: [server.url],
        user: ServiceUser.Service,
        pass: server.keys.server.servicePassword,
        queue,
      },
      logger: ['error', 'warn'],
    });
    await app.listen();
    apps.push(app);
    return app;
  }

  beforeAll(async () => {
    await publishRoom(svc, CLASS, { title: 'Two workers' });
    second = await startWorker(server.keys, [server.url]);
    // Two instances of one service share a queue (they balance); another service has its own.
    await listener('attendance-1', 'attendance');
    await listener('attendance-2', 'attendance');
    await listener('analytics', 'analytics');
  });
  afterAll(async () => {
    for (const a of apps) await a.close();
    await second?.stop();
  });

  const events = (service: (s: string) => boolean, subject: string, userId: string) =>
    seen.filter((s) => service(s.service) && s.subject === subject && s.data.userId === userId);
  const attendance = (s: string) => s.startsWith('attendance-');
  const analytics = (s: string) => s === 'analytics';

  test('joined, hand raised and lowered, left: each once per service', async () => {
    const sensei: RoomClient = await joinRoom(server.url, server.keys, CLASS, 'sensei', {
      role: 'teacher',
    });
    const yuki: RoomClient = await joinRoom(server.url, server.keys, CLASS, 'yuki');
    await yuki.request('REQ_RAISE_HAND', { note: 'question' });
    await sensei.request('REQ_LOWER_HAND', { userId: 'yuki' });
    await yuki.close(); // says it leaves: left at once
    await sensei.nc.close(); // just gone: left after the grace period (2 s here)

    const expected: [string, string, Record<string, unknown>][] = [
      [
        PlatformEvent.ParticipantJoined,
        'sensei',
        { roomId: CLASS, role: 'teacher', name: 'sensei' },
      ],
      [PlatformEvent.ParticipantJoined, 'yuki', { roomId: CLASS, role: 'student', name: 'yuki' }],
      [PlatformEvent.HandRaised, 'yuki', { roomId: CLASS, note: 'question' }],
      [PlatformEvent.HandLowered, 'yuki', { roomId: CLASS, by: 'sensei' }],
      [PlatformEvent.ParticipantLeft, 'yuki', { roomId: CLASS, reason: 'leave' }],
      [PlatformEvent.ParticipantLeft, 'sensei', { roomId: CLASS, reason: 'disconnected' }],
    ];
    for (const service of [attendance, analytics])
      for (const [subject, userId] of expected)
        await waitFor(
          `${subject} of ${userId}`,
          () => events(service, subject, userId).length > 0,
          {
            timeoutMs: 15_000,
          },
        );
    // Long enough for a copy from the other replica to arrive: its grace sweep runs every
    // 500 ms, and both replicas saw the same grace period end.
    await new Promise((r) => setTimeout(r, 3_000));
    for (const service of [attendance, analytics])
      for (const [subject, userId, data] of expected) {
        const got = events(service, subject, userId);
        expect(got).toHaveLength(1);
        expect(got[0]?.data).toMatchObject({ userId, ...data, at: expect.any(String) as unknown });
        expect(Number.isNaN(Date.parse(String(got[0]?.data.at)))).toBe(false);
      }
    // Nothing else of the class reached anyone.
    const ofClass = seen.filter((s) => s.data.roomId === CLASS);
    expect(ofClass).toHaveLength(2 * expected.length);
  });

  test('a room client can neither hear nor forge platform events (from the attacker’s side)', async () => {
    // A teacher: the role with the most rights.
    const t = await token(server.keys, { room: CLASS, sub: 'mallory', role: 'teacher' });
    const mallory = await connectClient(server.url, CLASS, 'mallory', t);
    clients.push(mallory);
    const heard: string[] = [];
    for (const subject of [PLATFORM_EVENTS_ALL, PlatformEvent.ParticipantJoined]) {
      await expectViolation(mallory, 'subscription', subject, () => {
        const sub = mallory.subscribe(subject);
        void (async () => {
          for await (const m of sub) heard.push(m.subject);
        })().catch(() => undefined);
      });
    }
    const forged = { roomId: CLASS, userId: 'ghost', name: 'Ghost', role: 'teacher', at: 'now' };
    for (const subject of [PlatformEvent.ParticipantJoined, PlatformEvent.RoomEnded])
      await expectViolation(mallory, 'publish', subject, () =>
        mallory.publish(subject, JSON.stringify(forged)),
      );
    // A real event after the forged ones: by then they would have arrived.
    const witness = await connectClient(
      server.url,
      CLASS,
      'witness',
      await token(server.keys, { room: CLASS, sub: 'witness', role: 'student' }),
    );
    clients.push(witness);
    await waitFor(
      'the witness joined, for both services',
      () =>
        events(attendance, PlatformEvent.ParticipantJoined, 'witness').length === 1 &&
        events(analytics, PlatformEvent.ParticipantJoined, 'witness').length === 1,
    );
    expect(
      seen.filter((s) => s.data.userId === 'ghost' || s.subject === PlatformEvent.RoomEnded),
    ).toEqual([]);
    expect(heard).toEqual([]);
    expect(mallory.isClosed()).toBe(false);
  });
});
