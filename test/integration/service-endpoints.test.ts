/**
 * The platform endpoints (issue 13): a kick closes every connection the servers hold for the
 * user, including those presence has not recorded; `$SRV.STATS` counts errors and processing
 * time of every endpoint.
 */
import { blockKey } from '../../src/domain/blocks.js';
import { openBucket } from '../../src/infra/kv.js';
import { presenceKey } from '../../src/domain/presence.js';
import { definitionOf } from '../../src/protocol/messages.js';
import { Bucket, ServiceSubject } from '../../src/protocol/subjects.js';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { ProtocolValidator } from '../helpers/protocol-schema.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'svc';
let server: TestNats;
let svc: NatsConnection;
let presence: KV;
let callout: TestCallout;
let worker: TestWorker;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, ROOM);
  presence = await openBucket(svc, Bucket.Presence);
  callout = await startCallout(server.keys, [server.url]);
  // No periodic reconcile during the test: presence knows only what its events told it.
  worker = await startWorker(server.keys, [server.url], {
    presence: { graceMs: 2_000, resyncMs: 3_600_000, consumerRetentionMs: 3_600_000 },
  });
});
afterAll(async () => {
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

const request = async (subject: string, body: unknown) => {
  const m = await svc.request(subject, JSON.stringify(body), { timeout: 5_000 });
  return { headers: m.headers, body: m.data.length > 0 ? m.json<Record<string, unknown>>() : {} };
};

const participants = async (): Promise<string[]> =>
  (
    (await request(ServiceSubject.RoomsParticipants, { roomId: ROOM })).body.participants as {
      userId: string;
    }[]
  ).map((p) => p.userId);

test('a kick closes a connection that presence has not recorded', async () => {
  const t = await token(server.keys, { room: ROOM, sub: 'troll', role: 'student' });
  const known = await connectClient(server.url, ROOM, 'troll', t);
  const unknown = await connectClient(server.url, ROOM, 'troll', t);
  const closed = (nc: NatsConnection) => nc.closed().then(() => true);
  await waitFor('tracked', async () => (await participants()).includes('troll'));
  // Presence forgets the user (as if its events were late or lost): only the servers know.
  await presence.delete(presenceKey(ROOM, 'troll'));
  await waitFor('forgotten', async () => !(await participants()).includes('troll'));

  const r = await request(ServiceSubject.RoomsKick, { roomId: ROOM, userId: 'troll' });
  expect(r.body).toMatchObject({ roomId: ROOM, userId: 'troll', kicked: 2 });
  await expect(
    Promise.race([
      Promise.all([closed(known), closed(unknown)]),
      new Promise((resolve) => setTimeout(() => resolve('still open'), 3_000)),
    ]),
  ).resolves.toEqual([true, true]);
});

test('a block leaves the bucket when it ends: nothing of it stays', async () => {
  const blocks = await openBucket(svc, Bucket.Blocks);
  const r = await request(ServiceSubject.RoomsKick, {
    roomId: ROOM,
    userId: 'brief',
    durationSeconds: 1,
  });
  expect(r.body).toMatchObject({ userId: 'brief' });
  expect((await blocks.get(blockKey(ROOM, 'brief')))?.operation).toBe('PUT');
  await waitFor(
    'the block gone from the bucket',
    async () => (await blocks.get(blockKey(ROOM, 'brief')))?.operation !== 'PUT',
    { timeoutMs: 10_000 },
  );
  // A second kick of the same user blocks again (the expired key is no obstacle).
  await request(ServiceSubject.RoomsKick, { roomId: ROOM, userId: 'brief', durationSeconds: 60 });
  expect((await blocks.get(blockKey(ROOM, 'brief')))?.operation).toBe('PUT');
});

test("a kick leaves other users' connections alone", async () => {
  const bystander = await connectClient(
    server.url,
    ROOM,
    'hana',
    await token(server.keys, { room: ROOM, sub: 'hana', role: 'student' }),
  );
  const r = await request(ServiceSubject.RoomsKick, { roomId: ROOM, userId: 'nobody' });
  expect(r.body).toMatchObject({ kicked: 0 });
  await bystander.flush();
  expect(bystander.isClosed()).toBe(false);
  await bystander.close();
});

test('deleting a room closes its connections, also one presence has not recorded', async () => {
  await publishRoom(svc, 'doomed');
  const t = await token(server.keys, { room: 'doomed', sub: 'ann', role: 'student' });
  const conns = [
    await connectClient(server.url, 'doomed', 'ann', t),
    await connectClient(server.url, 'doomed', 'ann', t),
  ];
  const other = await connectClient(
    server.url,
    ROOM,
    'ben',
    await token(server.keys, { room: ROOM, sub: 'ben', role: 'student' }),
  );
  await waitFor('tracked', async () => (await presence.get(presenceKey('doomed', 'ann'))) !== null);
  await presence.delete(presenceKey('doomed', 'ann'));
  const rooms = await openBucket(svc, Bucket.Rooms);
  await rooms.delete('doomed');
  await expect(
    Promise.race([
      Promise.all(conns.map((nc) => nc.closed().then(() => true))),
      new Promise((resolve) => setTimeout(() => resolve('still open'), 3_000)),
    ]),
  ).resolves.toEqual([true, true]);
  await other.flush();
  expect(other.isClosed()).toBe(false);
  await other.close();
});

test.each([
  ['a duration as text', ServiceSubject.RoomsKick, { userId: 'text', durationSeconds: '60' }],
  ['a fractional duration', ServiceSubject.RoomsKick, { userId: 'frac', durationSeconds: 1.5 }],
  [
    'a duration past any date',
    ServiceSubject.RoomsKick,
    { userId: 'huge', durationSeconds: 1e300 },
  ],
  [
    'a block longer than a year',
    ServiceSubject.RoomsKick,
    { userId: 'year', durationSeconds: 366 * 86_400 },
  ],
  ['a token lifetime as text', ServiceSubject.TokensIssue, { userId: 'tt', ttlSeconds: '60' }],
  ['a fractional token lifetime', ServiceSubject.TokensIssue, { userId: 'tf', ttlSeconds: 60.5 }],
])(
  'a request the contract refuses is refused and changes nothing: %s',
  async (_w, subject, fields) => {
    const body = {
      roomId: ROOM,
      ...(subject === ServiceSubject.TokensIssue && { role: 'student' }),
      ...fields,
    };
    // The contract refuses it (docs/protocol.schema.json)…
    expect(
      new ProtocolValidator().errors(definitionOf.endpoint(subject, 'micro', 'request'), body),
    ).not.toEqual([]);
    // …and so does the service: a 400, no token, no block.
    const r = await request(subject, body);
    expect({ status: r.headers?.get('Nats-Service-Error-Code'), body: r.body }).toEqual({
      status: '400',
      body: {},
    });
    const blocks = await openBucket(svc, Bucket.Blocks);
    expect(await blocks.get(blockKey(ROOM, fields.userId))).toBeNull();
  },
);

describe('$SRV.STATS', () => {
  type Stats = {
    endpoints: {
      name: string;
      num_requests: number;
      num_errors: number;
      processing_time: number;
      average_processing_time: number;
      last_error?: string;
    }[];
  };
  const stats = async () =>
    (await svc.request('$SRV.STATS.torii', '', { timeout: 5_000 })).json<Stats>().endpoints;

  test('counts the errors and the processing time of every endpoint', async () => {
    const before = await stats();
    const failed = await request(ServiceSubject.RoomsGet, { roomId: 'no-such-room' });
    expect(failed.headers?.get('Nats-Service-Error-Code')).toBe('404');
    const ok = await request(ServiceSubject.RoomsList, {});
    expect(ok.headers?.get('Nats-Service-Error-Code') ?? '').toBe('');
    const after = await stats();
    const of = (list: Stats['endpoints'], name: string) => {
      const e = list.find((x) => x.name === name);
      if (!e) throw new Error(`no endpoint ${name}`);
      return e;
    };
    const get = [of(before, 'rooms_get'), of(after, 'rooms_get')] as const;
    expect(get[1].num_requests - get[0].num_requests).toBe(1);
    expect(get[1].num_errors - get[0].num_errors).toBe(1);
    expect(get[1].last_error).toMatch(/404.*no-such-room|no-such-room/);
    expect(get[1].processing_time).toBeGreaterThan(get[0].processing_time);
    const list = [of(before, 'rooms_list'), of(after, 'rooms_list')] as const;
    expect(list[1].num_requests - list[0].num_requests).toBe(1);
    expect(list[1].num_errors - list[0].num_errors).toBe(0);
    expect(list[1].processing_time).toBeGreaterThan(list[0].processing_time);
    expect(list[1].average_processing_time).toBeGreaterThan(0);
  });
});
