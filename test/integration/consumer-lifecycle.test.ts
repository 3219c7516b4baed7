/**
 * A user's or device's consumer exists only while it is needed (docs/decisions.md, "A consumer
 * only while it is needed"): the server deletes it its inactive threshold after its last pull,
 * and nothing a device should get is lost. The threshold is made short here with the callout's
 * and the worker's setting (`--consumer-inactive-threshold`); everything is read back from the
 * server.
 */
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { RoomClient, type RoomMessage } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import {
  DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS,
  nanos,
  userConsumerConfig,
} from '../../src/infra/streams.js';
import { chatSubject, deviceConsumerName, JsApi } from '../../src/protocol/subjects.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'lifecycle';
/** Short, so a consumer expires within a test. */
const THRESHOLD_MS = 2_000;

let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;
let proxy: TcpProxy;
const clients: RoomClient[] = [];

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  await publishRoom(svc, ROOM, { maxParticipants: 20 });
  callout = await startCallout(server.keys, [server.url], {
    consumerInactiveThresholdMs: THRESHOLD_MS,
  });
  worker = await startWorker(server.keys, [server.url], {
    consumerInactiveThresholdMs: THRESHOLD_MS,
  });
  proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(server.url).port) });
});
afterAll(async () => {
  for (const c of clients) await c.close({ leave: false }).catch(() => undefined);
  await proxy?.close();
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

/** A device joined through the proxy, so a test can cut it off without closing it. */
async function device(user: string, deviceId: string, got: RoomMessage[]): Promise<RoomClient> {
  const c = await RoomClient.connect({
    connect,
    servers: `127.0.0.1:${proxy.port}`,
    roomId: ROOM,
    userId: user,
    deviceId,
    token: await token(server.keys, { room: ROOM, sub: user, role: 'student' }),
    autoRenew: false,
    listener: (m) => got.push(m),
    connection: { pingInterval: 300, maxPingOut: 2, reconnectTimeWait: 200 },
  });
  clients.push(c);
  return c;
}

const exists = async (name: string): Promise<boolean> =>
  jsm.consumers.info(ROOM, name).then(
    () => true,
    (e: unknown) => {
      if (e instanceof Error && /consumer not found/.test(e.message)) return false;
      throw e;
    },
  );

const chat = async (text: string): Promise<number> =>
  (await jetstream(svc).publish(chatSubject(ROOM, 'teacher'), JSON.stringify({ text }))).seq;

test('the default threshold is short, and a consumer is created with the threshold the callout was given', async () => {
  expect(DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS).toBeLessThanOrEqual(60_000);
  expect(userConsumerConfig(ROOM, 'x').inactive_threshold).toBe(
    nanos(DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS),
  );
  await device('aiko', 'laptop', []);
  const info = await jsm.consumers.info(ROOM, deviceConsumerName('aiko', 'laptop'));
  expect(info.config.inactive_threshold).toBe(nanos(THRESHOLD_MS));
});

test('a connected device whose consumer expired reconnects after missing messages and gets every one of them, once, in order', async () => {
  const got: RoomMessage[] = [];
  const c = await device('ren', 'phone', got);
  const name = deviceConsumerName('ren', 'phone');
  const before = await chat('before');
  await waitFor('live message', () => got.some((m) => m.seq === before));
  // Idle: the server deletes the consumer, while the device stays connected and keeps receiving.
  await waitFor('consumer expired', async () => !(await exists(name)), { timeoutMs: 15_000 });
  const live = await chat('while connected');
  await waitFor('live message after the expiry', () => got.some((m) => m.seq === live));

  // Cut off: what is published now reaches the device only through a catch-up.
  proxy.setMode('stall');
  await waitFor('disconnected', () => !c.connected, { timeoutMs: 10_000 });
  const missed: number[] = [];
  for (let i = 0; i < 5; i++) missed.push(await chat(`missed ${i}`));
  proxy.setMode('forward');

  await waitFor('every missed message', () => missed.every((s) => got.some((m) => m.seq === s)), {
    timeoutMs: 15_000,
  });
  expect(c.connected).toBe(true);
  const seqs = got.map((m) => m.seq);
  expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b)); // once each, in order
  // The reconnect's admission created the consumer again, with the short threshold.
  expect((await jsm.consumers.info(ROOM, name)).config.inactive_threshold).toBe(
    nanos(THRESHOLD_MS),
  );
});

test('a device that restarts after its consumer expired resumes after its last message, missing nothing', async () => {
  const got: RoomMessage[] = [];
  const c = await device('sora', 'tablet', got);
  const first = await chat('first');
  await waitFor('first', () => got.some((m) => m.seq === first));
  const last = c.lastSequence;
  await c.close({ leave: false });
  const missed: number[] = [];
  for (let i = 0; i < 3; i++) missed.push(await chat(`away ${i}`));
  await waitFor(
    'consumer expired',
    async () => !(await exists(deviceConsumerName('sora', 'tablet'))),
    { timeoutMs: 15_000 },
  );

  const again: RoomMessage[] = [];
  const c2 = await RoomClient.connect({
    connect,
    servers: server.url,
    roomId: ROOM,
    userId: 'sora',
    deviceId: 'tablet',
    token: await token(server.keys, { room: ROOM, sub: 'sora', role: 'student' }),
    autoRenew: false,
    resumeAfter: last,
    listener: (m) => again.push(m),
  });
  clients.push(c2);
  await waitFor('missed messages', () => missed.every((s) => again.some((m) => m.seq === s)));
  expect(again.every((m) => m.seq > last)).toBe(true);
});

test('within one connection, REQ_RESTORE_CONSUMER creates an expired consumer again for a listed device only', async () => {
  const c = await device('kai', 'desk', []);
  const name = deviceConsumerName('kai', 'desk');
  await waitFor('consumer expired', async () => !(await exists(name)), { timeoutMs: 15_000 });
  await expect(c.request(RequestEvent.RestoreConsumer, { deviceId: 'desk' })).resolves.toEqual({
    consumer: name,
    restored: true,
  });
  const info = await jsm.consumers.info(ROOM, name);
  expect(info.config.inactive_threshold).toBe(nanos(THRESHOLD_MS));
  // The catch-up the SDK retries finds it: a reset to the start answers with what is pending.
  const reset = await c.nc.request(JsApi.consumerReset(ROOM, name), '{"seq":1}');
  expect(reset.json<{ error?: unknown }>().error).toBeUndefined();

  // A device the callout never listed gets nothing made for it.
  await expect(
    c.request(RequestEvent.RestoreConsumer, { deviceId: 'unlisted' }),
  ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  expect(await exists(deviceConsumerName('kai', 'unlisted'))).toBe(false);
});

test("a catch-up acks cumulatively: the consumer's ack floor reaches the last message with nothing pending, and an older Torii's consumer (explicit acks) is replaced at admission", async () => {
  const name = deviceConsumerName('ume', 'pc');
  // As an older Torii created it: explicit acks, a day's threshold.
  await jsm.consumers.add(ROOM, {
    ...userConsumerConfig(ROOM, 'ume', 86_400_000, name),
    ack_policy: AckPolicy.Explicit,
  });
  // More than one batch of the catch-up, from three senders (each subject keeps a share).
  const sent: number[] = [];
  for (let i = 0; i < 300; i++)
    sent.push(
      (
        await jetstream(svc).publish(
          chatSubject(ROOM, `sender${i % 3}`),
          JSON.stringify({ text: `history ${i}` }),
        )
      ).seq,
    );
  const got: RoomMessage[] = [];
  const c = await RoomClient.connect({
    connect,
    servers: server.url,
    roomId: ROOM,
    userId: 'ume',
    deviceId: 'pc',
    token: await token(server.keys, { room: ROOM, sub: 'ume', role: 'student' }),
    autoRenew: false,
    resumeAfter: 0,
    listener: (m) => got.push(m),
  });
  clients.push(c);
  expect(sent.filter((s) => !got.some((m) => m.seq === s))).toEqual([]);
  const info = await jsm.consumers.info(ROOM, name);
  expect(info.config.ack_policy).toBe(AckPolicy.All);
  expect(info.config.inactive_threshold).toBe(nanos(THRESHOLD_MS));
  expect(info.delivered.stream_seq).toBeGreaterThanOrEqual(sent[sent.length - 1] as number);
  // The last batch's one ack acknowledges everything delivered.
  await waitFor('acked', async () => {
    const i = await jsm.consumers.info(ROOM, name);
    return i.num_ack_pending === 0 && i.ack_floor.stream_seq === i.delivered.stream_seq;
  });
});
