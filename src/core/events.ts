/**
 * Room events on the wire (DESIGN.md §6): names and envelopes shared by the workers (answers,
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
} as const;
export type Broadcast = (typeof Broadcast)[keyof typeof Broadcast];

/** A broadcast envelope. */
export interface BroadcastMessage<T = unknown> {
  event: Broadcast;
  data: T;
  /** ISO-8601 time the event happened. */
  at: string;
}

/** Builds the JSON of a broadcast. */
export function broadcast<T>(event: Broadcast, data: T, at: Date = new Date()): string {
  const msg: BroadcastMessage<T> = { event, data, at: at.toISOString() };
  return JSON.stringify(msg);
}
