/**
 * KvCache against a real bucket: its snapshot completes from what the bucket's own subjects hold,
 * whatever else the bucket's stream may have stored.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { KvCache, openBucket } from '../../src/core/kv.js';
import { silentLogger } from '../../src/core/logger.js';
import { Bucket, kvStreamName } from '../../src/core/subjects.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';

let server: TestNats;
let svc: NatsConnection;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
});
afterAll(async () => {
  await svc?.close();
  await server?.destroy();
});

/**
 * Makes the bucket's stream store a message under a subject outside the bucket, the way a pull
 * delivery aimed at a KV subject did before room clients had an account of their own: the stream
 * captures the delivery and files it under the delivered message's own subject.
 */
async function strayInto(bucket: Bucket): Promise<void> {
  const jsm = await jetstreamManager(svc);
  await jsm.streams.add({ name: 'junk', subjects: ['junk.>'] });
  await jetstream(svc).publish('junk.one', 'x');
  await jsm.consumers.add('junk', { durable_name: 'c', ack_policy: 'explicit' });
  const before = (await jsm.streams.info(kvStreamName(bucket))).state.last_seq;
  svc.publish('$JS.API.CONSUMER.MSG.NEXT.junk.c', JSON.stringify({ batch: 1 }), {
    reply: `$KV.${bucket}.victim`,
  });
  await waitFor(
    'stray stored',
    async () => (await jsm.streams.info(kvStreamName(bucket))).state.last_seq > before,
  );
  const last = await jsm.streams.info(kvStreamName(bucket));
  const m = await jsm.streams.getMessage(kvStreamName(bucket), { seq: last.state.last_seq });
  expect(m?.subject).toBe('junk.one'); // outside `$KV.{bucket}.>`: a watch never delivers it
}

test('a stray message as the stream last sequence does not keep the snapshot from completing', async () => {
  const kv = await openBucket(svc, Bucket.Rooms);
  await kv.put('n5', JSON.stringify({ ok: 1 }));
  await strayInto(Bucket.Rooms);
  const cache = new KvCache(svc, Bucket.Rooms, (d) => d as { ok: number }, silentLogger());
  try {
    await Promise.race([
      cache.start(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('snapshot never completed')), 5_000),
      ),
    ]);
    expect(cache.loaded).toBe(true);
    expect(cache.get('n5')).toEqual({ ok: 1 });
  } finally {
    cache.stop();
  }
});

test('a bucket holding only strays is loaded as empty', async () => {
  await openBucket(svc, Bucket.Blocks);
  const jsm = await jetstreamManager(svc);
  await jsm.streams.delete('junk');
  await strayInto(Bucket.Blocks);
  const cache = new KvCache(svc, Bucket.Blocks, (d) => d, silentLogger());
  try {
    await Promise.race([
      cache.start(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('snapshot never completed')), 5_000),
      ),
    ]);
    expect([...cache.entries()]).toEqual([]);
  } finally {
    cache.stop();
  }
});
