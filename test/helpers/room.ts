/**
 * Publishes rooms the way the controller does (compiled config in KV `torii_rooms`, room stream),
 * and writes presence and block records in the tracker's format, for tests of the data plane.
 */
import { jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { blockKey, type BlockRecord } from '../../src/domain/blocks.js';
import { openBucket } from '../../src/infra/kv.js';
import { presenceKey, type PresenceRecord } from '../../src/domain/presence.js';
import { compileRoom, type CompiledRoomConfig } from '../../src/domain/room-compile.js';
import { type RoomSpec } from '../../src/domain/room-spec.js';
import { ensureRoomStream, ensureWorkerStream } from '../../src/infra/streams.js';
import { Bucket, roomStreamName } from '../../src/protocol/subjects.js';
import { waitFor } from './procs.js';

/** Compiles `spec`, ensures the room stream and the worker stream, and publishes the config. */
export async function publishRoom(
  nc: NatsConnection,
  name: string,
  spec: RoomSpec = {},
): Promise<CompiledRoomConfig> {
  const room = compileRoom(name, spec, `test/${name}`);
  const jsm = await jetstreamManager(nc);
  await ensureWorkerStream(jsm);
  await ensureRoomStream(jsm, room);
  const kv = await openBucket(nc, Bucket.Rooms);
  // In a cluster, a bucket just created may have no leader yet: its first put finds no
  // responders (`JetStreamNotEnabled`). Tried again until one takes it (the last error is told).
  await waitFor(
    'room config stored',
    async () => {
      await kv.put(room.roomId, JSON.stringify(room));
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
  return room;
}

export async function putPresence(
  nc: NatsConnection,
  r: Omit<PresenceRecord, 'since' | 'changedAt' | 'connections'> & Partial<PresenceRecord>,
): Promise<void> {
  const now = new Date().toISOString();
  const kv = await openBucket(nc, Bucket.Presence);
  await kv.put(
    presenceKey(r.roomId, r.userId),
    JSON.stringify({ connections: [], since: now, changedAt: now, ...r }),
  );
}

export async function putBlock(
  nc: NatsConnection,
  b: Omit<BlockRecord, 'createdAt' | 'by' | 'reason'> & Partial<BlockRecord>,
): Promise<void> {
  const kv = await openBucket(nc, Bucket.Blocks);
  await kv.put(
    blockKey(b.roomId, b.userId),
    JSON.stringify({ by: 'test', reason: 'test', createdAt: new Date().toISOString(), ...b }),
  );
}

/**
 * Every message a room stream holds on `filterSubjects`, in stream order, read back with one
 * ordered consumer (what the server stored, not what was sent).
 */
export async function readRoomStream(
  nc: NatsConnection,
  room: string,
  filterSubjects: string[],
): Promise<JsMsg[]> {
  const consumer = await jetstream(nc, { timeout: 5_000 }).consumers.get(roomStreamName(room), {
    filter_subjects: filterSubjects,
  });
  const out: JsMsg[] = [];
  let pending = (await consumer.info()).num_pending;
  while (pending > 0) {
    const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      out.push(m);
    }
    if (got === 0) break;
  }
  await consumer.delete().catch(() => undefined);
  return out;
}
