/**
 * What the callout knows about rooms, blocks and who is present, mirrored from KV into memory so
 * that answering a connection needs no JetStream round trip.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { blockKey, isBlockActive, parseBlock, type BlockRecord } from '../core/blocks.js';
import { KvCache, RoomIndex } from '../core/kv.js';
import type { Logger } from '../core/logger.js';
import { occupiesSeat, parsePresence, type PresenceRecord } from '../core/presence.js';
import { parseRoomConfig, type CompiledRoomConfig } from '../core/room.js';
import { Bucket } from '../core/subjects.js';

export class RoomDirectory {
  /** Presence by room: counting a room's seats costs the room's size. */
  private readonly present: RoomIndex<PresenceRecord>;

  private constructor(
    private readonly rooms: KvCache<CompiledRoomConfig>,
    private readonly blocks: KvCache<BlockRecord>,
    private readonly presence: KvCache<PresenceRecord>,
  ) {
    this.present = new RoomIndex(presence, occupiesSeat);
  }

  /** Opens (creating when missing) the three buckets and loads them. */
  static async start(nc: NatsConnection, log: Logger, kvReplicas = 1): Promise<RoomDirectory> {
    const dir = new RoomDirectory(
      new KvCache(nc, Bucket.Rooms, parseRoomConfig, log, kvReplicas),
      new KvCache(nc, Bucket.Blocks, parseBlock, log, kvReplicas),
      new KvCache(nc, Bucket.Presence, parsePresence, log, kvReplicas),
    );
    await Promise.all([dir.rooms.start(), dir.blocks.start(), dir.presence.start()]);
    return dir;
  }

  get loaded(): boolean {
    return this.rooms.loaded && this.blocks.loaded && this.presence.loaded;
  }

  room(roomId: string): CompiledRoomConfig | undefined {
    return this.rooms.get(roomId);
  }

  /** The active block of a user in a room, if any. */
  block(roomId: string, userId: string, now: Date): BlockRecord | undefined {
    const b = this.blocks.get(blockKey(roomId, userId));
    return b && isBlockActive(b, now) ? b : undefined;
  }

  /** Users holding a seat in the room, and whether `userId` is one of them. */
  seatsTaken(roomId: string, userId: string): { taken: number; mine: boolean } {
    const seats = this.present.room(roomId);
    return { taken: seats.size, mine: seats.has(userId) };
  }

  stop(): void {
    this.rooms.stop();
    this.blocks.stop();
    this.presence.stop();
  }
}
