/**
 * REQ_INITIAL_DATA must leave nothing behind on the servers. Reading the raised hands with
 * `kv.keys()` created an ordered push consumer on `KV_torii_room_state` per request, which the
 * server kept for its 5-minute inactive threshold: past 1,000 requests in 5 minutes the stream's
 * consumer limit (nats-server 2.15 default: 1,000) was reached and every later request failed.
 * Found by test/integration/cluster-faults.test.ts (scenario d, after a and b).
 *
 * Nor may it depend on how many users a room has had: one `multi_last` direct get, which
 * replaced `kv.keys()`, is refused past 1,024 keys ("too many results"), delete markers of users
 * cleaned up within the hour included. Found by bench/soak.ts.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { RoomClient } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { DELETE_MARKER_TTL, openBucket } from '../../src/infra/kv.js';
import { handKey } from '../../src/domain/room-state.js';
import { Bucket, kvStreamName } from '../../src/protocol/subjects.js';
import { joinRoom, startCallout, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

let server: TestNats;
let callout: TestCallout;
let worker: TestWorker;

beforeAll(async () => {
  server = await startNats();
  const svc = await server.connectService();
  await publishRoom(svc, 'idc');
  await publishRoom(svc, 'crowd');
  await svc.close();
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
});
afterAll(async () => {
  await worker?.stop();
  await callout?.stop();
  await server?.destroy();
});

// Failed before hands were read with a direct batch get (`lastValues`): 1,000 consumers.
test('1,000 REQ_INITIAL_DATA within minutes leave no consumer on KV_torii_room_state, and the next is answered', async () => {
  const clients: RoomClient[] = [];
  for (let i = 0; i < 10; i++)
    clients.push(await joinRoom(server.url, server.keys, 'idc', `reader${i}`));
  const svc = await server.connectService();
  try {
    const failures: string[] = [];
    await Promise.all(
      clients.map(async (c) => {
        for (let n = 0; n < 20; n++)
          await Promise.all(
            Array.from({ length: 5 }, () =>
              c
                .request(RequestEvent.InitialData, {}, 30_000)
                .catch((e: unknown) => void failures.push(String(e))),
            ),
          );
      }),
    );
    const jsm = await jetstreamManager(svc);
    const consumers = (await jsm.streams.info(kvStreamName(Bucket.RoomState))).state.consumer_count;
    console.log(`initial-data-consumers: ${consumers} consumers on KV_torii_room_state`);
    expect({ failures: failures.length, first: failures[0] }).toEqual({
      failures: 0,
      first: undefined,
    });
    // The 1,001st within the 5 minutes.
    await expect(
      (clients[0] as RoomClient).request(RequestEvent.InitialData, {}, 20_000),
    ).resolves.toMatchObject({ hands: [] });
    expect(consumers).toBeLessThan(50);
  } finally {
    await svc.close();
    await Promise.all(clients.map((c) => c.close()));
  }
}, 90_000);

// Failed before hands were read page by page: "too many results" past 1,024 hand keys.
test('a room with 1,100 hand keys (700 of users cleaned up, 300 lowered, 100 raised): REQ_INITIAL_DATA lists the 100 raised hands', async () => {
  const svc = await server.connectService();
  const c = await joinRoom(server.url, server.keys, 'crowd', 'asker');
  try {
    const state = await openBucket(svc, Bucket.RoomState);
    const at = new Date().toISOString();
    const hand = (raised: boolean) =>
      JSON.stringify({ raised, raisedAt: at, note: '', appliedSeq: 1 });
    for (let i = 0; i < 1_100; i++) {
      const key = handKey('crowd', `u${String(i).padStart(4, '0')}`);
      await state.put(key, hand(i < 100));
      // The worker's cleanup after the retention period: a marker that stays an hour.
      if (i >= 400) await state.purge(key, { ttl: DELETE_MARKER_TTL });
    }
    const data = await c.request<{ hands: { userId: string }[] }>(
      RequestEvent.InitialData,
      {},
      20_000,
    );
    expect(data.hands.map((h) => h.userId)).toEqual(
      Array.from({ length: 100 }, (_, i) => `u${String(i).padStart(4, '0')}`),
    );
  } finally {
    await c.close();
    await svc.close();
  }
}, 60_000);
