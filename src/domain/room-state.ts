/**
 * Records in KV `torii_room_state` (docs/worker.md): who a member is (written by the callout when it
 * admits a user, so workers know roles without the token), raised hands (written by workers with
 * compare-and-set), and token-renewal stamps (rate limit across replicas).
 */
import { isValidId } from '../protocol/ids.js';
import type { RateBudget } from './rate.js';

/** `members.{roomId}.{userId}` */
export const memberKey = (roomId: string, userId: string): string => `members.${roomId}.${userId}`;
/** `hands.{roomId}.{userId}`: one key per user, so hand events of different users never contend. */
export const handKey = (roomId: string, userId: string): string => `hands.${roomId}.${userId}`;
/** Filter of every hand of a room. */
export const handsFilter = (roomId: string): string => `hands.${roomId}.*`;
/** `devices.{roomId}.{userId}`: the devices of a user that have a consumer of their own, oldest first. */
export const devicesKey = (roomId: string, userId: string): string => `devices.${roomId}.${userId}`;

/** Parses a device list record; an empty list for anything else. */
export function parseDevices(data: unknown): string[] {
  return Array.isArray(data) ? data.filter((d): d is string => typeof d === 'string') : [];
}

/** `seats.{roomId}`: the room's seat claims of admissions presence has not confirmed yet. */
export const seatsKey = (roomId: string): string => `seats.${roomId}`;
/**
 * `rights.{roomId}`: the rights of the room's last config whose narrowing was applied to open
 * connections, so that of several workers seeing one change only one closes connections.
 */
export const rightsKey = (roomId: string): string => `rights.${roomId}`;

/**
 * `batches.{roomId}`: what the room's presence batches have covered (`BatchMark` of
 * src/domain/presence-batch.ts), so that of several workers one emits each batch.
 */
export const presenceBatchKey = (roomId: string): string => `batches.${roomId}`;

/** `renew.{roomId}.{userId}` */
export const renewKey = (roomId: string, userId: string): string => `renew.${roomId}.${userId}`;

/**
 * `strikes.{roomId}.{userId}`: the user's connections lately closed for publishing above the
 * connection bound (the flood guard's repeat-offender record).
 */
export const strikesKey = (roomId: string, userId: string): string => `strikes.${roomId}.${userId}`;

/** Connections (`{server}/{cid}`) closed for flooding, with when (epoch milliseconds). */
interface StrikeRecord {
  strikes: { conn: string; at: number }[];
}

export function parseStrikes(data: unknown): StrikeRecord | undefined {
  const s = data as Partial<StrikeRecord> | null;
  if (!s || !Array.isArray(s.strikes)) return undefined;
  return {
    strikes: s.strikes.filter(
      (x): x is { conn: string; at: number } =>
        typeof x?.conn === 'string' && typeof x.at === 'number',
    ),
  };
}

/** A member of a room as admitted by the callout. */
export interface MemberRecord {
  roomId: string;
  userId: string;
  role: string;
  name?: string;
}

export function parseMember(data: unknown): MemberRecord | undefined {
  const m = data as Partial<MemberRecord> | null;
  if (!m || !isValidId(m.roomId) || !isValidId(m.userId) || typeof m.role !== 'string')
    return undefined;
  return m as MemberRecord;
}

/** One raised hand, as the initial data carries it (the wire contract's). */
export type { RaisedHand } from '../protocol/messages.js';

/** A user's hand in a room. */
export interface HandRecord {
  raised: boolean;
  raisedAt?: string;
  note?: string;
  /**
   * Stream sequence (in sysJsWorker) of the last event applied to this hand. Sequences are global,
   * so an older event (a redelivery, or one overtaken by a later event of another user) is a no-op.
   */
  appliedSeq: number;
  /**
   * The owner's bucket of hand changes (see `DEFAULT_HAND_CHANGES`): kept in the hand's own
   * record, so every worker replica draws from it under the same compare-and-set.
   */
  budget?: RateBudget;
}

export function parseHand(data: unknown): HandRecord | undefined {
  const h = data as Partial<HandRecord> | null;
  if (!h || typeof h.raised !== 'boolean' || typeof h.appliedSeq !== 'number') return undefined;
  return h as HandRecord;
}
