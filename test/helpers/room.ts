/**
 * Publishes rooms the way the controller does (compiled config in KV `torii_rooms`, room stream),
 * and writes presence and block records in the tracker's format, for tests of the data plane.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { blockKey, type BlockRecord } from '../../src/domain/blocks.js';
import { openBucket } from '../../src/infra/kv.js';
import { presenceKey, type PresenceRecord } from '../../src/domain/presence.js';
import { compileRoom, type CompiledRoomConfig, type RoomSpec } from '../../src/domain/room.js';
import { ensureRoomStream, ensureWorkerStream } from '../../src/infra/streams.js';
import { Bucket } from '../../src/protocol/subjects.js';

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
  await kv.put(room.roomId, JSON.stringify(room));
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
