/**
 * The platform's NestJS services (issue 16), with the real `@nestjs/microservices` NATS transport:
 * `ClientProxy.send` to every `torii.*` endpoint returns the endpoint's data, an endpoint's error
 * reaches the caller as an error carrying Torii's code, plain micro clients still get the micro
 * protocol's headers, and `$SRV.STATS` counts both kinds of caller.
 */
import { firstValueFrom } from 'rxjs';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import type { NatsConnection } from '@nats-io/transport-node';
import { ServiceUser } from '../../src/core/natsconf.js';
import { ServiceSubject } from '../../src/core/subjects.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
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
  nest = ClientProxyFactory.create({
    transport: Transport.NATS,
    options: {
      servers: [server.url],
      user: ServiceUser.Service,
      pass: server.keys.server.servicePassword,
    },
  });
  await nest.connect();
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
