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
import type { PlatformMessage } from '../protocol/messages.js';

// The events and their bodies are the wire contract's.
export { LeftReason, type PlatformEventData, type PlatformMessage } from '../protocol/messages.js';

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
