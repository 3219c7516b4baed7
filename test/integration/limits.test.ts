/**
 * Bounds on what Torii stores (issue: state that stays bounded): every bucket and the work queue
 * have limits the server enforces, read back from the stored configuration, and a client that
 * floods its own event subject is refused past its share while everyone else's events are kept.
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { BUCKET_MAX_BYTES, MAX_KV_VALUE_BYTES, openBucket } from '../../src/infra/kv.js';
import {
  WORKER_MAX_BYTES,
  WORKER_MAX_MSG_SIZE,
  WORKER_MAX_PER_USER,
  ensureWorkerStream,
} from '../../src/infra/streams.js';
import {
  Bucket,
  kvStreamName,
  roleWorkerSubject,
  WORKER_STREAM,
} from '../../src/protocol/subjects.js';
import type { RoomRequestError } from '../../src/client/index.js';
import {
  connectClient,
  joinRoom,
  startCallout,
  token,
  type TestCallout,
} from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { publishRoom } from '../helpers/room.js';

let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  for (const b of Object.values(Bucket)) await openBucket(svc, b);
  await ensureWorkerStream(jsm);
  await publishRoom(svc, 'lim');
  callout = await startCallout(server.keys, [server.url]);
});
afterAll(async () => {
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

test('every bucket is bounded in bytes and value size, with expiring records and markers', async () => {
  for (const b of Object.values(Bucket)) {
    const { config } = await jsm.streams.info(kvStreamName(b));
    expect({ bucket: b, max: config.max_bytes, value: config.max_msg_size }).toEqual({
      bucket: b,
      max: BUCKET_MAX_BYTES[b],
      value: MAX_KV_VALUE_BYTES,
    });
    expect(config.allow_msg_ttl).toBe(true);
    expect(config.subject_delete_marker_ttl).toBeGreaterThan(0);
  }
});

test('a bucket made without limits gets them when a role opens it', async () => {
  await jsm.streams.delete(kvStreamName(Bucket.Blocks));
  const { Kvm } = await import('@nats-io/kv');
  const { jetstream } = await import('@nats-io/jetstream');
  await new Kvm(jetstream(svc)).create(Bucket.Blocks, { history: 1 });
  expect((await jsm.streams.info(kvStreamName(Bucket.Blocks))).config.max_bytes).toBe(-1);
  await openBucket(svc, Bucket.Blocks);
  const { config } = await jsm.streams.info(kvStreamName(Bucket.Blocks));
  expect(config.max_bytes).toBe(BUCKET_MAX_BYTES[Bucket.Blocks]);
  expect(config.allow_msg_ttl).toBe(true);
});

test('the work queue is bounded per user and in total, refusing new events past the bound', async () => {
  const { config } = await jsm.streams.info(WORKER_STREAM);
  expect(config.max_bytes).toBe(WORKER_MAX_BYTES);
  expect(config.max_msgs_per_subject).toBe(WORKER_MAX_PER_USER);
  expect(config.max_msg_size).toBe(WORKER_MAX_MSG_SIZE);
  expect(config.discard).toBe('new');
  expect(config.discard_new_per_subject).toBe(true);
});

test('a client flooding its events is refused past its share; another user’s events are stored', async () => {
  // No worker runs: everything sent stays queued, as under a flood faster than the workers.
  const flood = await connectClient(
    server.url,
    'lim',
    'flood',
    await token(server.keys, { room: 'lim', sub: 'flood', role: 'student' }),
  );
  const other = await connectClient(
    server.url,
    'lim',
    'calm',
    await token(server.keys, { room: 'lim', sub: 'calm', role: 'student' }),
  );
  try {
    const send = async (nc: NatsConnection, user: string, i: number) =>
      (
        await nc.request(
          roleWorkerSubject('lim', user, 'student'),
          JSON.stringify({ event: 'REQ_INITIAL_DATA', id: `${user}-${i}`, data: {} }),
          { timeout: 5_000 },
        )
      ).json<{ seq?: number; error?: { code: number; err_code: number; description: string } }>();
    const answers = [];
    for (let i = 0; i < WORKER_MAX_PER_USER + 20; i++) answers.push(await send(flood, 'flood', i));
    const stored = answers.filter((a) => !a.error && (a.seq ?? 0) > 0);
    const refused = answers.filter((a) => a.error);
    expect(stored).toHaveLength(WORKER_MAX_PER_USER);
    expect(refused).toHaveLength(20);
    expect(refused[0]?.error?.description).toMatch(/maximum messages per subject/i);
    const calm = await send(other, 'calm', 0);
    expect(calm.seq).toBeGreaterThan(0);
    // What the server holds: the flooder's share, and the other user's event.
    const info = await jsm.streams.info(WORKER_STREAM, {
      subjects_filter: roleWorkerSubject('lim', '*', '*'),
    });
    expect(info.state.subjects).toEqual({
      [roleWorkerSubject('lim', 'flood', 'student')]: WORKER_MAX_PER_USER,
      [roleWorkerSubject('lim', 'calm', 'student')]: 1,
    });
  } finally {
    await flood.close();
    await other.close();
  }
});

test('the SDK reports a refused event as RATE_LIMITED, at once', async () => {
  const c = await joinRoom(server.url, server.keys, 'lim', 'eager');
  try {
    const results = await Promise.allSettled(
      Array.from({ length: WORKER_MAX_PER_USER + 10 }, () =>
        c.request('REQ_INITIAL_DATA', {}, 1_000),
      ),
    );
    const codes = results.map((r) =>
      r.status === 'rejected' ? (r.reason as RoomRequestError).code : 'answered',
    );
    // No worker runs: the first hundred wait for an answer in vain, the rest are refused.
    expect(codes.filter((x) => x === 'TIMEOUT')).toHaveLength(WORKER_MAX_PER_USER);
    expect(codes.filter((x) => x === 'RATE_LIMITED')).toHaveLength(10);
    const refused = results.find(
      (r) => r.status === 'rejected' && (r.reason as RoomRequestError).code === 'RATE_LIMITED',
    ) as PromiseRejectedResult;
    expect((refused.reason as Error).message).toMatch(/too many events waiting/);
  } finally {
    await c.close({ leave: false });
  }
});
