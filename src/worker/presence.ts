/**
 * Connection tracking from the server's own events (DESIGN.md §8), first part: every
 * `$SYS.ACCOUNT.{APP}.CONNECT` / `.DISCONNECT` is applied to the user's record in KV
 * `torii_presence` with compare-and-set, keyed by `(server.id, client.id)`, so a user with two tabs
 * stays online until both close. Joins and leaves are broadcast on the room. (Grace periods,
 * periodic reconciliation and kicks build on this.)
 */
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { describeError } from '../core/errors.js';
import { Broadcast, broadcast } from '../core/events.js';
import { isValidId } from '../core/ids.js';
import type { Logger } from '../core/logger.js';
import {
  parsePresence,
  presenceKey,
  PresenceState,
  type PresenceRecord,
} from '../core/presence.js';
import { memberKey, parseMember } from '../core/room-state.js';
import { QUEUE_GROUP, roomEventsSubject, Sys } from '../core/subjects.js';

interface ConnectEvent {
  id: string;
  timestamp: string;
  server: { id: string };
  client: { id: number; user?: string; acc?: string; kind?: string };
}

/** Attempts of a compare-and-set loop. */
const CAS_ATTEMPTS = 20;

export class PresenceTracker {
  private subs: Subscription[] = [];
  private readonly js: JetStreamClient;

  constructor(
    private readonly sys: NatsConnection,
    private readonly app: NatsConnection,
    private readonly presence: KV,
    private readonly roomState: KV,
    private readonly account: string,
    private readonly log: Logger,
  ) {
    this.js = jetstream(app);
  }

  start(): void {
    for (const [subject, connected] of [
      [Sys.connect(this.account), true],
      [Sys.disconnect(this.account), false],
    ] as const) {
      this.subs.push(
        this.sys.subscribe(subject, {
          queue: QUEUE_GROUP,
          callback: (err, msg) => {
            if (!err) void this.apply(msg, connected);
          },
        }),
      );
    }
  }

  private async apply(msg: Msg, connected: boolean): Promise<void> {
    let ev: ConnectEvent;
    try {
      ev = msg.json<ConnectEvent>();
    } catch {
      return;
    }
    const [roomId, userId, extra] = (ev.client?.user ?? '').split('/');
    if (extra !== undefined || !isValidId(roomId) || !isValidId(userId)) return; // not a room client
    try {
      await this.update(roomId, userId, ev, connected);
    } catch (e) {
      this.log.error({ roomId, userId, err: describeError(e) }, 'presence update failed');
    }
  }

  private async update(
    roomId: string,
    userId: string,
    ev: ConnectEvent,
    connected: boolean,
  ): Promise<void> {
    const key = presenceKey(roomId, userId);
    for (let i = 0; i < CAS_ATTEMPTS; i++) {
      const e = await this.presence.get(key);
      const prev = e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
      const now = ev.timestamp ?? new Date().toISOString();
      const conns = (prev?.connections ?? []).filter(
        (c) => !(c.server === ev.server.id && c.cid === ev.client.id),
      );
      if (connected) conns.push({ server: ev.server.id, cid: ev.client.id, since: now });
      const wasIn = prev !== undefined && prev.state !== PresenceState.Left;
      const isIn = conns.length > 0;
      let next: PresenceRecord;
      if (isIn) {
        const member = wasIn ? undefined : await this.member(roomId, userId);
        next = {
          roomId,
          userId,
          state: PresenceState.Online,
          connections: conns,
          role: member?.role ?? prev?.role,
          name: member?.name ?? prev?.name ?? userId,
          since: wasIn && prev ? prev.since : now,
          changedAt: wasIn ? (prev?.changedAt ?? now) : now,
        };
      } else {
        if (!prev) return; // a disconnect of a connection we never saw
        next = { ...prev, state: PresenceState.Left, connections: [], changedAt: now };
      }
      try {
        if (e) await this.presence.update(key, JSON.stringify(next), e.revision);
        else await this.presence.create(key, JSON.stringify(next));
      } catch {
        continue; // another replica changed it: read again
      }
      if (!wasIn && isIn)
        await this.announce(
          roomId,
          Broadcast.ParticipantJoined,
          { userId, name: next.name, role: next.role, since: next.since },
          ev.id,
        );
      if (wasIn && !isIn) await this.announce(roomId, Broadcast.ParticipantLeft, { userId }, ev.id);
      return;
    }
    throw new Error('presence record is too busy');
  }

  private async member(
    roomId: string,
    userId: string,
  ): Promise<{ role?: string; name?: string } | undefined> {
    const e = await this.roomState.get(memberKey(roomId, userId));
    return e?.operation === 'PUT' ? parseMember(e.json()) : undefined;
  }

  private async announce(
    roomId: string,
    event: Broadcast,
    data: unknown,
    eventId: string,
  ): Promise<void> {
    await this.js.publish(roomEventsSubject(roomId), broadcast(event, data), {
      msgID: `presence-${eventId}`,
    });
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
  }
}
