import type { AnswerCode } from './errors.js';

/**
 * Room events on the wire (docs/protocol.md): names and envelopes shared by the workers (answers,
 * broadcasts) and the controller (EVT_SESSION_ENDED on room deletion).
 */

/** Broadcast events on `room.{roomId}.evt`. */
export const Broadcast = {
  HandRaised: 'EVT_HAND_RAISED',
  HandLowered: 'EVT_HAND_LOWERED',
  ParticipantJoined: 'EVT_PARTICIPANT_JOINED',
  ParticipantLeft: 'EVT_PARTICIPANT_LEFT',
  RoomUpdated: 'EVT_ROOM_UPDATED',
  SessionEnded: 'EVT_SESSION_ENDED',
  /**
   * Joins and departures of a large room, coalesced: one per room per interval, on
   * `room.{roomId}.evt.~presence` (src/domain/presence-batch.ts).
   */
  PresenceBatch: 'EVT_PRESENCE_BATCH',
} as const;
export type Broadcast = (typeof Broadcast)[keyof typeof Broadcast];

/** A broadcast envelope. */
export interface BroadcastMessage<T = unknown> {
  event: Broadcast;
  data: T;
  /** ISO-8601 time the event happened. */
  at: string;
}

/**
 * Largest broadcast, in bytes, as the room stream's budget counts it: the largest is
 * `EVT_HAND_RAISED` with a note of 200 characters (at most 1,200 bytes of JSON) or
 * `EVT_PARTICIPANT_JOINED` with a name of 128 (at most 768), each with ids, times and keys.
 */
export const MAX_BROADCAST_BYTES = 2 * 1024;

/** Client requests on `sysJsWorker.{roomId}.{userId}`. */
export const RequestEvent = {
  InitialData: 'REQ_INITIAL_DATA',
  MediaServerData: 'REQ_MEDIA_SERVER_DATA',
  RenewToken: 'REQ_RENEW_WAJLC_TOKEN',
  RaiseHand: 'REQ_RAISE_HAND',
  LowerHand: 'REQ_LOWER_HAND',
  /** The client is about to close: its departure is immediate, without the grace period. */
  Leave: 'REQ_LEAVE',
  /**
   * The client's consumer does not answer (its one server died): restore it elsewhere, so the
   * client can catch up. `data.deviceId` names the device's consumer; the user's own without it.
   */
  RestoreConsumer: 'REQ_RESTORE_CONSUMER',
  /**
   * A page of the room's participants in join order: `data.cursor` (null or absent for the first
   * page, else the previous answer's `next`) and `data.limit` (src/domain/presence-batch.ts).
   */
  Participants: 'REQ_PARTICIPANTS',
} as const;
export type RequestEvent = (typeof RequestEvent)[keyof typeof RequestEvent];

/** An answer on `room.{roomId}.user.{userId}`. */
export type Answer<T = unknown> =
  | { event: string; id: string | null; ok: true; data: T }
  | { event: string; id: string | null; ok: false; error: { code: AnswerCode; message: string } };

/** What a request's event name may be: bounded, so that an answer never echoes more. */
export const REQUEST_EVENT_PATTERN = /^REQ_[A-Z_]{1,48}$/;
/** What a request's event name may be, for messages. */
export const REQUEST_EVENT_RULE = "'REQ_' followed by 1 to 48 of A-Z and '_'";

/** True for an event name of the request shape (known or not). */
export const isRequestEventName = (event: unknown): event is string =>
  typeof event === 'string' && REQUEST_EVENT_PATTERN.test(event);

/** `REQ_RAISE_HAND` → `RES_RAISE_HAND`; anything else → `RES_ERROR`. */
export function answerEventName(request: string | undefined): string {
  return isRequestEventName(request) ? `RES_${request.slice(4)}` : 'RES_ERROR';
}

/** Longest request id a client may use, in characters. */
const MAX_REQUEST_ID_LENGTH = 64;
/**
 * What a request id may be: it names the request's answer, which is stored in the room stream,
 * and doubles as the request's `Nats-Msg-Id`; the SDK's ids (a 22-character random prefix, `-`,
 * a counter) fit.
 */
export const REQUEST_ID_PATTERN = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_REQUEST_ID_LENGTH}}$`);
/** What a request id may be, for messages. */
export const REQUEST_ID_RULE = `1 to ${MAX_REQUEST_ID_LENGTH} of letters, digits, '_' and '-'`;

/** True for a well-formed request id. */
export const isValidRequestId = (id: unknown): id is string =>
  typeof id === 'string' && REQUEST_ID_PATTERN.test(id);
/** Largest request payload a worker accepts, in bytes. */
export const MAX_REQUEST_BYTES = 16 * 1024;
