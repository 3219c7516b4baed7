/**
 * Block entries in KV `torii_blocks`, key `{roomId}.{userId}`: a kicked user's tokens are refused
 * by the callout until `until` (or forever when absent).
 */
import { isValidId } from '../protocol/ids.js';

export interface BlockRecord {
  roomId: string;
  userId: string;
  reason: string;
  /** Who blocked, e.g. a service name. */
  by: string;
  createdAt: string;
  /** ISO-8601; absent means no end. */
  until?: string;
}

/** `{roomId}.{userId}` */
export const blockKey = (roomId: string, userId: string): string => `${roomId}.${userId}`;

export function parseBlock(data: unknown): BlockRecord | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const b = data as Partial<BlockRecord>;
  if (!isValidId(b.roomId) || !isValidId(b.userId)) return undefined;
  if (b.until !== undefined && Number.isNaN(Date.parse(b.until))) return undefined;
  return b as BlockRecord;
}

/** True while the block is in force at `now`. */
export function isBlockActive(b: BlockRecord, now: Date): boolean {
  return b.until === undefined || Date.parse(b.until) > now.getTime();
}
