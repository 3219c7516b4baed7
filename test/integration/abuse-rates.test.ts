/**
 * Rate abuse by a room member, against a real server, callout and two worker replicas (issue 22):
 * a raise/lower loop, a connect-and-leave loop and a flood of live updates. Every figure is read
 * back from what the servers did: broadcasts stored in the room stream, platform events received,
 * bytes another member received, connections the servers still hold.
 */
import { jetstream } from '@nats-io/jetstream';
import { type NatsConnection } from '@nats-io/transport-node';
import { RoomRequestError, type RoomClient } from '../../src/client/index.js';
import { openBucket } from '../../src/core/kv.js';
import { parsePresence } from '../../src/core/presence.js';
import {
  Bucket,
  PlatformEvent,
  roomEventsSubject,
  roomStreamName,
} from '../../src/core/subjects.js';
import { DEFAULT_HAND_CHANGES, DEFAULT_HAND_WINDOW_MS } from '../../src/worker/handlers.js';
import { DEFAULT_LEAVE_WINDOW_MS } from '../../src/worker/index.js';
import { joinRoom, startCallout, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

/** The test workers' grace period (test/helpers/worker.ts). */
const GRACE_MS = 2_000;
const ROOM = 'rates';
let server: TestNats;
let svc: NatsConnection;
let callout: TestCallout;
const workers: TestWorker[] = [];
const clients: RoomClient[] = [];

async function join(user: string, role = 'student'): Promise<RoomClient> {
  const c = await joinRoom(server.url, server.keys, ROOM, user, { role });
  clients.push(c);
  return c;
}

interface Stored {
  event: string;
  data: { userId?: string; by?: string };
}

/** Every broadcast stored in the room stream (read back with an ordered consumer). */
async function storedBroadcasts(): Promise<Stored[]> {
  const js = jetstream(svc, { timeout: 3_000 });
  const consumer = await js.consumers.get(roomStreamName(ROOM), {
    filter_subjects: [roomEventsSubject(ROOM)],
  });
  const out: Stored[] = [];
  let pending = (await consumer.info()).num_pending;
  while (pending > 0) {
    const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      out.push(m.json<Stored>());
    }
    if (got === 0) break;
  }
  await consumer.delete().catch(() => undefined);
  return out;
}

const about = (all: Stored[], userId: string, ...events: string[]): Stored[] =>
  all.filter((b) => b.data.userId === userId && events.includes(b.event));

async function presenceOf(user: string) {
  const e = await (await openBucket(svc, Bucket.Presence)).get(`${ROOM}.${user}`);
  return e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, ROOM);
  callout = await startCallout(server.keys, [server.url]);
  // Two replicas share the work queue: a bound kept in one process's memory would let a user
  // through twice as often.
  workers.push(await startWorker(server.keys, [server.url]));
  workers.push(await startWorker(server.keys, [server.url]));
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close({ leave: false }).catch(() => undefined)));
  for (const w of workers) await w.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

describe('hands', () => {
  const HAND_EVENTS = ['EVT_HAND_RAISED', 'EVT_HAND_LOWERED'];
  const LOOP_MS = 3_000;

  test('a raise/lower loop stores at most the bound of broadcasts and is answered RATE_LIMITED', async () => {
    const s = await join('looper');
    const codes = new Map<string, number>();
    const startedAt = Date.now();
    // Twenty requests in flight at a time, alternating: what a script would send.
    for (let i = 0; Date.now() - startedAt < LOOP_MS; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, (_, j) =>
          s.request((i + j) % 2 === 0 ? 'REQ_RAISE_HAND' : 'REQ_LOWER_HAND').then(
            () => codes.set('ok', (codes.get('ok') ?? 0) + 1),
            (e: unknown) => {
              const code = e instanceof RoomRequestError ? e.code : String(e);
              codes.set(code, (codes.get(code) ?? 0) + 1);
            },
          ),
        ),
      );
    }
    const elapsed = Date.now() - startedAt;
    const stored = about(await storedBroadcasts(), 'looper', ...HAND_EVENTS);
    // A full bucket, then one change per refill interval.
    const bound =
      DEFAULT_HAND_CHANGES + Math.ceil(elapsed / (DEFAULT_HAND_WINDOW_MS / DEFAULT_HAND_CHANGES));
    expect(stored.length).toBeLessThanOrEqual(bound);
    expect(codes.get('RATE_LIMITED') ?? 0).toBeGreaterThan(0);
    expect([...codes.keys()].filter((c) => c !== 'ok' && c !== 'RATE_LIMITED')).toEqual([]);
  });

  test("a moderator lowering a student's hand is not held back by the student's bucket", async () => {
    const s = await join('raiser');
    const teacher = await join('sensei-h', 'teacher');
    // The whole bucket, alternating from lowered: an odd bucket (the default, 5) ends raised.
    expect(DEFAULT_HAND_CHANGES % 2).toBe(1);
    for (let i = 0; i < DEFAULT_HAND_CHANGES; i++)
      await s.request(i % 2 === 0 ? 'REQ_RAISE_HAND' : 'REQ_LOWER_HAND');
    const refused = await s.request('REQ_LOWER_HAND').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(RoomRequestError);
    expect((refused as RoomRequestError).code).toBe('RATE_LIMITED');
    expect((refused as RoomRequestError).message).toMatch(
      /hand changed too often.*try again in \d+ s/,
    );
    const before = about(await storedBroadcasts(), 'raiser', ...HAND_EVENTS).length;
    expect(before).toBe(DEFAULT_HAND_CHANGES);
    await teacher.request('REQ_LOWER_HAND', { userId: 'raiser' });
    const after = about(await storedBroadcasts(), 'raiser', ...HAND_EVENTS);
    expect(after).toHaveLength(before + 1);
    expect(after.at(-1)).toMatchObject({
      event: 'EVT_HAND_LOWERED',
      data: { userId: 'raiser', by: 'sensei-h' },
    });
  });
});

describe('join/leave churn', () => {
  const CHURN_MS = 4_000;

  test('a connect-and-leave loop: joined/left broadcasts and platform events within the bound', async () => {
    const platform: { subject: string; userId: string }[] = [];
    const sub = svc.subscribe('torii.events.participant.>', {
      callback: (_e, m) => {
        platform.push({ subject: m.subject, userId: m.json<{ userId: string }>().userId });
      },
    });
    await svc.flush();
    const startedAt = Date.now();
    let cycles = 0;
    let firstClosedAt = 0;
    while (Date.now() - startedAt < CHURN_MS) {
      const c = await join('churner');
      await c.close(); // REQ_LEAVE, then the socket closes
      if (cycles === 0) firstClosedAt = Date.now();
      cycles++;
    }
    // The last departure finishes (at most a grace period later).
    await waitFor('churner gone', async () => (await presenceOf('churner'))?.state === 'left', {
      timeoutMs: GRACE_MS + 5_000,
    });
    const span = Date.now() - startedAt;
    const all = await storedBroadcasts();
    const left = about(all, 'churner', 'EVT_PARTICIPANT_LEFT');
    const joined = about(all, 'churner', 'EVT_PARTICIPANT_JOINED');
    // A departure is immediate at most once per leave window; any other takes a grace period
    // away, and each left follows a joined.
    const leftBound = Math.ceil(span / DEFAULT_LEAVE_WINDOW_MS) + Math.ceil(span / GRACE_MS);
    expect(cycles).toBeGreaterThan(5);
    expect(left.length).toBeLessThanOrEqual(leftBound);
    expect(joined.length).toBeLessThanOrEqual(leftBound + 1);
    const mine = (s: string) => platform.filter((p) => p.userId === 'churner' && p.subject === s);
    expect(mine(PlatformEvent.ParticipantLeft).length).toBeLessThanOrEqual(leftBound);
    expect(mine(PlatformEvent.ParticipantJoined).length).toBeLessThanOrEqual(leftBound + 1);
    sub.unsubscribe();
    // The first leave was a normal one: announced at once, not after the grace period.
    const firstLeft = all.find(
      (b) => b.event === 'EVT_PARTICIPANT_LEFT' && b.data.userId === 'churner',
    ) as unknown as { at: string } | undefined;
    expect(Date.parse(firstLeft?.at ?? '') - firstClosedAt).toBeLessThan(1_000);
    // Within the window, REQ_LEAVE says its departure is not immediate.
    const again = await join('churner');
    expect(await again.request('REQ_LEAVE')).toEqual({ immediate: false });
  });
});
