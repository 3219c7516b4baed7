/**
 * Connection tracking from the server's own events (docs/worker.md). Every
 * `$SYS.ACCOUNT.{CLIENTS}.CONNECT` / `.DISCONNECT` is applied to the user's record in KV
 * `torii_presence` by the pure state machine `applyPresence`, under compare-and-set; identity
 * comes from the user JWT name `{roomId}/{userId}` that the callout sets.
 *
 * The tracker takes the events in and applies them one user at a time; its parts do the rest:
 * the index of due grace and retention ends and of connections by server, swept on every
 * replica (presence-due.ts), the batches of large rooms (presence-batcher.ts), what follows a
 * departure (presence-departure.ts) and the periodic repair from the servers' connection lists,
 * which also tells a server that answers late from one that is gone (presence-reconcile.ts). A
 * server's shutdown event ends its connections.
 */
import { KeyedQueue } from '../domain/keyed-queue.js';
import { retry, type Backoff } from '../domain/retry.js';
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import { Broadcast } from '../protocol/events.js';
import { LeftReason } from '../protocol/messages.js';
import { PlatformEvent, QUEUE_GROUP, Sys, userEventsSubject } from '../protocol/subjects.js';
import {
  applyPresence,
  parsePresence,
  presenceKey,
  PresenceState,
  type PresenceEvent,
  type PresenceRecord,
} from '../domain/presence.js';
import { memberKey, parseMember } from '../domain/room-state.js';
import { participantOf } from '../domain/presence-batch.js';
import { casUpdate, type KvCache } from '../infra/kv.js';
import { MsgId, type SystemMsgIds } from '../infra/msg-ids.js';
import { SystemPublisher } from '../infra/system-publisher.js';
import type { Logger } from '../runtime/logger.js';
import type { ConnzAnswer } from './connz.js';
import { PresenceBatcher, type BatchSettings } from './presence-batcher.js';
import { Departures } from './presence-departure.js';
import { DueIndex, SWEEP_INTERVAL_MS } from './presence-due.js';
import { identityOf, now, shutdownServerId, type ClientEvent } from './presence-events.js';
import { Reconciler } from './presence-reconcile.js';

/** The presence settings of `torii worker` (defaults: the `DEFAULT_*` constants below). */
export interface PresenceSettings extends BatchSettings {
  /** How long a user whose last connection closed is away before it has left, in milliseconds. */
  graceMs: number;
  /** Interval of the reconcile against the servers' connection lists, in milliseconds. */
  resyncMs: number;
  /** How long a departed user's consumers and records are kept, in milliseconds. */
  consumerRetentionMs: number;
}

/**
 * How long a user whose last connection closed stays away before it has left, in milliseconds
 * (`--presence-grace`): a reload or a network change comes back within it, unannounced.
 */
export const DEFAULT_PRESENCE_GRACE_MS = 15_000;
/** How often each replica repairs the records from CONNZ, in milliseconds (`--presence-resync`). */
export const DEFAULT_PRESENCE_RESYNC_MS = 30_000;
/**
 * How long a departed user's consumers and records are kept, in milliseconds
 * (`--consumer-retention`): a user who comes back within it keeps them.
 */
export const DEFAULT_CONSUMER_RETENTION_MS = 3_600_000;
/** How long one presence event is tried again when JetStream fails it, in milliseconds. */
const EVENT_RETRY_FOR_MS = 30_000;
/** First and longest wait between two tries of a presence event, in milliseconds. */
const EVENT_BACKOFF: Backoff = { firstMs: 250, maxMs: 4_000 };

/**
 * Presence of one worker replica: takes the server's connection events in (every replica, in a
 * queue group, so each event reaches one), applies them to the users' records in
 * `torii_presence` and announces joins and departures; sweeps the due grace and retention ends,
 * emits the batches of large rooms and reconciles against CONNZ.
 */
export class PresenceTracker {
  private readonly subs: Subscription[] = [];
  private readonly out: SystemPublisher;
  private sweeper: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private batchTicker: NodeJS.Timeout | undefined;
  private stopped = false;
  /** One user's events at a time, in order (per presence key). */
  private readonly queue = new KeyedQueue();
  private readonly batcher: PresenceBatcher;
  private readonly index: DueIndex;
  private readonly departures: Departures;
  private readonly reconciler: Reconciler;

  constructor(
    private readonly sys: NatsConnection,
    app: NatsConnection,
    private readonly presence: KV,
    private readonly cache: KvCache<PresenceRecord>,
    private readonly roomState: KV,
    private readonly account: string,
    private readonly s: PresenceSettings,
    private readonly log: Logger,
    msgIds: SystemMsgIds,
    /** Sees every CONNZ answer of the reconcile (the flood guard reads its counters). */
    onConnz: (answer: ConnzAnswer) => void = () => undefined,
  ) {
    this.out = new SystemPublisher(app, msgIds, log);
    // First to follow the cache: a room's size is up to date when the change is noted below.
    this.batcher = new PresenceBatcher(cache, roomState, this.out, log, s);
    this.index = new DueIndex(
      { graceMs: s.graceMs, retentionMs: s.consumerRetentionMs },
      {
        graceOver: (r, awayAt) =>
          this.apply(r.roomId, r.userId, { type: 'grace_over', awayAt, at: now() }),
        retentionOver: (r, changedAt) => this.departures.cleanUp(r.roomId, r.userId, changedAt),
      },
      log,
    );
    this.departures = new Departures({
      app,
      presence,
      cache,
      roomState,
      out: this.out,
      log,
      retentionMs: s.consumerRetentionMs,
      forget: (key) => this.index.track(key, undefined),
    });
    this.reconciler = new Reconciler({
      sys,
      account,
      cache,
      index: this.index,
      apply: (roomId, userId, ev) => this.apply(roomId, userId, ev),
      serverGone: (server) => this.onServerGone(server),
      onConnz,
      log,
    });
    for (const [key, r] of cache.entries()) this.index.track(key, r);
    cache.onChange((key, r, previous, revision) => {
      this.index.track(key, r);
      this.batcher.noteSeatChange(previous, r, revision);
    });
  }

  async start(): Promise<void> {
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
    on(Sys.SERVER_SHUTDOWN_ALL, async (m) => {
      let body: unknown;
      try {
        body = m.json();
      } catch {
        body = undefined;
      }
      const id = shutdownServerId(m.subject, body);
      if (id) await this.onServerGone(id);
    });
    this.sweeper = setInterval(() => void this.index.sweep(), SWEEP_INTERVAL_MS);
    // Ticks within the interval, so that a batch is late by a quarter of it at most.
    this.batchTicker = setInterval(() => void this.batcher.emit(), this.batcher.intervalMs / 4);
    this.resync = setInterval(() => void this.reconcile(), this.s.resyncMs);
    await this.reconcile();
  }

  /** Repairs the records from the servers' connection lists (see {@link Reconciler}). */
  reconcile(): Promise<void> {
    return this.reconciler.reconcile();
  }

  private async onClientEvent(m: Msg, connected: boolean): Promise<void> {
    const ev = m.json<ClientEvent>();
    const who = identityOf(ev.client?.user);
    const server = ev.server?.id;
    const cid = ev.client?.id;
    if (!who || !server || typeof cid !== 'number') return;
    const at = ev.timestamp ?? now();
    const conn = { server, cid };
    if (!connected) return this.apply(who.roomId, who.userId, { type: 'disconnect', conn, at });
    await this.apply(who.roomId, who.userId, { type: 'connect', conn, at });
  }

  /** Every connection of a server that shut down or is gone has ended. */
  private async onServerGone(serverId: string): Promise<void> {
    const keys = [...this.index.keysOn(serverId)];
    await Promise.all(
      keys.map((key) => {
        const r = this.cache.get(key);
        if (!r) return Promise.resolve();
        const conns = r.connections.filter((c) => c.server === serverId);
        return this.apply(r.roomId, r.userId, { type: 'gone', conns, at: now() });
      }),
    );
  }

  /**
   * Applies an event to a user's record, after the user's earlier events, and announces what
   * changed: joined (first connection), left (last one closed for good).
   */
  apply(roomId: string, userId: string, ev: PresenceEvent): Promise<void> {
    const key = presenceKey(roomId, userId);
    const run = async (): Promise<void> => {
      const event = ev.type === 'connect' ? await this.withMember(key, roomId, userId, ev) : ev;
      let transition: ReturnType<typeof applyPresence> | undefined;
      // The cache's revision spares the read: a user's first record is created in one call.
      await casUpdate(
        this.presence,
        key,
        parsePresence,
        (cur) => {
          transition = applyPresence(cur, roomId, userId, event);
          const t = transition;
          if (t.next && (t.joined || t.left)) {
            // Decided here, once, and stored with the change: every replica's batches agree.
            const next = { ...t.next };
            if (this.batcher.isLarge(roomId)) next.batched = true;
            else delete next.batched;
            transition = { ...t, next };
          }
          return transition.next ? { put: transition.next } : undefined;
        },
        { cache: this.cache },
      );
      const next = transition?.next;
      if (!next) return;
      this.index.track(key, next); // the cache may lag behind our own write
      // Only the replica whose write stored the transition gets here with it, once: an event
      // applied again (a retry, another replica's copy) changes nothing and announces nothing.
      if (transition?.joined) {
        const { since, ...who } = participantOf(next);
        this.out.platform({
          event: PlatformEvent.ParticipantJoined,
          data: { roomId, ...who, at: since },
        });
        if (!next.batched)
          await this.out.tryBroadcast(
            userEventsSubject(roomId, userId),
            Broadcast.ParticipantJoined,
            { userId, name: next.name, role: next.role, since: next.since },
            MsgId.joined(roomId, userId, next.since),
          );
      }
      if (transition?.left)
        await this.departures.left(
          roomId,
          userId,
          next.changedAt,
          event.type === 'grace_over' ? LeftReason.Disconnected : LeftReason.Leave,
          next.batched === true,
        );
    };
    // An event is applied once or not at all, so trying again is safe; and an event dropped on
    // a JetStream hiccup (a bucket electing a leader after a server died) would stay wrong until
    // the next reconcile.
    const attempt = (): Promise<void> =>
      retry(run, {
        ...EVENT_BACKOFF,
        deadline: Date.now() + EVENT_RETRY_FOR_MS,
        stopped: () => this.stopped,
        onRetry: (e) =>
          this.log.debug({ key, event: ev.type, err: describeError(e) }, 'presence event retried'),
      });
    return this.queue.run(key, attempt);
  }

  /** A CONNECT of a user who is not in the room carries its role and name from the callout. */
  private async withMember(
    key: string,
    roomId: string,
    userId: string,
    ev: PresenceEvent & { type: 'connect' },
  ): Promise<PresenceEvent> {
    const r = this.cache.get(key);
    if (r && r.state !== PresenceState.Left) return ev;
    const e = await this.roomState.get(memberKey(roomId, userId));
    const m = e?.operation === 'PUT' ? parseMember(e.json()) : undefined;
    return m ? { ...ev, role: m.role, ...(m.name !== undefined ? { name: m.name } : {}) } : ev;
  }

  /** Stops listening; resolves when the events already taken are applied. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweeper);
    clearInterval(this.resync);
    clearInterval(this.batchTicker);
    for (const s of this.subs) s.unsubscribe();
    await this.queue.idle();
  }
}
