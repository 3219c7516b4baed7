/**
 * What the callout knows about rooms, blocks, who is present and who claimed a seat, mirrored
 * from KV into memory so that answering a connection needs no JetStream round trip.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { blockKey, isBlockActive, parseBlock, type BlockRecord } from '../domain/blocks.js';
import { KvCache, RoomIndex, type CasHints } from '../infra/kv.js';
import type { Logger } from '../runtime/logger.js';
import {
  occupiesSeat,
  parsePresence,
  presenceKey,
  type PresenceRecord,
} from '../domain/presence.js';
import { seatsKey } from '../domain/room-state.js';
import { parseRoomConfig, type CompiledRoomConfig } from '../domain/room-compile.js';
import { Bucket } from '../protocol/subjects.js';
import {
  claimHolds,
  liveClaims,
  parseSeatLedger,
  type SeatClaim,
  type SeatLedger,
  type SeatView,
} from './seats.js';

/** A seat ledger with its claims by user, so that finding one user's claim costs no scan. */
interface IndexedLedger extends SeatLedger {
  byUser: ReadonlyMap<string, SeatClaim>;
}

function parseIndexedLedger(data: unknown): IndexedLedger | undefined {
  const l = parseSeatLedger(data);
  return l && { ...l, byUser: new Map(l.claims.map((c) => [c.user, c])) };
}

export class RoomDirectory implements SeatView {
  /** Presence by room: counting a room's seats costs the room's size. */
  private readonly present: RoomIndex<PresenceRecord>;

  private constructor(
    private readonly rooms: KvCache<CompiledRoomConfig>,
    private readonly blocks: KvCache<BlockRecord>,
    private readonly presences: KvCache<PresenceRecord>,
    private readonly ledgers: KvCache<IndexedLedger>,
  ) {
    this.present = new RoomIndex(presences, occupiesSeat);
  }

  /** Opens (creating when missing) the buckets and loads them. */
  static async start(nc: NatsConnection, log: Logger, kvReplicas = 1): Promise<RoomDirectory> {
    const dir = new RoomDirectory(
      new KvCache(nc, Bucket.Rooms, parseRoomConfig, log, kvReplicas),
      new KvCache(nc, Bucket.Blocks, parseBlock, log, kvReplicas),
      new KvCache(nc, Bucket.Presence, parsePresence, log, kvReplicas),
      new KvCache(nc, Bucket.RoomState, parseIndexedLedger, log, kvReplicas, seatsKey('*')),
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
   * Whether the user holds a seat: presence gives it one, or a claim presence has not confirmed
   * yet, as far as this replica's copy of the ledger knows. The hot path of every admission:
   * two map lookups.
   */
  holdsSeat(roomId: string, userId: string, now = Date.now()): boolean {
    if (this.seated(roomId).has(userId)) return true;
    const claim = this.ledgers.get(seatsKey(roomId))?.byUser.get(userId);
    return claim !== undefined && claimHolds(claim, this.presence(roomId, userId), now);
  }

  /** The seat ledgers' revisions, for the compare-and-set of seat claims. */
  get ledgerHints(): CasHints<SeatLedger> {
    return this.ledgers;
  }

  /** Seats held in the room, by presence or by a live claim (see {@link holdsSeat}). */
  seatsTaken(roomId: string, now = Date.now()): number {
    const claims = this.ledgers.get(seatsKey(roomId))?.claims ?? [];
    return this.seated(roomId).size + liveClaims(roomId, claims, this, now).length;
  }

  stop(): void {
    this.rooms.stop();
    this.blocks.stop();
    this.presences.stop();
    this.ledgers.stop();
  }
}
