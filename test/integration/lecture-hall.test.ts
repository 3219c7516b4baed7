/**
 * Lecture halls: in a room above the large-room threshold (5 here, 50 by default), joins and
 * departures reach a member as one batch per interval whatever their number, with two worker
 * replicas running; the member's participant view converges to the server's; the initial data
 * stays small and `REQ_PARTICIPANTS` pages the rest, refusing bad input without changing
 * anything. Counted from what the member received and what the server stored.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as nodeConnect, type NatsConnection } from '@nats-io/transport-node';
import { Classroom, RoomRequestError, type RoomClient } from '../../src/client/index.js';
import { openBucket } from '../../src/infra/kv.js';
import { parsePresence, PresenceState } from '../../src/domain/presence.js';
import { Bucket, kvStreamName, presenceBatchSubject } from '../../src/protocol/subjects.js';
import { joinRoom, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const THRESHOLD = 5;
const INTERVAL_MS = 1_000;
const ROOM = 'hall';
let server: TestNats;
let svc: NatsConnection;
let callout: TestCallout;
const workers: TestWorker[] = [];
const clients: RoomClient[] = [];
const classrooms: Classroom[] = [];

/** Members present as the server stores them (the presence bucket). */
async function serverPresent(): Promise<string[]> {
  const kv = await openBucket(svc, Bucket.Presence);
  const out: string[] = [];
  for await (const k of await kv.keys(`${ROOM}.*`)) {
    const e = await kv.get(k);
    const r = e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
    if (r && r.state !== PresenceState.Left) out.push(r.userId);
  }
  return out.sort();
}

async function join(user: string): Promise<RoomClient> {
  const c = await joinRoom(server.url, server.keys, ROOM, user);
  clients.push(c);
  return c;
}

async function classroom(user: string, role = 'student'): Promise<Classroom> {
  const c = await Classroom.join({
    connect: nodeConnect,
    servers: server.url,
    token: await token(server.keys, { room: ROOM, sub: user, role }),
    autoRenew: false,
  });
  classrooms.push(c);
  return c;
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, ROOM, { maxParticipants: 200 });
  callout = await startCallout(server.keys, [server.url]);
  const presence = {
    graceMs: 2_000,
    resyncMs: 2_000,
    consumerRetentionMs: 3_600_000,
    largeRoomThreshold: THRESHOLD,
    batchIntervalMs: INTERVAL_MS,
  };
  // Two replicas: each sees every change; one emits each batch.
  for (let i = 0; i < 2; i++)
    workers.push(await startWorker(server.keys, [server.url], { presence }));
  // The room becomes large: more than THRESHOLD present.
  for (let i = 0; i <= THRESHOLD; i++) await join(`early${i}`);
  await waitFor('room large', async () => (await serverPresent()).length > THRESHOLD, {
    timeoutMs: 10_000,
  });
});
afterAll(async () => {
  await Promise.all(classrooms.map((c) => c.client.close({ leave: false }).catch(() => undefined)));
  await Promise.all(clients.map((c) => c.close({ leave: false }).catch(() => undefined)));
  for (const w of workers) await w.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

test("40 joins and 10 departures reach a member as at most one batch per interval, and its list converges to the server's", async () => {
  const teacher = await classroom('sensei', 'teacher');
  await teacher.loadAllParticipants();
  const received: { event: string; at: number }[] = [];
  teacher.client.on((m) => {
    const event = (m.body as { event?: unknown } | null)?.event;
    if (m.kind === 'event' && typeof event === 'string' && event !== 'EVT_ROOM_UPDATED')
      received.push({ event, at: Date.now() });
  });
  const kv = await jetstreamManager(svc);
  const batchesStored = async (): Promise<number> => {
    const s = presenceBatchSubject(ROOM);
    return (await kv.streams.info(ROOM, { subjects_filter: s })).state.subjects?.[s] ?? 0;
  };
  const storedBefore = await batchesStored();
  const start = Date.now();
  const joined = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i * 50)); // 20 joins per second
      return join(`s${i}`);
    }),
  );
  await Promise.all(joined.slice(0, 10).map((c) => c.close()));
  const converged = async (): Promise<boolean> => {
    const server = await serverPresent();
    const mine = teacher.participants.map((p) => p.userId).sort();
    return (
      JSON.stringify(server) === JSON.stringify(mine) && teacher.participantCount === server.length
    );
  };
  await waitFor('the teacher list is the server list', converged, { timeoutMs: 20_000 });
  const elapsed = Date.now() - start;
  expect(teacher.participantCount).toBe(THRESHOLD + 1 + 1 + 30);
  // Not one message per join: no per-user presence broadcast at all, and batches at most one
  // per interval (plus the one in flight when counting started).
  expect(received.filter((r) => r.event !== 'EVT_PRESENCE_BATCH')).toEqual([]);
  const batches = received.length;
  const bound = Math.ceil(elapsed / INTERVAL_MS) + 1;
  expect(batches).toBeGreaterThan(0);
  expect(batches).toBeLessThanOrEqual(bound);
  // Two replicas stored no more batches than the member received: each batch once.
  expect((await batchesStored()) - storedBefore).toBe(batches);
});

test("a late joiner's initial data carries the count and the relevant participants, not everyone", async () => {
  const present = await serverPresent();
  expect(present.length).toBeGreaterThan(THRESHOLD);
  const late = await classroom('late');
  expect(late.initial.participantsPartial).toBe(true);
  expect(late.initial.participantCount).toBe(present.length + 1);
  // The teacher (a moderator) is listed whoever joined after it.
  expect(late.initial.participants.map((p) => p.userId)).toContain('sensei');
  expect(late.participantsPartial).toBe(true);
  await late.loadAllParticipants();
  expect(late.participantsPartial).toBe(false);
  expect(late.participants.map((p) => p.userId).sort()).toEqual(await serverPresent());
});

test('REQ_PARTICIPANTS refuses a bad cursor or limit with BAD_REQUEST and changes nothing; pages walk the list', async () => {
  const c = await classroom('pager');
  const jsm = await jetstreamManager(svc);
  const lastSeqs = async (): Promise<number[]> =>
    Promise.all(
      [Bucket.Presence, Bucket.RoomState].map(
        async (b) => (await jsm.streams.info(kvStreamName(b))).state.last_seq,
      ),
    );
  const before = await lastSeqs();
  const refusal = async (data: Record<string, unknown>): Promise<RoomRequestError> => {
    try {
      await c.client.request('REQ_PARTICIPANTS', data);
    } catch (e) {
      return e as RoomRequestError;
    }
    throw new Error('accepted');
  };
  for (const [data, field] of [
    [{ limit: 0 }, 'limit'],
    [{ limit: 501 }, 'limit'],
    [{ limit: 'ten' }, 'limit'],
    [{ cursor: 'garbage' }, 'cursor'],
    [{ cursor: '2026-12-07T10:00:00.000Z|a.b' }, 'cursor'],
    [{ cursor: { seq: 1 } }, 'cursor'],
  ] as const) {
    const e = await refusal(data);
    expect(e).toBeInstanceOf(RoomRequestError);
    expect(e.code).toBe('BAD_REQUEST');
    expect(e.message).toMatch(new RegExp(`^${field}: `));
  }
  expect(await lastSeqs()).toEqual(before);
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await c.loadParticipants({ cursor, limit: 7 });
    expect(page.participants.length).toBeLessThanOrEqual(7);
    seen.push(...page.participants.map((p) => p.userId));
    cursor = page.next;
  } while (cursor !== null);
  expect(seen.sort()).toEqual(await serverPresent());
});
