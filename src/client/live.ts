/**
 * Live updates (cursors, typing): core NATS on `room.{roomId}.live.{userId}`, never stored
 * (DESIGN.md §5). Pure functions, shared by the SDK and its tests; nothing Node-only.
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
import { parseRoomSubject, RoomSubjectKind } from '../core/subjects.js';

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
    body = JSON.parse(new TextDecoder().decode(m.body));
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== LIVE_KEY) return undefined;
  return { from: s.userId, data: (body as Record<string, unknown>)[LIVE_KEY] };
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
