/**
 * Seat claims: the atomic half of `maxParticipants`. Presence (KV `torii_presence`) says who holds
 * a seat, but it learns of a connection from the server's CONNECT event, which comes after the
 * callout has answered: a burst of users checked against presence alone all saw the same free
 * seats. So a user who holds no seat claims one at admission in the room's seat ledger
 * (`seats.{roomId}` in KV `torii_room_state`), written with compare-and-set, which every callout
 * replica goes through. A claim counts until presence has moved on from what the claimer saw (the
 * user came online: presence holds the seat now; or left: the seat is free) or until it expires
 * (the connection failed after admission, and presence will never see it).
 *
 * Claims of one room that arrive while a write for that room is in flight go into the next write
 * together: a burst into one room costs one KV read and one KV update per batch, not per user,
 * and replicas contend only with each other.
 */
import type { KV } from '@nats-io/kv';
import { casUpdate, type CasHints } from '../infra/kv.js';
import { isValidId } from '../protocol/ids.js';
import type { PresenceRecord } from '../domain/presence.js';
import { seatsKey } from '../domain/room-state.js';

/**
 * Default time a seat claim (and an admission counted against the per-user connection cap) waits
 * for presence to show the connection, in milliseconds: 30 seconds, well past the seconds a CONNECT
 * event takes to reach presence under load.
 */
export const DEFAULT_ADMISSION_TTL_MS = 30_000;
/**
 * Claims one room's ledger holds at most. A claim is about 120 bytes at most (a 64-character user
 * id), so the ledger stays under KV's 256 KiB value limit; past this many unconfirmed admissions,
 * first-time users wait (are refused) until presence catches up.
 */
export const MAX_SEAT_CLAIMS = 2_000;

/** One admission's claim on a seat. */
export interface SeatClaim {
  user: string;
  /** When the claim expires unless presence confirmed it before (epoch milliseconds). */
  until: number;
  /**
   * `changedAt` of the user's presence record when the claim was made (epoch milliseconds),
   * absent when it had none: presence changing after that ends the claim.
   */
  seen?: number;
}

/** The value of `seats.{roomId}`. */
export interface SeatLedger {
  claims: SeatClaim[];
}

/** Parses a seat ledger; claims that are not well-formed are left out. */
export function parseSeatLedger(data: unknown): SeatLedger | undefined {
  const claims = (data as { claims?: unknown } | null)?.claims;
  if (!Array.isArray(claims)) return undefined;
  return {
    claims: claims.filter(
      (c): c is SeatClaim =>
        typeof c === 'object' &&
        c !== null &&
        isValidId((c as SeatClaim).user) &&
        typeof (c as SeatClaim).until === 'number' &&
        ((c as SeatClaim).seen === undefined || typeof (c as SeatClaim).seen === 'number'),
    ),
  };
}

/**
 * Whether a claim still holds its seat at `now`: not expired, and the user's presence record
 * (as this replica sees it) not changed since the claimer looked. A replica whose presence lags
 * behind the claimer's sees an older record and keeps counting the claim: the error is on the
 * safe side.
 */
export function claimHolds(
  c: SeatClaim,
  presence: PresenceRecord | undefined,
  now: number,
): boolean {
  if (c.until <= now) return false;
  if (!presence) return true;
  return c.seen !== undefined && Date.parse(presence.changedAt) <= c.seen;
}

/** What the callout knows of a room's seats, from memory. */
export interface SeatView {
  /** Users presence gives a seat, by user id. */
  seated(roomId: string): ReadonlyMap<string, unknown>;
  /** The user's presence record, if any. */
  presence(roomId: string, userId: string): PresenceRecord | undefined;
}

/**
 * The claims among `claims` that still hold a seat the presence view does not already count.
 */
export function liveClaims(
  roomId: string,
  claims: readonly SeatClaim[],
  view: SeatView,
  now: number,
): SeatClaim[] {
  const seated = view.seated(roomId);
  return claims.filter(
    (c) => !seated.has(c.user) && claimHolds(c, view.presence(roomId, c.user), now),
  );
}

/** Outcome of a claim: the user holds a seat (claimed now or before), or there is none. */
export const ClaimResult = {
  Seated: 'seated',
  Full: 'full',
  TooManyClaims: 'too_many_claims',
} as const;
export type ClaimResult = (typeof ClaimResult)[keyof typeof ClaimResult];

interface Waiter {
  userId: string;
  maxParticipants: number;
  resolve: (r: ClaimResult) => void;
  reject: (e: unknown) => void;
}

/** Writes seat claims to the rooms' ledgers, batching the claims of one room. */
export class SeatClaims {
  private readonly queues = new Map<string, Waiter[]>();

  constructor(
    private readonly kv: KV,
    private readonly view: SeatView,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
    /** Called after each ledger write that stored new claims. */
    private readonly onWrite: () => void = () => undefined,
    /** A follower of the ledgers: a write tries its revision before reading the ledger. */
    private readonly hints?: CasHints<SeatLedger>,
  ) {}

  /** Claims a seat for `userId` unless the room's seats are all held. */
  claim(roomId: string, userId: string, maxParticipants: number): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      const waiting = this.queues.get(roomId);
      const w = { userId, maxParticipants, resolve, reject };
      if (waiting) {
        waiting.push(w);
        return;
      }
      this.queues.set(roomId, [w]);
      void this.flush(roomId);
    });
  }

  /** Writes the room's waiting claims, batch after batch, until none are left. */
  private async flush(roomId: string): Promise<void> {
    for (;;) {
      const waiting = this.queues.get(roomId) ?? [];
      const batch = waiting.splice(0);
      if (batch.length === 0) {
        this.queues.delete(roomId);
        return;
      }
      try {
        const results = await this.write(roomId, batch);
        batch.forEach((w, i) => w.resolve(results[i] ?? ClaimResult.Full));
      } catch (e) {
        for (const w of batch) w.reject(e);
      }
    }
  }

  private async write(roomId: string, batch: Waiter[]): Promise<ClaimResult[]> {
    let results: ClaimResult[] = [];
    const { step } = await casUpdate(
      this.kv,
      seatsKey(roomId),
      parseSeatLedger,
      (current) => {
        const now = this.now();
        const seated = this.view.seated(roomId);
        const live = liveClaims(roomId, current?.claims ?? [], this.view, now);
        const holders = new Set(live.map((c) => c.user));
        const added: SeatClaim[] = [];
        results = batch.map((w) => {
          if (seated.has(w.userId) || holders.has(w.userId)) return ClaimResult.Seated;
          if (seated.size + holders.size >= w.maxParticipants) return ClaimResult.Full;
          if (holders.size >= MAX_SEAT_CLAIMS) return ClaimResult.TooManyClaims;
          const seen = this.view.presence(roomId, w.userId)?.changedAt;
          holders.add(w.userId);
          added.push({
            user: w.userId,
            until: now + this.ttlMs,
            ...(seen !== undefined ? { seen: Date.parse(seen) } : {}),
          });
          return ClaimResult.Seated;
        });
        // Dead claims are dropped when there is something to write anyway.
        return added.length > 0 ? { put: { claims: [...live, ...added] } } : undefined;
      },
      this.hints ? { cache: this.hints } : {},
    );
    if (step) this.onWrite();
    return results;
  }
}
