/**
 * The one way Torii publishes what it says itself: answers and broadcasts stored in a room
 * stream, and platform events (docs/platform.md).
 *
 * Stored messages carry a system message id ({@link SystemMsgIds}) named by the logical message
 * ({@link MsgId}), so a repeat (a redelivered event handled by another worker, a transition applied
 * again, a reconcile run by a new leader) is stored once, and no member can pre-empt one.
 *
 * Platform events are core NATS, at most once: an event published while no service listens, or
 * lost with the connection, is not sent again (the stored state stays right;
 * `torii.rooms.participants` and `torii.rooms.list` tell it). Each is published by the one replica
 * whose compare-and-set stored the change (presence transitions, hand changes) or removed the
 * room's config, right after that write, so one action makes one event however many replicas
 * run. Publishing one never fails the action: a refused publish is logged.
 */
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import type { Broadcast } from '../protocol/events.js';
import { broadcast, type BroadcastData, type PlatformMessage } from '../protocol/messages.js';
import type { Logger } from '../runtime/logger.js';
import type { MsgIdParts, SystemMsgIds } from './msg-ids.js';

/** Publishes Torii's own messages on one connection of the APP account. */
export class SystemPublisher {
  private readonly js: JetStreamClient;

  constructor(
    private readonly nc: NatsConnection,
    private readonly ids: SystemMsgIds,
    private readonly log: Logger,
  ) {
    this.js = jetstream(nc);
  }

  /**
   * Stores `payload` on a room stream's `subject` under the id of the logical message `id`.
   * Without one it is stored every time: only for a message that nothing stored names once
   * (a session's end, whose room config may already be gone), where a repeat is harmless and a
   * message swallowed as a duplicate is not.
   * @throws when no stream stored it (JetStream's error, or a timeout)
   */
  async store(subject: string, payload: string, id: MsgIdParts | undefined): Promise<void> {
    await this.js.publish(subject, payload, id ? { msgID: this.ids.of(...id) } : {});
  }

  /**
   * Stores a broadcast (docs/protocol.md, "Broadcasts"); `id` names it, `at` is its time.
   * @throws as {@link store}
   */
  broadcast<B extends Broadcast>(
    subject: string,
    event: B,
    data: BroadcastData<B>,
    id: MsgIdParts | undefined,
    at: Date = new Date(),
  ): Promise<void> {
    return this.store(subject, broadcast(event, data, at), id);
  }

  /**
   * {@link broadcast} for what the stored state already says (presence and its batches): a
   * failure is logged, never thrown; the members' next list or reconnect shows the state.
   * Resolves with whether it was stored.
   */
  async tryBroadcast<B extends Broadcast>(
    subject: string,
    event: B,
    data: BroadcastData<B>,
    id: MsgIdParts,
  ): Promise<boolean> {
    try {
      await this.broadcast(subject, event, data, id);
      return true;
    } catch (e) {
      this.log.warn({ subject, event, err: describeError(e) }, 'broadcast not stored');
      return false;
    }
  }

  /**
   * Tells whoever listens on `subject` right now, storing nothing: for a room whose stream is
   * gone, whose live subscribers must still hear the broadcast.
   */
  tell<B extends Broadcast>(subject: string, event: B, data: BroadcastData<B>, at: Date): void {
    try {
      this.nc.publish(subject, broadcast(event, data, at));
    } catch (e) {
      this.log.warn({ subject, event, err: describeError(e) }, 'broadcast not sent');
    }
  }

  /** Publishes a platform event; a failure (the connection closed) is logged, never thrown. */
  platform(m: PlatformMessage): void {
    try {
      this.nc.publish(m.event, JSON.stringify(m.data));
    } catch (e) {
      this.log.warn({ event: m.event, err: describeError(e) }, 'platform event not published');
    }
  }
}
