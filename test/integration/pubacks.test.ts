/**
 * The SDK's JetStream publisher (src/client/pubacks.ts) against a real server: what a stream
 * stored is what was published, once per message id; each failure comes back as its own error,
 * and a publish never waits past its time.
 */
import { jetstreamManager, JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { NoStreamError, PublisherClosedError, StoredPublisher } from '../../src/client/pubacks.js';
import { startNats, type TestNats } from '../helpers/nats.js';

let server: TestNats;
let nc: NatsConnection;
let jsm: JetStreamManager;
let pub: StoredPublisher;

beforeAll(async () => {
  server = await startNats();
  nc = await server.connectService();
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'acks', subjects: ['acks.>'], max_msg_size: 64 });
  pub = new StoredPublisher(nc, '_INBOX.acks');
});
afterAll(async () => {
  pub?.close();
  await nc?.close();
  await server?.destroy();
});

test('200 publishes at once are each stored once, in the stream, with their message id; a repeated id is not stored again', async () => {
  const before = (await jsm.streams.info('acks')).state.messages;
  await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      pub.publish(`acks.m.${i}`, `{"i":${i}}`, `id-${i}`, 5_000),
    ),
  );
  await pub.publish('acks.m.7', '{"i":7}', 'id-7', 5_000); // a retry: acknowledged, not stored
  const { state } = await jsm.streams.info('acks');
  expect(state.messages - before).toBe(200);
  const m = await jsm.streams.getMessage('acks', { last_by_subj: 'acks.m.7' });
  expect(m?.json()).toEqual({ i: 7 });
  expect(m?.header.get('Nats-Msg-Id')).toBe('id-7');
});

test("a stream's refusal comes back as JetStream's error, with its code; nothing is stored", async () => {
  const before = (await jsm.streams.info('acks')).state.messages;
  const e: unknown = await pub
    .publish('acks.big', 'x'.repeat(100), 'big', 5_000)
    .catch((x: unknown) => x);
  expect(e).toBeInstanceOf(JetStreamApiError);
  expect((e as JetStreamApiError).code).toBe(10054); // message size exceeds maximum allowed
  expect((await jsm.streams.info('acks')).state.messages).toBe(before);
});

test('a subject no stream stores fails at once with NoStreamError', async () => {
  const t0 = Date.now();
  const e: unknown = await pub.publish('nostream.x', '{}', 'n1', 5_000).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(NoStreamError);
  expect((e as Error).message).toContain('nostream.x');
  expect(Date.now() - t0).toBeLessThan(2_000);
});

test('an answer that never comes ends in a TimeoutError after the publish time', async () => {
  const silent = nc.subscribe('silent.>'); // takes the message, answers nothing
  try {
    const t0 = Date.now();
    const e: unknown = await pub.publish('silent.x', '{}', 's1', 300).catch((x: unknown) => x);
    expect((e as Error).name).toBe('TimeoutError');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  } finally {
    silent.unsubscribe();
  }
});

test('closing fails what is still waiting, and every later publish', async () => {
  const own = new StoredPublisher(nc, '_INBOX.closing');
  const silent = nc.subscribe('silent.>');
  try {
    const waiting = own.publish('silent.y', '{}', 'w1', 10_000).catch((x: unknown) => x);
    own.close();
    expect(await waiting).toBeInstanceOf(PublisherClosedError);
    await expect(own.publish('acks.after', '{}', 'w2', 1_000)).rejects.toBeInstanceOf(
      PublisherClosedError,
    );
  } finally {
    silent.unsubscribe();
  }
});
