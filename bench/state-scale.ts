/**
 * What users who left cost the users who stay: `REQ_INITIAL_DATA` (every client, at every join
 * and reconnect) and `torii.rooms.list` (the platform's dashboards), first with only the room's
 * present members, then with 10,000 users who left the same room in the presence and room-state
 * buckets (the state within the retention period), in one run. Prints one JSON line.
 *
 *   npx tsx bench/state-scale.ts [--left 10000] [--clients 20] [--requests 400]
 */
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import { RequestEvent } from '../src/protocol/events.js';
import { openBucket } from '../src/infra/kv.js';
import { presenceKey, PresenceState, type PresenceRecord } from '../src/domain/presence.js';
import { memberKey } from '../src/domain/room-state.js';
import { Bucket, ServiceSubject } from '../src/protocol/subjects.js';
import { joinRoom, startCallout } from '../test/helpers/callout.js';
import { startNats } from '../test/helpers/nats.js';
import { waitFor } from '../test/helpers/procs.js';
import { publishRoom } from '../test/helpers/room.js';
import { startWorker } from '../test/helpers/worker.js';
import { nowMs, pool, report, summary } from './lib.js';

const { values } = parseArgs({
  options: {
    left: { type: 'string', default: '10000' },
    clients: { type: 'string', default: '20' },
    requests: { type: 'string', default: '400' },
  },
});
const LEFT = Number(values.left);
const K = Number(values.clients);
const R = Number(values.requests);
const ROOM = 'scale';
/** Requests in flight at once, per measured path. */
const WINDOW = 10;

async function main(): Promise<void> {
  const server = await startNats();
  const svc = await server.connectService();
  await publishRoom(svc, ROOM, { maxParticipants: 1000 });
  const callout = await startCallout(server.keys, [server.url]);
  const worker = await startWorker(server.keys, [server.url]);
  const clients = await Promise.all(
    Array.from({ length: K }, (_, i) => joinRoom(server.url, server.keys, ROOM, `here${i}`)),
  );

  const measure = async () => {
    const initial = await pool(R, WINDOW, (i) =>
      clients[i % K]!.request(RequestEvent.InitialData).then(() => undefined),
    );
    const list = await pool(R, WINDOW, () =>
      svc.request(ServiceSubject.RoomsList, '{}', { timeout: 10_000 }).then(() => undefined),
    );
    return {
      initialDataMs: summary(initial.latencies),
      roomsListMs: summary(list.latencies),
      errors: { initialData: initial.errors, roomsList: list.errors },
    };
  };
  await measure(); // warm up
  const empty = await measure();

  const t0 = nowMs();
  await fill(svc, LEFT);
  const fillMs = nowMs() - t0;
  const withLeft = await measure();

  const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
  report({
    bench: 'state-scale',
    left: LEFT,
    clients: K,
    requests: R,
    fillSeconds: Math.round(fillMs / 100) / 10,
    empty,
    withLeft,
    p99Ratio: {
      initialData: ratio(withLeft.initialDataMs.p99, empty.initialDataMs.p99),
      roomsList: ratio(withLeft.roomsListMs.p99, empty.roomsListMs.p99),
    },
    target: { p99Ratio: 1.1 },
  });
  await Promise.all(clients.map((c) => c.close({ leave: false })));
  await worker.stop();
  await callout.stop();
  await svc.close();
  await server.destroy();
}

/**
 * Writes `n` users who left the room (presence and member records, as the roles write them),
 * then one present user: once the worker lists that one, its caches hold all of them.
 */
async function fill(svc: NatsConnection, n: number): Promise<void> {
  const presence = await openBucket(svc, Bucket.Presence);
  const state = await openBucket(svc, Bucket.RoomState);
  const at = new Date().toISOString();
  const record = (userId: string, state: PresenceRecord['state']): PresenceRecord => ({
    roomId: ROOM,
    userId,
    state,
    connections: [],
    since: at,
    changedAt: at,
    role: 'student',
    name: userId,
  });
  await pool(n, 200, async (i) => {
    const userId = `gone${i}`;
    await presence.put(
      presenceKey(ROOM, userId),
      JSON.stringify(record(userId, PresenceState.Left)),
    );
    await state.put(
      memberKey(ROOM, userId),
      JSON.stringify({ roomId: ROOM, userId, role: 'student' }),
    );
  });
  const sentinel = {
    ...record('sentinel', PresenceState.Online),
    connections: [{ server: 'bench', cid: 1, since: at }],
  };
  await presence.put(presenceKey(ROOM, 'sentinel'), JSON.stringify(sentinel));
  await waitFor(
    'the worker sees every record',
    async () => {
      const m = await svc.request(
        ServiceSubject.RoomsParticipants,
        JSON.stringify({ roomId: ROOM }),
        { timeout: 10_000 },
      );
      const ps = m.json<{ participants?: { userId: string }[] }>().participants ?? [];
      return ps.some((p) => p.userId === 'sentinel');
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
}

await main();
process.exit(0);
