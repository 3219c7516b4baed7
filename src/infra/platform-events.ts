/**
 * Platform events (docs/platform.md): what happens in rooms, told to the platform's
 * other services. Each is published by the one replica whose compare-and-set stored the change
 * (presence transitions, hand changes) or removed the room's config, right after that write, so
 * one action makes one event however many replicas run.
 *
 * Core NATS, at most once: an event published while no service listens, or lost with the
 * connection, is not sent again (the stored state stays right; `torii.rooms.participants` and
 * `torii.rooms.list` tell it). Publishing never fails the action: a refused publish is logged.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import type { Logger } from '../runtime/logger.js';
import type { PlatformEvent } from '../protocol/subjects.js';

/** Why a participant left. */
export const LeftReason = {
  /** The client said it was leaving (`REQ_LEAVE`) and closed its last connection. */
  Leave: 'leave',
  /** Its last connection closed or was lost, and it did not come back within the grace period. */
  Disconnected: 'disconnected',
} as const;
export type LeftReason = (typeof LeftReason)[keyof typeof LeftReason];

/** The JSON of each platform event. `at` is when it happened (ISO-8601). */
export interface PlatformEventData {
  [PlatformEvent.ParticipantJoined]: {
    roomId: string;
    userId: string;
    name: string;
    role: string;
    at: string;
  };
  [PlatformEvent.ParticipantLeft]: {
    roomId: string;
    userId: string;
    reason: LeftReason;
    at: string;
  };
  [PlatformEvent.HandRaised]: {
    roomId: string;
    userId: string;
    note: string;
    at: string;
  };
  /** `by`: the user who lowered it, or `system` when its owner left. */
  [PlatformEvent.HandLowered]: { roomId: string; userId: string; by: string; at: string };
  [PlatformEvent.RoomEnded]: { roomId: string; reason: string; at: string };
}

/** A platform event with its data, ready to publish. */
export type PlatformMessage = {
  [E in PlatformEvent]: { event: E; data: PlatformEventData[E] };
}[PlatformEvent];

/** Publishes platform events on one connection of the APP account. */
export class PlatformEvents {
  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  /** Publishes `m`; a failure (the connection closed) is logged, never thrown. */
  publish(m: PlatformMessage): void {
    try {
      this.nc.publish(m.event, JSON.stringify(m.data));
    } catch (e) {
      this.log.warn({ event: m.event, err: describeError(e) }, 'platform event not published');
    }
  }
}
