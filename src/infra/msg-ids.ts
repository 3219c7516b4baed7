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
