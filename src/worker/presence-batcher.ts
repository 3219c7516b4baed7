/**
 * Presence batches of large rooms (docs/protocol.md, "Large rooms"): joins and departures of a
 * room above the threshold are stored with `batched: true` and broadcast together, at most once
 * per interval, on the room's batch subject. The pure rules are in `domain/presence-batch.ts`;
 * this keeps the changes no batch has covered yet and moves the room's mark.
 */
import type { KV } from '@nats-io/kv';
import { describeError } from '../protocol/errors.js';
import { Broadcast } from '../protocol/events.js';
import { presenceBatchSubject } from '../protocol/subjects.js';
import {
  buildBatch,
  DEFAULT_LARGE_ROOM_THRESHOLD,
  DEFAULT_PRESENCE_BATCH_INTERVAL_MS,
  isLargeRoom,
  nextBatchMark,
  parseBatchMark,
  participantOf,
  prunePending,
  seatChange,
  type BatchMark,
  type PendingChange,
} from '../domain/presence-batch.js';
import { occupiesSeat, type PresenceRecord } from '../domain/presence.js';
import { presenceBatchKey } from '../domain/room-state.js';
import { casUpdate, RoomIndex, type KvCache } from '../infra/kv.js';
import { MsgId } from '../infra/msg-ids.js';
import type { SystemPublisher } from '../infra/system-publisher.js';
import type { Logger } from '../runtime/logger.js';

/** The batching settings of `torii worker`; defaults from `domain/presence-batch.ts`. */
export interface BatchSettings {
  /** Members present above which a room is batched (`--large-room-threshold`). */
  largeRoomThreshold?: number;
  /** Least time between two batches of a room, in milliseconds (`--presence-batch-interval`). */
  batchIntervalMs?: number;
}

/** The seat changes of large rooms, by room, and the batches that announce them. */
export class PresenceBatcher {
  /** Members present, by room: whether a room is large. */
  private readonly present: RoomIndex<PresenceRecord>;
  /**
   * Batched seat changes this replica saw in the bucket and no batch has covered yet, by room
   * and user (the latest per user). Every replica keeps them; the one that moves the room's
   * batch mark emits them, the others drop what the mark covers.
   */
  private readonly pending = new Map<string, Map<string, PendingChange>>();
  private batching = false;
  /**
   * When each room last had a batch, as this replica read its mark, for rooms batched within the
   * interval: their mark is not read again before it is due.
   */
  private readonly lastBatchAt = new Map<string, number>();
  private readonly threshold: number;
  /** Least time between two batches of a room, in milliseconds. */
  readonly intervalMs: number;

  /**
   * Indexes the seats of `cache` from now on: build it before anything else follows `cache`,
   * so that a room's size is up to date when a change is noted.
   */
  constructor(
    cache: KvCache<PresenceRecord>,
    private readonly roomState: KV,
    private readonly out: SystemPublisher,
    private readonly log: Logger,
    s: BatchSettings,
  ) {
    this.threshold = s.largeRoomThreshold ?? DEFAULT_LARGE_ROOM_THRESHOLD;
    this.intervalMs = s.batchIntervalMs ?? DEFAULT_PRESENCE_BATCH_INTERVAL_MS;
    this.present = new RoomIndex(cache, occupiesSeat);
  }

  /** Whether the room has more members present than the threshold. */
  isLarge(roomId: string): boolean {
    return isLargeRoom(this.present.room(roomId).size, this.threshold);
  }

  /** Keeps a batched join or departure until a batch covers it. */
  noteSeatChange(
    prev: PresenceRecord | undefined,
    next: PresenceRecord | undefined,
    revision: number | undefined,
  ): void {
    const change = seatChange(prev, next);
    const r = next ?? prev;
    if (!change || !r || revision === undefined) return;
    // A record deleted while holding a seat says nothing: the room's size decides.
    const batched = next ? next.batched === true : this.isLarge(r.roomId);
    if (!batched) return;
    let room = this.pending.get(r.roomId);
    if (!room) this.pending.set(r.roomId, (room = new Map<string, PendingChange>()));
    room.set(r.userId, { rev: revision, present: change === 'joined', entry: participantOf(r) });
  }

  /**
   * Emits the presence batch of each room with pending changes whose interval is over. The
   * room's mark in `torii_room_state` moves by compare-and-set: of the replicas that try, one
   * writes it and publishes the batch of the changes between the old mark and the new; the
   * others drop what it covered. A room thus gets at most one batch per interval.
   */
  async emit(): Promise<void> {
    if (this.batching) return;
    this.batching = true;
    const now = Date.now();
    for (const [roomId, at] of this.lastBatchAt)
      if (now - at >= this.intervalMs) this.lastBatchAt.delete(roomId);
    try {
      await Promise.all(
        [...this.pending].map(async ([roomId, changes]) => {
          if (this.lastBatchAt.has(roomId)) return;
          let high = 0;
          for (const c of changes.values()) high = Math.max(high, c.rev);
          let mark: BatchMark | undefined;
          const { previous, step } = await casUpdate(
            this.roomState,
            presenceBatchKey(roomId),
            parseBatchMark,
            (cur) => {
              mark = nextBatchMark(cur, high, Date.now(), this.intervalMs);
              return mark ? { put: mark } : undefined;
            },
          );
          if (!step || !mark) {
            if (previous) this.lastBatchAt.set(roomId, previous.at);
            if (previous && !prunePending(changes, previous.throughRev))
              this.pending.delete(roomId);
            return;
          }
          this.lastBatchAt.set(roomId, mark.at);
          const data = buildBatch(changes.values(), previous?.throughRev ?? 0, mark.throughRev, {
            n: mark.n,
            present: this.present.room(roomId).size,
          });
          if (!prunePending(changes, mark.throughRev)) this.pending.delete(roomId);
          // The number is in the batch: a member that sees a gap asks for the list again.
          await this.out.tryBroadcast(
            presenceBatchSubject(roomId),
            Broadcast.PresenceBatch,
            data,
            MsgId.presenceBatch(roomId, mark.n, mark.throughRev),
          );
        }),
      );
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'presence batches failed; tried again');
    } finally {
      this.batching = false;
    }
  }
}
