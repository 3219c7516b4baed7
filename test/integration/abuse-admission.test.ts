/**
 * Admission under attack, asserted from what the server did (its CONNZ), not from our counters:
 * bursts of distinct users into a small room through two callout replicas get exactly the seats
 * there are, and one token opening connection after connection gets no more than the per-user
 * cap, while its presence record stays small.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Counter } from 'prom-client';
import { openBucket } from '../../src/infra/kv.js';
import { parsePresence, presenceKey, PresenceState } from '../../src/domain/presence.js';
import { seatsKey } from '../../src/domain/room-state.js';
import { DEFAULT_ACCOUNTS } from '../../src/infra/natsconf.js';
import { Bucket, clientUserName, Sys } from '../../src/protocol/subjects.js';
import { DEFAULT_MAX_CONNECTIONS_PER_USER } from '../../src/auth/index.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const PAIR = 'pair';
const SEATS = 2;
const BURST = 8;
const BURSTS = 5;
/** Callout replicas: each bound below is stated for this many. */
const REPLICAS = 2;

let server: TestNats;
let svc: NatsConnection;
let sys: NatsConnection;
let callouts: TestCallout[] = [];
let worker: TestWorker;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  sys = await server.connectSystem();
  for (const b of Object.values(Bucket)) await openBucket(svc, b);
  await publishRoom(svc, PAIR, { maxParticipants: SEATS });
  await publishRoom(svc, 'crowd', { maxParticipants: 100 });
  await publishRoom(svc, 'ghosts', { maxParticipants: SEATS });
  callouts = [];
  for (let i = 0; i < REPLICAS; i++) callouts.push(await startCallout(server.keys, [server.url]));
  worker = await startWorker(server.keys, [server.url]);
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  for (const c of callouts) await c.stop();
  await sys?.close();
  await svc?.close();
  await server?.destroy();
});

/** The server's own count of CLIENTS connections authenticated as `{room}/{user}` (CONNZ). */
async function connected(room: string, users: string[]): Promise<Map<string, number>> {
  const names = new Map(users.map((u) => [clientUserName(room, u), u]));
  const r = await sys.request(
    Sys.serverConnz(sys.info?.server_id ?? ''),
    JSON.stringify({ acc: DEFAULT_ACCOUNTS.clients, auth: true, limit: 10_000 }),
    { timeout: 5_000 },
  );
  const conns =
    r.json<{ data: { connections?: { authorized_user?: string }[] } }>().data.connections ?? [];
  const out = new Map<string, number>();
  for (const c of conns) {
    const u = names.get(c.authorized_user ?? '');
    if (u !== undefined) out.set(u, (out.get(u) ?? 0) + 1);
  }
  return out;
}

async function presenceOf(room: string, user: string) {
  const kv = await openBucket(svc, Bucket.Presence);
  const e = await kv.get(presenceKey(room, user));
  return e?.operation === 'PUT' ? { record: parsePresence(e.json()), bytes: e.length } : undefined;
}

const rejections = async (reason: string): Promise<number> => {
  let n = 0;
  for (const c of callouts) n += await c.rejections(reason);
  return n;
};

/** Sum over the callouts of a counter (with these labels). */
async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  let n = 0;
  for (const c of callouts) {
    const m = c.ops.registry.getSingleMetric(name) as Counter<string> | undefined;
    for (const v of (await m?.get())?.values ?? [])
      if (Object.entries(labels).every(([k, x]) => v.labels[k] === x)) n += v.value;
  }
  return n;
}

const connectAs = async (room: string, user: string): Promise<NatsConnection> =>
  connectClient(
    server.url,
    room,
    user,
    await token(server.keys, { room, sub: user, role: 'student' }),
  );

describe('seats', () => {
  test(`bursts of ${BURST} distinct users into a ${SEATS}-seat room through ${REPLICAS} callouts admit exactly ${SEATS} each time; after they leave, others get in`, async () => {
    const admittedPerBurst: number[] = [];
    for (let b = 0; b < BURSTS; b++) {
      const users = Array.from({ length: BURST }, (_, i) => `b${b}u${i}`);
      const tokens = await Promise.all(
        users.map((u) => token(server.keys, { room: PAIR, sub: u, role: 'student' })),
      );
      const results = await Promise.allSettled(
        users.map((u, i) => connectClient(server.url, PAIR, u, tokens[i] ?? '')),
      );
      const conns = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const onServer = await connected(PAIR, users);
      admittedPerBurst.push(onServer.size);
      // Leave, and wait until presence has freed the seats, before the next burst.
      await Promise.all(conns.map((c) => c.close()));
      const seated = [...onServer.keys()];
      await waitFor(
        `burst ${b}: the seated users left`,
        async () => {
          for (const u of seated)
            if ((await presenceOf(PAIR, u))?.record?.state !== PresenceState.Left) return false;
          return true;
        },
        { timeoutMs: 20_000 },
      );
    }
    const claims = await counter('torii_auth_seat_claims_total');
    const writes = await counter('torii_auth_seat_ledger_writes_total');
    console.log(
      `seats: admitted per burst ${admittedPerBurst.join(', ')}; ${claims} seat claims in ${writes} ledger writes`,
    );
    expect(admittedPerBurst).toEqual(Array.from({ length: BURSTS }, () => SEATS));
    expect(writes).toBeLessThanOrEqual(BURSTS * SEATS);
    expect(await rejections('room_full')).toBeGreaterThanOrEqual(BURSTS * (BURST - SEATS));
  }, 120_000);

  test('a seat claimed by an admission whose connection never showed up is free again once the claim expires', async () => {
    // What a callout leaves behind when the two connections it admitted failed right after.
    const kv = await openBucket(svc, Bucket.RoomState);
    const until = Date.now() + 8_000;
    await kv.put(
      seatsKey('ghosts'),
      JSON.stringify({
        claims: [
          { user: 'ghost1', until },
          { user: 'ghost2', until },
        ],
      }),
    );
    const before = await rejections('room_full');
    await waitFor('the claims are seen', async () => {
      const admitted = await connectAs('ghosts', 'late').catch(() => undefined);
      await admitted?.close();
      return !admitted && (await rejections('room_full')) > before;
    });
    expect(Date.now()).toBeLessThan(until);
    const nc = await waitFor(
      'admitted after the claims expired',
      () => connectAs('ghosts', 'late').catch(() => undefined),
      { timeoutMs: 20_000 },
    );
    try {
      expect(Date.now()).toBeGreaterThanOrEqual(until);
      expect((await connected('ghosts', ['late'])).get('late')).toBe(1);
    } finally {
      await nc.close();
    }
  }, 30_000);
});

describe('connections per user', () => {
  test(`one token opening 50 connections at once gets at most ${REPLICAS} callouts × the cap, the rest refused as too_many_connections; its presence record stays small`, async () => {
    const attempts = 50;
    const t = await token(server.keys, { room: 'crowd', sub: 'hog', role: 'student' });
    const before = await rejections('too_many_connections');
    const results = await Promise.allSettled(
      Array.from({ length: attempts }, () => connectClient(server.url, 'crowd', 'hog', t)),
    );
    const conns = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    try {
      const onServer = (await connected('crowd', ['hog'])).get('hog') ?? 0;

      expect(onServer).toBeGreaterThanOrEqual(DEFAULT_MAX_CONNECTIONS_PER_USER);
      expect(onServer).toBeLessThanOrEqual(REPLICAS * DEFAULT_MAX_CONNECTIONS_PER_USER);
      expect(await rejections('too_many_connections')).toBeGreaterThanOrEqual(
        before + attempts - onServer,
      );
      // Presence catches up and lists only what is connected: a small record.
      const p = await waitFor('presence lists every connection', async () => {
        const r = await presenceOf('crowd', 'hog');
        return r?.record?.connections.length === onServer ? r : undefined;
      });
      console.log(
        `connections per user: ${onServer} of ${attempts} connected; presence record ${p.bytes} bytes`,
      );
      expect(p.bytes).toBeLessThan(4 * 1024);
      // Once presence shows them, no callout admits one more.
      await expect(connectClient(server.url, 'crowd', 'hog', t)).rejects.toThrow();
      const after = (await connected('crowd', ['hog'])).get('hog') ?? 0;
      expect(after).toBe(onServer);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  }, 60_000);
});
