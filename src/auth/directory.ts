/**
 * What the callout knows about rooms, blocks, who is present and who claimed a seat, mirrored
 * from KV into memory so that answering a connection needs no JetStream round trip.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { blockKey, isBlockActive, parseBlock, type BlockRecord } from '../core/blocks.js';
import { KvCache, RoomIndex } from '../core/kv.js';
import type { Logger } from '../core/logger.js';
import { occupiesSeat, parsePresence, presenceKey, type PresenceRecord } from '../core/presence.js';
import { seatsKey } from '../core/room-state.js';
import { parseRoomConfig, type CompiledRoomConfig } from '../core/room.js';
import { Bucket } from '../core/subjects.js';
import { liveClaims, parseSeatLedger, type SeatLedger, type SeatView } from './seats.js';

export class RoomDirectory implements SeatView {
  /** Presence by room: counting a room's seats costs the room's size. */
  private readonly present: RoomIndex<PresenceRecord>;

  private constructor(
    private readonly rooms: KvCache<CompiledRoomConfig>,
    private readonly blocks: KvCache<BlockRecord>,
    private readonly presences: KvCache<PresenceRecord>,
    private readonly ledgers: KvCache<SeatLedger>,
  ) {
    this.present = new RoomIndex(presences, occupiesSeat);
  }

  /** Opens (creating when missing) the buckets and loads them. */
  static async start(nc: NatsConnection, log: Logger, kvReplicas = 1): Promise<RoomDirectory> {
    const dir = new RoomDirectory(
      new KvCache(nc, Bucket.Rooms, parseRoomConfig, log, kvReplicas),
      new KvCache(nc, Bucket.Blocks, parseBlock, log, kvReplicas),
      new KvCache(nc, Bucket.Presence, parsePresence, log, kvReplicas),
      new KvCache(nc, Bucket.RoomState, parseSeatLedger, log, kvReplicas, seatsKey('*')),
    );
    await Promise.all([
      dir.rooms.start(),
      dir.blocks.start(),
      dir.presences.start(),
      dir.ledgers.start(),
    ]);
    return dir;
  }

  get loaded(): boolean {
    return this.rooms.loaded && this.blocks.loaded && this.presences.loaded && this.ledgers.loaded;
  }

  room(roomId: string): CompiledRoomConfig | undefined {
    return this.rooms.get(roomId);
  }

  /** The active block of a user in a room, if any. */
  block(roomId: string, userId: string, now: Date): BlockRecord | undefined {
    const b = this.blocks.get(blockKey(roomId, userId));
    return b && isBlockActive(b, now) ? b : undefined;
  }

  /** Users presence gives a seat in the room. */
  seated(roomId: string): ReadonlyMap<string, PresenceRecord> {
    return this.present.room(roomId);
  }

  /** The user's presence record in the room, if any (also of users who left). */
  presence(roomId: string, userId: string): PresenceRecord | undefined {
    return this.presences.get(presenceKey(roomId, userId));
  }

  /**
   * Seats held in the room (by presence, or by a seat claim presence has not confirmed yet, as
   * far as this replica's copy of the ledger knows), and whether `userId` holds one of them.
   */
  seatsTaken(roomId: string, userId: string, now = Date.now()): { taken: number; mine: boolean } {
    const seats = this.seated(roomId);
    const claims = liveClaims(roomId, this.ledgers.get(seatsKey(roomId))?.claims ?? [], this, now);
    return {
      taken: seats.size + claims.length,
      mine: seats.has(userId) || claims.some((c) => c.user === userId),
    };
  }

  stop(): void {
    this.rooms.stop();
    this.blocks.stop();
    this.presences.stop();
    this.ledgers.stop();
  }
}
