/**
 * The worker notices when its durable consumer `torii_queue` is gone (issue 13): it is not ready
 * while it cannot consume, creates the consumer again with the same configuration, and answers
 * events again.
 */
import { AckPolicy, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { RoomClient } from '../../src/client/index.js';
import { WORKER_CONSUMER, WORKER_STREAM } from '../../src/protocol/subjects.js';
import { joinRoom, startCallout, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'queue';
let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;
let client: RoomClient;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  await publishRoom(svc, ROOM);
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url], {
    pool: { concurrency: 10, ackWaitMs: 5_000, maxDeliver: 3 },
  });
  client = await joinRoom(server.url, server.keys, ROOM, 'hana');
});
afterAll(async () => {
  await client?.close();
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

/** The worker's readiness check of its queue: 'ok', or why it is not ready. */
const queueCheck = (): string | undefined => worker.ops.readiness().checks.queue;

test('the worker is ready only while it consumes', () => {
  expect(queueCheck()).toBe('ok');
});

test('torii_queue deleted: created again with the same configuration, events answered again', async () => {
  const before = await jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER);
  await jsm.consumers.delete(WORKER_STREAM, WORKER_CONSUMER);
  const after = await waitFor('torii_queue again', () =>
    jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER),
  );
  expect(after.config).toEqual(before.config);
  await waitFor('ready again', () => queueCheck() === 'ok');
  await expect(client.request('REQ_INITIAL_DATA', {}, 5_000)).resolves.toMatchObject({
    me: { userId: 'hana' },
  });
}, 30_000);

test('not ready while torii_queue cannot be created, ready once it can', async () => {
  // Another unfiltered consumer takes the work queue's only place, so the worker cannot create
  // its own: it must say so. The worker may win the race to the place; then try again.
  await waitFor(
    'a blocking consumer in place of torii_queue',
    async () => {
      await jsm.consumers.delete(WORKER_STREAM, WORKER_CONSUMER).catch(() => undefined);
      await jsm.consumers.add(WORKER_STREAM, {
        durable_name: 'blocker',
        ack_policy: AckPolicy.Explicit,
      });
      return true;
    },
    { timeoutMs: 10_000, intervalMs: 10 },
  );
  await waitFor('not ready', () => queueCheck() !== 'ok' && queueCheck(), { timeoutMs: 15_000 });
  await jsm.consumers.delete(WORKER_STREAM, 'blocker');
  await waitFor('ready again', () => queueCheck() === 'ok', { timeoutMs: 15_000 });
  await expect(jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER)).resolves.toBeDefined();
  await expect(client.request('REQ_INITIAL_DATA', {}, 5_000)).resolves.toMatchObject({
    me: { userId: 'hana' },
  });
}, 60_000);

test('sysJsWorker deleted: stream and consumer created again, events answered again', async () => {
  await jsm.streams.delete(WORKER_STREAM);
  await waitFor('torii_queue again', () => jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER), {
    timeoutMs: 15_000,
  });
  await waitFor('ready again', () => queueCheck() === 'ok');
  await expect(client.request('REQ_INITIAL_DATA', {}, 5_000)).resolves.toMatchObject({
    me: { userId: 'hana' },
  });
}, 30_000);
