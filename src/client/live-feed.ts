/**
 * The room's live updates on one connection: what this member publishes, and what the others
 * publish, filtered (`parseLive`) and bounded per sender (`LiveFilter`) before the app sees it.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import {
  DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
  DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
  encodeLive,
  LiveFilter,
  parseLive,
  type LiveMessage,
  type LiveRate,
} from './live.js';
import { received } from './republished.js';
import { liveSubject } from '../protocol/subjects.js';

/** Live updates in and out for one member of a room. */
export class LiveFeed {
  private readonly listeners = new Set<(m: LiveMessage) => void>();
  private readonly filter: LiveFilter;

  /** Subscribes to the room's live subjects; `rate` bounds each sender (defaults per field). */
  constructor(
    private readonly nc: NatsConnection,
    private readonly roomId: string,
    private readonly userId: string,
    rate: Partial<LiveRate> | undefined,
  ) {
    const filter = new LiveFilter({
      msgsPerSec: rate?.msgsPerSec ?? DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
      bytesPerSec: rate?.bytesPerSec ?? DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
    });
    this.filter = filter;
    nc.subscribe(liveSubject(roomId, '*'), {
      callback: (err, m) => {
        if (err) return;
        const live = parseLive(roomId, received(m));
        if (!live || live.from === userId) return;
        if (!filter.admit(live.from, m.data.length)) return;
        for (const l of this.listeners) l(live);
      },
    });
  }

  /** Publishes a live (not stored) update from this member. */
  publish(data: unknown): void {
    this.nc.publish(liveSubject(this.roomId, this.userId), encodeLive(data));
  }

  /** Listens to other members' live updates; returns a function that stops listening. */
  on(listener: (m: LiveMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Live updates dropped for coming faster than their sender's bound. */
  get dropped(): number {
    return this.filter.dropped;
  }
}
