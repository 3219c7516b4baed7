/**
 * Live updates (cursors, typing): core NATS on `room.{roomId}.live.{userId}`, never stored
 * (docs/protocol.md). Pure functions, shared by the SDK and its tests; nothing Node-only.
 *
 * Why a filter: every member of a room subscribes to `room.{roomId}.live.*` inside the CLIENTS
 * account, and any client may name such a subject as the reply of a request it makes. The answer
 * (a JetStream API response, a PubAck, a delivery, an ack confirmation) then arrives on that
 * subscription as if the member named in the subject had sent it. None of those answers looks like
 * a live message: deliveries carry a `$JS.ACK` reply, status messages carry headers, ack
 * confirmations are empty, and API responses and PubAcks are JSON objects with other keys. A live
 * message is exactly `{"live": <data>}`, published with no reply and no header, so the SDK drops
 * everything else (docs/security.md).
 */
import { RateGate } from '../domain/rate.js';
import { parseRoomSubject, RoomSubjectKind } from '../protocol/subjects.js';

/** One decoder for every live message, not one each. */
const UTF8 = new TextDecoder();

/** A live update from a member of the room. */
export interface LiveMessage {
  /** The sender, from the subject (the server lets each user publish only its own). */
  from: string;
  data: unknown;
}

/** The only key of a live message's JSON body. */
const LIVE_KEY = 'live';

/** Encodes `data` as the body of a live message. */
export function encodeLive(data: unknown): string {
  return JSON.stringify({ [LIVE_KEY]: data ?? null });
}

/** What {@link parseLive} looks at: a received message, transport-neutral. */
export interface ReceivedMessage {
  subject: string;
  reply?: string;
  /** True when the message carried a header block (status messages included). */
  hasHeaders: boolean;
  body: Uint8Array;
}

/**
 * The live update a message carries, or undefined when it is not one of this room's live
 * messages (a reply someone aimed at the subject, another room's subject, a malformed body).
 */
export function parseLive(roomId: string, m: ReceivedMessage): LiveMessage | undefined {
  if (m.reply || m.hasHeaders || m.body.length === 0) return undefined;
  const s = parseRoomSubject(m.subject);
  if (!s || s.roomId !== roomId || s.kind !== RoomSubjectKind.Live || !s.userId) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(UTF8.decode(m.body));
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== LIVE_KEY) return undefined;
  return { from: s.userId, data: (body as Record<string, unknown>)[LIVE_KEY] };
}

/**
 * Default live updates one sender may hand to the app a second (`liveRate.msgsPerSec`): half
 * again a busy page (20 cursor updates a second and a presence beat every 2 s).
 */
export const DEFAULT_LIVE_SENDER_MSGS_PER_SEC = 30;
/** Default live bytes (message bodies) one sender may hand to the app a second: 32 KiB. */
export const DEFAULT_LIVE_SENDER_BYTES_PER_SEC = 32 * 1024;
/** A sender's bucket holds this many seconds of its rate. */
export const LIVE_SENDER_BURST_SECONDS = 2;

/** Senders whose buckets the SDK remembers at once (more than a room holds). */
const MAX_LIVE_SENDERS = 10_000;

/** A per-sender bound on live updates. */
export interface LiveRate {
  msgsPerSec: number;
  bytesPerSec: number;
}

/**
 * Drops live updates beyond a per-sender rate before they reach the app: a member flooding the
 * room (until the workers close its connection) costs the others' sockets, not their pages.
 */
export class LiveFilter {
  private readonly msgs: RateGate;
  private readonly bytes: RateGate;
  /** Updates dropped so far. */
  dropped = 0;

  constructor(rate: LiveRate) {
    const gate = (perSec: number) =>
      new RateGate(
        { burst: perSec * LIVE_SENDER_BURST_SECONDS, refillMs: 1000 / perSec },
        MAX_LIVE_SENDERS,
      );
    this.msgs = gate(rate.msgsPerSec);
    this.bytes = gate(rate.bytesPerSec);
  }

  /** Whether an update of `size` bytes from `from` may go to the app now. */
  admit(from: string, size: number, now = Date.now()): boolean {
    const ok = this.bytes.take(from, now, size) && this.msgs.take(from, now);
    if (!ok) this.dropped++;
    return ok;
  }
}

/** Bits of randomness in a client's request id prefix. */
export const REQUEST_ID_RANDOM_BITS = 128;

/**
 * A request id prefix no other user can guess. Request ids double as `Nats-Msg-Id`, which
 * JetStream deduplicates per stream, not per user: a user who could guess another's next id
 * could publish it first and have the other's request dropped as a duplicate.
 */
export function newRequestIdPrefix(): string {
  const bytes = new Uint8Array(REQUEST_ID_RANDOM_BITS / 8);
  globalThis.crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}
