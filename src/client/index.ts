/**
 * The Torii room SDK (`torii/client`), for browsers, mobile web views and Node alike: it imports
 * no Node built-in and no transport, so the caller hands it a connect function (`wsconnect` from
 * `@nats-io/nats-core` in a browser, `connect` from `@nats-io/transport-node` in Node). It
 * connects with the room token and the private inbox prefix (and a device id, if given),
 * receives the room (answers, broadcasts, chat, whiteboard) from the room stream's republished
 * copies, catches up from its consumer at connect and after each reconnect, and hands each
 * message to the application once, in stream order. It sends events and awaits their answers by
 * id, and renews the token before it expires so that reconnects keep working. The wire protocol
 * it speaks is docs/protocol.md.
 */
export * from './room-client.js';
export type { LiveMessage, LiveRate } from './live.js';
export {
  DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
  DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
  LIVE_SENDER_BURST_SECONDS,
} from './live.js';
export * from './classroom.js';
// The wire contract, for apps that send events themselves (`RoomClient.request`).
export { MAX_NOTE_LENGTH } from '../protocol/limits.js';
export type {
  AnswerData,
  BroadcastData,
  RaisedHand,
  RenewedToken,
  RequestData,
  Requests,
} from '../protocol/messages.js';
export { Broadcast, RequestEvent, type BroadcastMessage } from '../protocol/events.js';
