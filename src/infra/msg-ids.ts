/**
 * `Nats-Msg-Id`s of the messages Torii itself stores in a room stream: answers, broadcasts, room
 * updates. JetStream deduplicates these ids across every subject of the stream, and members
 * publish chat and whiteboard messages there with ids of their own choosing: an id a member can
 * compute before Torii publishes makes Torii's message vanish as a "duplicate" of the member's.
 * So the id is an HMAC of the logical message, keyed by a secret every role already holds (the
 * APP service user's password) and no client does: each replica computes the same id for the
 * same logical message (a redelivered event handled by another worker, a reconcile repeated by a
 * new controller leader), and no member can compute any of them (docs/decisions.md, "Message ids
 * no member can pre-empt").
 */
import { createHmac } from 'node:crypto';

/** Prefix of every system message id; clients' ids may use it too, to no effect. */
const PREFIX = 'sys-';
/** Label mixed into the key, so that the password's HMAC serves this purpose only. */
const KEY_LABEL = 'torii/room-stream-msg-id/v1';

/** The parts that name one logical message; built by {@link MsgId}. */
export type MsgIdParts = readonly (string | number)[];

/**
 * The logical messages Torii stores, each named by what makes it one: the same parts in every
 * replica for the same message, and other parts (a kind first) for any other. Changing one
 * re-sends, once, what a replica of the previous version sent within the dedupe window.
 */
export const MsgId = {
  /** The answer to the stored event `eventId` (`{stream sequence}-{stored time}`). */
  answer: (eventId: string): MsgIdParts => ['ans', eventId],
  /** The `index`th broadcast the stored event `eventId` caused. */
  eventBroadcast: (eventId: string, index: number): MsgIdParts => ['evt', eventId, index],
  /** Presence batch number `n` of a room, covering the bucket through revision `throughRev`. */
  presenceBatch: (roomId: string, n: number, throughRev: number): MsgIdParts => [
    'batch',
    roomId,
    n,
    throughRev,
  ],
  /** A user's arrival, at the time its presence record says it is there since. */
  joined: (roomId: string, userId: string, since: string): MsgIdParts => [
    'joined',
    roomId,
    userId,
    since,
  ],
  /** A user's departure, at the time its presence record changed. */
  left: (roomId: string, userId: string, at: string): MsgIdParts => ['left', roomId, userId, at],
  /** A hand lowered because its user left, at the time of the departure. */
  handLoweredOnLeave: (roomId: string, userId: string, at: string): MsgIdParts => [
    'lowered',
    roomId,
    userId,
    at,
  ],
  /** A room's changed config, at its revision in `torii_rooms`. */
  roomUpdated: (roomId: string, revision: number): MsgIdParts => ['room-updated', roomId, revision],
} as const;

/** Computes system message ids; one per process, from the shared secret. */
export class SystemMsgIds {
  private readonly key: Buffer;

  /** @param secret the service user's password, which the controller and every worker hold */
  constructor(secret: string) {
    if (secret.length === 0) throw new Error('system message ids need a non-empty secret');
    this.key = createHmac('sha256', secret).update(KEY_LABEL).digest();
  }

  /**
   * The id of one logical message, named by its parts (kind, room, user, time or sequence…):
   * the same parts give the same id in every process holding the secret.
   */
  of(...parts: (string | number)[]): string {
    const mac = createHmac('sha256', this.key);
    // Length-prefixed, so that no two lists of parts read the same.
    for (const p of parts.map(String)) mac.update(`${p.length}:${p};`);
    return `${PREFIX}${mac.digest('base64url')}`;
  }
}
