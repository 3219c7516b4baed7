/**
 * What joining costs the JetStream API (issue 23): first-time SDK joins with device ids, through
 * the callout with a worker, make no JetStream API call that fails, and at most
 * {@link CALLS_PER_JOIN} calls each. Counted by the server itself: `/jsz` for totals, and its audit
 * advisory (`$JS.EVENT.ADVISORY.API`, one per call, with the answer) to name each failing call.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { RoomClient } from '../../src/client/index.js';
import { casUpdate, KvCache, openBucket } from '../../src/infra/kv.js';
import { silentLogger } from '../../src/runtime/logger.js';
import { parsePresence, presenceKey, type PresenceRecord } from '../../src/domain/presence.js';
import { Bucket, JsAdvisory } from '../../src/protocol/subjects.js';
import { joinRoom, startCallout, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'joins';
const USERS = 20;
/**
 * JetStream API calls a first-time join may make: the device's consumer, created by the callout
 * at admission; and a reread of the room's seat ledger when a replica's write raced this one.
 */
const CALLS_PER_JOIN = 1.5;

let server: TestNats;
let svc: NatsConnection;
let callout: TestCallout;
let worker: TestWorker;
let presence: KvCache<PresenceRecord>;
let audit: Subscription;
const failed: string[] = [];
const clients: RoomClient[] = [];

async function jsz(): Promise<{ total: number; errors: number }> {
  const url = server.process.ports.monitoring?.[0] as string;
  return (
    (await (await fetch(new URL('/jsz', url))).json()) as { api: { total: number; errors: number } }
  ).api;
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, ROOM, { maxParticipants: 100 });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
  presence = new KvCache(svc, Bucket.Presence, parsePresence, silentLogger());
  await presence.start();
  audit = svc.subscribe(JsAdvisory.apiAudit(), {
    callback: (err, m) => {
      if (err) return;
      const a = m.json<{ subject?: string; response?: string }>();
      const e = (JSON.parse(a.response ?? '{}') as { error?: { err_code?: number } }).error;
      if (e) failed.push(`${a.subject ?? '?'}: ${e.err_code ?? '?'}`);
    },
  });
  await svc.flush();
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  audit?.unsubscribe();
  presence?.stop();
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

test('first-time joins with device ids make no failing JetStream API call', async () => {
  const before = await jsz();
  for (let batch = 0; batch < USERS; batch += 5) {
    clients.push(
      ...(await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          joinRoom(server.url, server.keys, ROOM, `u${batch + i}`, { deviceId: `d${batch + i}` }),
        ),
      )),
    );
  }
  // Presence has recorded every join (the worker's writes are part of what a join costs).
  await waitFor(
    'presence shows every user',
    () =>
      Array.from({ length: USERS }, (_, i) => presence.get(presenceKey(ROOM, `u${i}`))).every(
        (r) => (r?.connections.length ?? 0) > 0,
      ),
    { timeoutMs: 15_000 },
  );
  const after = await jsz();
  await svc.flush();
  expect({ errors: after.errors - before.errors, failed }).toEqual({ errors: 0, failed: [] });
  expect(after.total - before.total).toBeLessThanOrEqual(USERS * CALLS_PER_JOIN);
}, 60_000);

test('a stale hint costs a conflict and a read, never a wrong write or a skipped one', async () => {
  const kv = await openBucket(svc, Bucket.RoomState);
  const parse = (d: unknown): number | undefined => (typeof d === 'number' ? d : undefined);
  await kv.put('hint-test', '5');
  // Hinted as absent: the write is conditional on revision 0 and must not land blindly.
  const add = await casUpdate(kv, 'hint-test', parse, (n = 0) => ({ put: n + 1 }), {
    hint: { value: undefined, revision: 0, put: false },
  });
  expect(add.previous).toBe(5);
  expect((await kv.get('hint-test'))?.json()).toBe(6);
  // Hinted with the value the decision would skip: the key is read and decided again.
  const stale = (await kv.get('hint-test'))?.revision as number;
  await kv.put('hint-test', '7');
  const skip = await casUpdate(kv, 'hint-test', parse, (n) => (n === 6 ? undefined : { put: 0 }), {
    hint: { value: 6, revision: stale, put: true },
  });
  expect(skip.step).toEqual({ put: 0 });
  expect((await kv.get('hint-test'))?.json()).toBe(0);
});
