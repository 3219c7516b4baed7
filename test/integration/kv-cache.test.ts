/**
 * KvCache against a real bucket: its snapshot completes from what the bucket's own subjects hold,
 * whatever else the bucket's stream may have stored, and a deletion it missed while away is seen
 * after it reconnects, even once the deletion's marker has expired. Markers live minutes, not an
 * hour: every departed user leaves some, and they are most of what a bucket holds.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  casUpdate,
  DELETE_MARKER_TTL_MS,
  eraseKey,
  KvCache,
  openBucket,
} from '../../src/infra/kv.js';
import { silentLogger } from '../../src/runtime/logger.js';
import { Bucket, kvStreamName } from '../../src/protocol/subjects.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

/** The longest a delete marker may stay, in milliseconds (issue: buckets flat within 10 %). */
const MARKER_TTL_BOUND_MS = 5 * 60_000;
const NANOS_PER_MS = 1_000_000;

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

test('a deletion leaves a marker that expires within minutes, in a new bucket and in one made with the old hour', async () => {
  const jsm = await jetstreamManager(svc);
  // A bucket as an older Torii made it: markers kept an hour.
  await jsm.streams.add({
    name: kvStreamName(Bucket.Presence),
    subjects: [`$KV.${Bucket.Presence}.>`],
    max_msgs_per_subject: 1,
    allow_rollup_hdrs: true,
    deny_delete: true,
    allow_direct: true,
    allow_msg_ttl: true,
    subject_delete_marker_ttl: 3_600_000 * NANOS_PER_MS,
  });
  for (const bucket of [Bucket.Presence, Bucket.RoomState]) {
    const kv = await openBucket(svc, bucket);
    const stored = (await jsm.streams.info(kvStreamName(bucket))).config;
    expect(stored.subject_delete_marker_ttl).toBe(DELETE_MARKER_TTL_MS * NANOS_PER_MS);
    await kv.put('gone', JSON.stringify({ v: 1 }));
    await casUpdate(
      kv,
      'gone',
      (d) => d,
      () => ({ delete: true }),
    );
    const marker = await jsm.streams.getMessage(kvStreamName(bucket), {
      last_by_subj: `$KV.${bucket}.gone`,
    });
    expect(marker?.header.get('KV-Operation')).toBe('PURGE');
    const ttl = marker?.header.get('Nats-TTL') ?? '';
    expect(ttl).toMatch(/^\d+s$/);
    expect(Number(ttl.slice(0, -1)) * 1000).toBe(DELETE_MARKER_TTL_MS);
  }
  expect(DELETE_MARKER_TTL_MS).toBeLessThanOrEqual(MARKER_TTL_BOUND_MS);
});

test('a cache away while a key was deleted and its marker expired drops the key once back', async () => {
  const kv = await openBucket(svc, Bucket.Blocks);
  await kv.put('away', JSON.stringify({ v: 1 }));
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(server.url).port) });
  const nc = await server.connectService({
    servers: `127.0.0.1:${proxy.port}`,
    reconnectTimeWait: 100,
    maxReconnectAttempts: -1,
    pingInterval: 500,
    maxPingOut: 2,
  });
  let reconnects = 0;
  void (async () => {
    for await (const st of nc.status()) if (st.type === 'reconnect') reconnects++;
  })();
  const cache = new KvCache(nc, Bucket.Blocks, (d) => d, silentLogger());
  try {
    await cache.start();
    expect(cache.get('away')).toEqual({ v: 1 });
    proxy.setMode('stall');
    // Deleted, and nothing of the deletion left: what an expired marker leaves.
    const e = await kv.get('away');
    await eraseKey(await jetstreamManager(svc), Bucket.Blocks, 'away', e?.revision ?? 0);
    expect(await kv.get('away')).toBeNull();
    expect(cache.get('away')).toEqual({ v: 1 });
    proxy.setMode('forward');
    await waitFor('the cache drops the key', () => cache.get('away') === undefined, {
      timeoutMs: 15_000,
    });
    expect(reconnects).toBeGreaterThanOrEqual(1); // it came back through a new connection
  } finally {
    cache.stop();
    await nc.close();
    await proxy.close();
  }
});
