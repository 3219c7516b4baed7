/**
 * Connection tracking from the server's own events (DESIGN.md §8). Every
 * `$SYS.ACCOUNT.{APP}.CONNECT` / `.DISCONNECT` is applied to the user's record in KV
 * `torii_presence` with compare-and-set, keyed by `(server.id, client.id)`; identity comes from the
 * user JWT name `{roomId}/{userId}` that the callout sets.
 *
 * online → (last connection closed) → away → (grace period) → left; a clean close leaves at once.
 * Reconnecting within the grace period sends nothing. Timers are not held in memory: every replica
 * sweeps the records, and the compare-and-set decides which one finishes a transition, so a replica
 * dying in the middle of a grace period changes nothing. A periodic reconcile asks every server for
 * its connections and repairs missed events; a server's shutdown ends its connections.
 */
import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { describeError } from '../core/errors.js';
import { Broadcast, broadcast } from '../core/events.js';
import { isValidId } from '../core/ids.js';
import type { KvCache } from '../core/kv.js';
import type { Logger } from '../core/logger.js';
import {
  parsePresence,
  presenceKey,
  PresenceState,
  type PresenceConnection,
  type PresenceRecord,
} from '../core/presence.js';
import {
  devicesKey,
  handKey,
  memberKey,
  parseDevices,
  parseHand,
  parseMember,
} from '../core/room-state.js';
import {
  QUEUE_GROUP,
  roomEventsSubject,
  roomStreamName,
  Sys,
  userConsumerName,
  deviceConsumerName,
} from '../core/subjects.js';

/** Defaults (flags of `torii worker`). */
export const DEFAULT_PRESENCE_GRACE_MS = 15_000;
export const DEFAULT_PRESENCE_RESYNC_MS = 30_000;
export const DEFAULT_CONSUMER_RETENTION_MS = 3_600_000;
/** How often each replica looks for finished grace periods, in milliseconds. */
const SWEEP_INTERVAL_MS = 500;
/** How long to wait for CONNZ replies from every server, in milliseconds. */
const CONNZ_WAIT_MS = 1_000;
const CAS_ATTEMPTS = 20;
/** Grace periods finished at once by one replica's sweep. */
const SWEEP_CONCURRENCY = 32;

export interface PresenceSettings {
  graceMs: number;
  resyncMs: number;
  consumerRetentionMs: number;
}

interface ClientEvent {
  id: string;
  timestamp?: string;
  server: { id: string };
  client: { id: number; user?: string };
  reason?: string;
}

/** `{roomId}/{userId}` → ids, or undefined for anything else. */
export function identityOf(
  user: string | undefined,
): { roomId: string; userId: string } | undefined {
  const [roomId, userId, extra] = (user ?? '').split('/');
  return extra === undefined && isValidId(roomId) && isValidId(userId)
    ? { roomId, userId }
    : undefined;
}

export class PresenceTracker {
  private readonly subs: Subscription[] = [];
  private readonly js: JetStreamClient;
  private jsm: JetStreamManager | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  /**
   * Grace periods this replica started (key → awayAt). The sweep also reads the shared cache, so
   * any replica finishes any grace period; this set covers the moments when the cache lags (a KV
   * leader moving after a server died).
   */
  private readonly awayHere = new Map<string, string>();
  private sweeping = false;
  private resync: NodeJS.Timeout | undefined;

  constructor(
    private readonly sys: NatsConnection,
    private readonly app: NatsConnection,
    private readonly presence: KV,
    private readonly cache: KvCache<PresenceRecord>,
    private readonly roomState: KV,
    private readonly account: string,
    private readonly s: PresenceSettings,
    private readonly log: Logger,
  ) {
    this.js = jetstream(app);
  }

  async start(): Promise<void> {
    this.jsm = await jetstreamManager(this.app);
    const on = (subject: string, fn: (m: Msg) => Promise<void>): void => {
      this.subs.push(
        this.sys.subscribe(subject, {
          queue: QUEUE_GROUP,
          callback: (err, msg) => {
            if (!err)
              fn(msg).catch((e: unknown) =>
                this.log.error({ subject, err: describeError(e) }, 'presence event failed'),
              );
          },
        }),
      );
    };
    on(Sys.connect(this.account), (m) => this.onClientEvent(m, true));
    on(Sys.disconnect(this.account), (m) => this.onClientEvent(m, false));
    on(Sys.SERVER_SHUTDOWN_ALL, (m) =>
      this.onServerGone(m.json<{ server: { id: string } }>().server.id),
    );
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.resync = setInterval(() => void this.reconcile(), this.s.resyncMs);
    await this.reconcile();
  }

  private async onClientEvent(m: Msg, connected: boolean): Promise<void> {
    const ev = m.json<ClientEvent>();
    const who = identityOf(ev.client?.user);
    if (!who || !ev.server?.id) return;
    const conn = { server: ev.server.id, cid: ev.client.id };
    // A clean TCP close looks the same as a crashed tab ("Client Closed"); only REQ_LEAVE says
    // the user meant to go. Everything else waits for the grace period.
    const clean = false;
    await this.change(
      who.roomId,
      who.userId,
      ev.timestamp ?? new Date().toISOString(),
      (conns) =>
        connected
          ? [
              ...conns.filter((c) => !same(c, conn)),
              { ...conn, since: ev.timestamp ?? new Date().toISOString() },
            ]
          : conns.filter((c) => !same(c, conn)),
      clean,
    );
  }

  /** Every connection of a server that shut down is gone. */
  private async onServerGone(serverId: string): Promise<void> {
    for (const [, r] of this.cache.entries()) {
      if (r.connections.some((c) => c.server === serverId)) {
        await this.change(
          r.roomId,
          r.userId,
          new Date().toISOString(),
          (conns) => conns.filter((c) => c.server !== serverId),
          false,
        );
      }
    }
  }

  /**
   * Applies a change to a user's connections with compare-and-set and broadcasts what changed:
   * joined (first connection), left (clean close of the last connection). The last connection
   * closing otherwise makes the user away, and the sweep finishes it.
   */
  private async change(
    roomId: string,
    userId: string,
    at: string,
    edit: (c: PresenceConnection[]) => PresenceConnection[],
    clean: boolean,
  ): Promise<void> {
    const key = presenceKey(roomId, userId);
    for (let i = 0; i < CAS_ATTEMPTS; i++) {
      const e = await this.presence.get(key);
      const prev = e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
      const conns = edit(prev?.connections ?? []);
      const wasIn = prev !== undefined && prev.state !== PresenceState.Left;
      let next: PresenceRecord;
      if (conns.length > 0) {
        const member = wasIn ? undefined : await this.member(roomId, userId);
        const base = {
          roomId,
          userId,
          connections: conns,
          role: member?.role ?? prev?.role,
          name: member?.name ?? prev?.name ?? userId,
        };
        next =
          wasIn && prev
            ? {
                ...prev,
                ...base,
                state: PresenceState.Online,
                changedAt: prev.state === PresenceState.Online ? prev.changedAt : at,
              }
            : {
                ...base,
                state: PresenceState.Online,
                since: at,
                changedAt: at,
              };
        delete next.awayAt;
        delete next.consumerDeleted;
        // A leave announced by one tab does not outlive it while other tabs stay.
        if ((prev?.connections.length ?? 0) > conns.length) delete next.leaving;
      } else {
        if (!prev || prev.state === PresenceState.Left) return; // nothing was open
        const leaving = clean || prev.leaving === true;
        delete prev.leaving;
        next = leaving
          ? { ...prev, connections: [], state: PresenceState.Left, changedAt: at }
          : {
              ...prev,
              connections: [],
              state: PresenceState.Away,
              awayAt: prev.awayAt ?? at,
              changedAt: at,
            };
        if (leaving) delete next.awayAt;
      }
      if (prev && JSON.stringify(prev) === JSON.stringify(next)) return;
      try {
        if (e) await this.presence.update(key, JSON.stringify(next), e.revision);
        else await this.presence.create(key, JSON.stringify(next));
      } catch {
        continue; // another replica changed it: read again
      }
      if (next.state === PresenceState.Away && next.awayAt) this.awayHere.set(key, next.awayAt);
      if (!wasIn && next.state === PresenceState.Online) {
        await this.announce(
          roomId,
          Broadcast.ParticipantJoined,
          { userId, name: next.name, role: next.role, since: next.since },
          `joined-${roomId}-${userId}-${next.since}`,
        );
      }
      if (wasIn && next.state === PresenceState.Left) await this.left(roomId, userId, at);
      return;
    }
    throw new Error(`presence record ${key} is too busy`);
  }

  /** Finishes grace periods and deletes consumers after the retention period, on any replica. */
  private async sweep(): Promise<void> {
    if (this.sweeping) return; // a long sweep must not overlap the next tick
    this.sweeping = true;
    try {
      const now = Date.now();
      const due = new Map<string, () => Promise<void>>();
      for (const [key, awayAt] of this.awayHere) {
        if (Date.parse(awayAt) + this.s.graceMs > now) continue;
        this.awayHere.delete(key);
        due.set(key, () => this.finishAway(key, awayAt));
      }
      for (const [key, r] of this.cache.entries()) {
        if (due.has(key)) continue;
        if (
          r.state === PresenceState.Away &&
          r.awayAt &&
          Date.parse(r.awayAt) + this.s.graceMs <= now
        ) {
          const awayAt = r.awayAt;
          due.set(key, () => this.finishAway(key, awayAt));
        } else if (
          r.state === PresenceState.Left &&
          !r.consumerDeleted &&
          Date.parse(r.changedAt) + this.s.consumerRetentionMs <= now
        ) {
          due.set(key, () => this.deleteConsumer(key, r));
        }
      }
      // Many users drop at once when a network or a server fails: finish them in parallel.
      const tasks = [...due];
      await Promise.all(
        Array.from({ length: Math.min(SWEEP_CONCURRENCY, tasks.length) }, async () => {
          for (let t = tasks.shift(); t; t = tasks.shift()) {
            const [key, run] = t;
            await run().catch((e: unknown) =>
              this.log.warn({ key, err: describeError(e) }, 'presence sweep step failed'),
            );
          }
        }),
      );
    } finally {
      this.sweeping = false;
    }
  }

  private async finishAway(key: string, awayAt: string): Promise<void> {
    const e = await this.presence.get(key);
    const r = e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
    if (!e || !r || r.state !== PresenceState.Away || r.awayAt !== awayAt) return; // reconnected, or done elsewhere
    const at = new Date().toISOString();
    const next: PresenceRecord = { ...r, state: PresenceState.Left, changedAt: at };
    delete next.awayAt;
    try {
      await this.presence.update(key, JSON.stringify(next), e.revision);
    } catch {
      return; // another replica won
    }
    await this.left(r.roomId, r.userId, at);
  }

  private async deleteConsumer(key: string, r: PresenceRecord): Promise<void> {
    // The user's own consumer and those of its devices, then the device list itself.
    const devices = await this.roomState.get(devicesKey(r.roomId, r.userId));
    const names = [
      userConsumerName(r.userId),
      ...(devices?.operation === 'PUT' ? parseDevices(devices.json()) : []).map((d) =>
        deviceConsumerName(r.userId, d),
      ),
    ];
    for (const name of names)
      await this.jsm?.consumers.delete(roomStreamName(r.roomId), name).catch(() => undefined);
    if (devices?.operation === 'PUT')
      await this.roomState
        .delete(devicesKey(r.roomId, r.userId), { previousSeq: devices.revision })
        .catch(() => undefined); // a device connected meanwhile: its list stays
    const e = await this.presence.get(key);
    const cur = e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
    if (!e || !cur || cur.state !== PresenceState.Left) return;
    await this.presence
      .update(key, JSON.stringify({ ...cur, consumerDeleted: true }), e.revision)
      .catch(() => undefined);
  }

  /** A user left: broadcast it and lower the user's hand. */
  private async left(roomId: string, userId: string, at: string): Promise<void> {
    await this.announce(
      roomId,
      Broadcast.ParticipantLeft,
      { userId },
      `left-${roomId}-${userId}-${at}`,
    );
    for (let i = 0; i < CAS_ATTEMPTS; i++) {
      const e = await this.roomState.get(handKey(roomId, userId));
      const h = e?.operation === 'PUT' ? parseHand(e.json()) : undefined;
      if (!e || !h?.raised) return;
      try {
        await this.roomState.update(
          handKey(roomId, userId),
          JSON.stringify({ raised: false, appliedSeq: h.appliedSeq }),
          e.revision,
        );
      } catch {
        continue;
      }
      await this.announce(
        roomId,
        Broadcast.HandLowered,
        { userId, by: 'system' },
        `lowered-${roomId}-${userId}-${at}`,
      );
      return;
    }
  }

  /**
   * Asks every server for the account's connections and repairs the records: connections the
   * servers do not have are removed (their users become away), connections they have that the
   * records miss are added. Servers that do not answer are treated as gone when others answer.
   */
  async reconcile(): Promise<void> {
    try {
      // Connections that appeared while the servers were answering are not stale: only judge
      // connections older than the question.
      const askedAt = Date.now() - 1_000;
      const live = new Map<string, Map<number, string>>();
      const replies = await this.sys.requestMany(
        Sys.accountConnz(this.account),
        JSON.stringify({ auth: true, limit: 100_000 }),
        { maxWait: CONNZ_WAIT_MS },
      );
      for await (const m of replies) {
        try {
          const r = m.json<{
            server: { id: string };
            data?: { connections?: { cid: number; authorized_user?: string }[] };
          }>();
          const conns = new Map<number, string>();
          for (const c of r.data?.connections ?? [])
            if (c.authorized_user) conns.set(c.cid, c.authorized_user);
          live.set(r.server.id, conns);
        } catch {
          // not a CONNZ reply
        }
      }
      if (live.size === 0) return; // no answer at all: judge nothing
      const now = new Date().toISOString();
      for (const [, r] of this.cache.entries()) {
        const stale = r.connections.filter(
          (c) => !live.get(c.server)?.has(c.cid) && Date.parse(c.since) < askedAt,
        );
        if (stale.length > 0)
          await this.change(
            r.roomId,
            r.userId,
            now,
            (conns) => conns.filter((c) => !stale.some((s) => same(s, c))),
            false,
          );
      }
      for (const [server, conns] of live) {
        for (const [cid, user] of conns) {
          const who = identityOf(user);
          if (!who) continue;
          const rec = this.cache.get(presenceKey(who.roomId, who.userId));
          if (rec?.connections.some((c) => c.server === server && c.cid === cid)) continue;
          await this.change(
            who.roomId,
            who.userId,
            now,
            (cs) => [
              ...cs.filter((c) => !(c.server === server && c.cid === cid)),
              { server, cid, since: now },
            ],
            false,
          );
        }
      }
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'presence reconcile failed');
    }
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
    msgId: string,
  ): Promise<void> {
    await this.js
      .publish(roomEventsSubject(roomId), broadcast(event, data), { msgID: msgId })
      .catch((e: unknown) => {
        this.log.warn({ roomId, event, err: describeError(e) }, 'cannot broadcast presence event');
      });
  }

  stop(): void {
    clearInterval(this.sweeper);
    clearInterval(this.resync);
    for (const s of this.subs) s.unsubscribe();
  }
}

const same = (a: { server: string; cid: number }, b: { server: string; cid: number }): boolean =>
  a.server === b.server && a.cid === b.cid;
