/**
 * Presence records in KV `torii_presence` (DESIGN.md §8), key `{roomId}.{userId}`. The tracker
 * writes them; the callout reads them to enforce `maxParticipants`; workers serve them as the
 * participant list.
 */
import { isValidId } from './ids.js';

export const PresenceState = { Online: 'online', Away: 'away', Left: 'left' } as const;
export type PresenceState = (typeof PresenceState)[keyof typeof PresenceState];

/** One NATS connection of a user, unique as `(server, cid)`. */
export interface PresenceConnection {
  server: string;
  cid: number;
  since: string;
}

/** A user's presence in one room. */
export interface PresenceRecord {
  roomId: string;
  userId: string;
  state: PresenceState;
  connections: PresenceConnection[];
  role?: string;
  name?: string;
  /** When the user first joined this session (ISO-8601). */
  since: string;
  /** When the state last changed (ISO-8601). */
  changedAt: string;
  /** When the last connection closed without a clean close (state `away`). */
  awayAt?: string;
  /** The user said it is leaving (`REQ_LEAVE`): its last connection closing means left, not away. */
  leaving?: boolean;
  /** Set once the user's consumer was deleted after the retention period. */
  consumerDeleted?: boolean;
}

/** `{roomId}.{userId}` */
export const presenceKey = (roomId: string, userId: string): string => `${roomId}.${userId}`;

/** Parses a presence record; undefined when malformed. */
export function parsePresence(data: unknown): PresenceRecord | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const r = data as Partial<PresenceRecord>;
  if (!isValidId(r.roomId) || !isValidId(r.userId)) return undefined;
  if (r.state !== 'online' && r.state !== 'away' && r.state !== 'left') return undefined;
  if (!Array.isArray(r.connections)) return undefined;
  return r as PresenceRecord;
}

/** A user counts towards `maxParticipants` until it has left. */
export const occupiesSeat = (r: PresenceRecord): boolean => r.state !== PresenceState.Left;
