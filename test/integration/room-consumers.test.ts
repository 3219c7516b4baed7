/**
 * A room's consumer limit counts the users who are there, not everyone who came within the
 * retention period: a departed user's consumer is kept for an hour so that a return resumes where
 * it was, but when the room stream reaches its limit, the callout makes room by deleting the
 * consumers of departed users, oldest first, and never those of users present. And a full room
 * whose every user has the most devices fits within the limit.
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { RoomClient, RoomMessage } from '../../src/client/index.js';
import { openBucket } from '../../src/infra/kv.js';
import { MAX_DEVICES_PER_USER, roomMaxConsumers } from '../../src/infra/streams.js';
import { parsePresence, presenceKey, PresenceState } from '../../src/domain/presence.js';
import { Bucket, roomStreamName } from '../../src/protocol/subjects.js';
import { joinRoom, startCallout, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'seats';
/** Two seats: the limit is its floor, 64 consumers. */
const SEATS = 2;

let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  for (const b of Object.values(Bucket)) await openBucket(svc, b);
  await publishRoom(svc, ROOM, { maxParticipants: SEATS });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
}, 60_000);
afterAll(async () => {
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

const consumerNames = async (): Promise<string[]> => {
  const names: string[] = [];
  for await (const c of jsm.consumers.list(roomStreamName(ROOM))) names.push(c.config.name ?? '');
  return names.sort();
};

async function presenceState(userId: string): Promise<string | undefined> {
  const kv = await openBucket(svc, Bucket.Presence);
  const e = await kv.get(presenceKey(ROOM, userId));
  return e?.operation === 'PUT' ? parsePresence(e.json())?.state : undefined;
}

test('a full room of users on every device they may have fits within the consumer limit', async () => {
  const { config } = await jsm.streams.info(roomStreamName(ROOM));
  expect(config.max_consumers).toBeGreaterThanOrEqual(SEATS * (MAX_DEVICES_PER_USER + 1));
  const room = await publishRoom(svc, 'big', { maxParticipants: 500 });
  const big = (await jsm.streams.info(roomStreamName('big'))).config.max_consumers;
  expect(big).toBe(roomMaxConsumers(room));
  expect(big).toBeGreaterThanOrEqual(500 * (MAX_DEVICES_PER_USER + 1));
});

test('the user after the limit is admitted to an empty room; departed users make room, oldest first; the one present keeps its consumer', async () => {
  const { config } = await jsm.streams.info(roomStreamName(ROOM));
  const limit = config.max_consumers;
  // One user stays the whole time; everyone else comes and goes.
  const stay: RoomClient = await joinRoom(server.url, server.keys, ROOM, 'stay');
  const seen: RoomMessage[] = [];
  stay.on((m) => seen.push(m));
  try {
    const departed = Array.from({ length: limit - 1 }, (_, i) => `u${String(i).padStart(3, '0')}`);
    for (const userId of departed) {
      const c = await joinRoom(server.url, server.keys, ROOM, userId);
      await c.close({ leave: true });
      // Two seats: the next user is admitted once this one's seat is free.
      await waitFor(
        `${userId} left`,
        async () => (await presenceState(userId)) === PresenceState.Left,
      );
    }
    expect((await consumerNames()).length).toBe(limit);

    // Before: refused with the room empty but for one ("maximum consumers limit reached").
    const late = await joinRoom(server.url, server.keys, ROOM, 'late');
    try {
      const names = await consumerNames();
      expect(names).toContain('late');
      expect(names).toContain('stay');
      expect(names.length).toBeLessThanOrEqual(limit);
      // The oldest departures went first: the first user's consumer is gone, the last one's kept.
      expect(names).not.toContain(departed[0]);
      expect(names).toContain(departed[departed.length - 1]);
      // The one present still gets the room.
      await late.chat('still here?');
      await waitFor('stay gets the chat', () =>
        seen.some((m) => m.kind === 'chat' && m.from === 'late'),
      );
    } finally {
      await late.close({ leave: true });
    }
  } finally {
    await stay.close({ leave: true });
  }
}, 180_000);
