/**
 * Connection tracking from the server's own events (docs/worker.md). Every
 * `$SYS.ACCOUNT.{CLIENTS}.CONNECT` / `.DISCONNECT` is applied to the user's record in KV
 * `torii_presence` by the pure state machine `applyPresence`, under compare-and-set; identity
 * comes from the user JWT name `{roomId}/{userId}` that the callout sets.
 *
 * Timers are not held in memory: every replica keeps an index of the records whose grace period
 * or retention period ends, and the compare-and-set decides which replica finishes a transition,
 * so a replica dying in the middle of a grace period changes nothing. A periodic reconcile asks
 * every server for its connections and repairs missed events, telling a server that answers late
 * from one that is gone; a server's shutdown event ends its connections. A user who left is
 * deleted, with its consumers and records, once the retention period is over.
 */
import { KeyedQueue } from '../domain/keyed-queue.js';
import { retry } from '../domain/retry.js';
import { jetstreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import {
  NoRespondersError,
  TimeoutError,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import { Broadcast } from '../protocol/events.js';
import type { BroadcastData } from '../protocol/messages.js';
import { isValidId } from '../protocol/ids.js';
import { casUpdate, eraseKey, RoomIndex, type KvCache } from '../infra/kv.js';
import { accountConnz, serverConnz, type ConnzAnswer } from './connz.js';
import type { Logger } from '../runtime/logger.js';
import { MsgId, type MsgIdParts, type SystemMsgIds } from '../infra/msg-ids.js';
import { SystemPublisher } from '../infra/system-publisher.js';
import { LeftReason } from '../protocol/messages.js';
import {
  buildBatch,
  DEFAULT_LARGE_ROOM_THRESHOLD,
  DEFAULT_PRESENCE_BATCH_INTERVAL_MS,
  isLargeRoom,
  nextBatchMark,
  parseBatchMark,
  participantOf,
  prunePending,
  seatChange,
  type BatchMark,
  type PendingChange,
} from '../domain/presence-batch.js';
import {
  applyPresence,
  occupiesSeat,
  parsePresence,
  presenceKey,
  PresenceState,
  type ConnectionRef,
  type PresenceEvent,
  type PresenceRecord,
} from '../domain/presence.js';
import {
  devicesKey,
  handKey,
  memberKey,
  parseDevices,
  parseHand,
  parseMember,
  presenceBatchKey,
  renewKey,
  strikesKey,
} from '../domain/room-state.js';
import {
  Bucket,
  deviceConsumerName,
  PlatformEvent,
  presenceBatchSubject,
  QUEUE_GROUP,
  userEventsSubject,
  roomStreamName,
  Sys,
  userConsumerName,
} from '../protocol/subjects.js';

/** Defaults (flags of `torii worker`). */
export const DEFAULT_PRESENCE_GRACE_MS = 15_000;
export const DEFAULT_PRESENCE_RESYNC_MS = 30_000;
export const DEFAULT_CONSUMER_RETENTION_MS = 3_600_000;
/**
 * Records of a departed user stored this recently when its cleanup runs are kept, in
 * milliseconds (at most half the retention period): an admission writes them before the
 * server's CONNECT event reaches presence, which under load takes seconds.
 */
export const RETURN_WINDOW_MS = 30_000;
/** How often each replica looks for finished grace and retention periods, in milliseconds. */
const SWEEP_INTERVAL_MS = 500;
/** How long to wait for CONNZ replies from every server, in milliseconds. */
const CONNZ_WAIT_MS = 1_000;
/**
 * How long a server that did not answer in {@link CONNZ_WAIT_MS} gets to answer a question of
 * its own, in milliseconds. A loaded server answers late; a gone one has no responder at all.
 */
const CONNZ_LATE_WAIT_MS = 5_000;
/** Connections listed per CONNZ answer, at most. */
const CONNZ_LIMIT = 100_000;
/** How long one presence event is tried again when JetStream fails it, in milliseconds. */
const EVENT_RETRY_FOR_MS = 30_000;
/** First and longest wait between two tries of a presence event, in milliseconds. */
const EVENT_RETRY_FIRST_MS = 250;
const EVENT_RETRY_MAX_MS = 4_000;
/** Grace periods finished at once by one replica's sweep. */
const SWEEP_CONCURRENCY = 32;

export interface PresenceSettings {
  graceMs: number;
  resyncMs: number;
  /** How long a departed user's consumers and records are kept, in milliseconds. */
  consumerRetentionMs: number;
  /**
   * Members present above which a room's joins and departures are coalesced into batches
   * (`--large-room-threshold`; {@link DEFAULT_LARGE_ROOM_THRESHOLD} when omitted).
   */
  largeRoomThreshold?: number;
  /**
   * Least time between two presence batches of a room, in milliseconds
   * (`--presence-batch-interval`; {@link DEFAULT_PRESENCE_BATCH_INTERVAL_MS} when omitted).
   */
  batchIntervalMs?: number;
}

interface ClientEvent {
  timestamp?: string;
  server?: { id?: string };
  client?: { id?: number; user?: string; name?: string };
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

/**
 * The id of the server a shutdown event is about: the event is the server's own info
 * (`{id, name, …}`), sent on `$SYS.SERVER.{id}.SHUTDOWN`.
 */
export function shutdownServerId(subject: string, body: unknown): string | undefined {
  const fromSubject = subject.split('.')[2];
  if (fromSubject && fromSubject !== '*') return fromSubject;
  const id = (body as { id?: unknown } | null)?.id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/** What the sweep must do for a record, and from when (epoch milliseconds). */
interface Due {
  at: number;
  run: () => Promise<void>;
}

/**
 * Records by the time their grace or retention period ends: a binary heap with lazy removal, so
 * a sweep costs what is due, not every user who left within the retention period.
 */
class DueQueue {
  private readonly byKey = new Map<string, Due>();
  private readonly heap: { at: number; key: string; due: Due }[] = [];

  set(key: string, due: Due): void {
    this.byKey.set(key, due);
    // Replaced entries stay until they come up; rebuild before they outnumber the live ones.
    if (this.heap.length > 2 * this.byKey.size + 1_024) {
      this.heap.length = 0;
      for (const [k, d] of this.byKey) if (k !== key) this.push(k, d);
    }
    this.push(key, due);
  }

  private push(key: string, due: Due): void {
    this.heap.push({ at: due.at, key, due });
    for (let i = this.heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (this.heap[parent]!.at <= this.heap[i]!.at) break;
      [this.heap[parent], this.heap[i]] = [this.heap[i]!, this.heap[parent]!];
      i = parent;
    }
  }

  delete(key: string): void {
    this.byKey.delete(key); // its heap entry is dropped when it comes up
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** Removes and returns what is due at `now`. */
  takeDue(now: number): [string, Due][] {
    const out: [string, Due][] = [];
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const top = this.pop();
      if (this.byKey.get(top.key) !== top.due) continue; // replaced or removed since
      this.byKey.delete(top.key);
      out.push([top.key, top.due]);
    }
    return out;
  }

  private pop(): { at: number; key: string; due: Due } {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.heap.length && this.heap[l]!.at < this.heap[m]!.at) m = l;
        if (r < this.heap.length && this.heap[r]!.at < this.heap[m]!.at) m = r;
        if (m === i) break;
        [this.heap[m], this.heap[i]] = [this.heap[i]!, this.heap[m]!];
        i = m;
      }
    }
    return top;
  }
}

export class PresenceTracker {
  private readonly subs: Subscription[] = [];
  private readonly out: SystemPublisher;
  private sweeper: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private sweeping = false;
  private stopped = false;
  /** Records whose grace or retention period ends, by key: the sweep reads only these. */
  private readonly due = new DueQueue();
  /** Keys of records with a connection on each server. */
  private readonly byServer = new Map<string, Set<string>>();
  private readonly serversOf = new Map<string, string[]>();
  /** One chain of work per key: the events of one user are applied in the order they came. */
  /** One user's events at a time, in order (per presence key). */
  private readonly queue = new KeyedQueue();
  /** Members present, by room: whether a room is large. */
  private readonly present: RoomIndex<PresenceRecord>;
  /**
   * Batched seat changes this replica saw in the bucket and no batch has covered yet, by room
   * and user (the latest per user). Every replica keeps them; the one that moves the room's
   * batch mark emits them, the others drop what the mark covers.
   */
  private readonly pending = new Map<string, Map<string, PendingChange>>();
  private batcher: NodeJS.Timeout | undefined;
  private batching = false;
  /**
   * When each room last had a batch, as this replica read its mark, for rooms batched within the
   * interval: their mark is not read again before it is due.
   */
  private readonly lastBatchAt = new Map<string, number>();
  private readonly threshold: number;
  private readonly batchIntervalMs: number;

  constructor(
    private readonly sys: NatsConnection,
    private readonly app: NatsConnection,
    private readonly presence: KV,
    private readonly cache: KvCache<PresenceRecord>,
    private readonly roomState: KV,
    private readonly account: string,
    private readonly s: PresenceSettings,
    private readonly log: Logger,
    msgIds: SystemMsgIds,
    /** Sees every CONNZ answer of the reconcile (the flood guard reads its counters). */
    private readonly onConnz: (answer: ConnzAnswer) => void = () => undefined,
  ) {
    this.out = new SystemPublisher(app, msgIds, log);
    this.threshold = s.largeRoomThreshold ?? DEFAULT_LARGE_ROOM_THRESHOLD;
    this.batchIntervalMs = s.batchIntervalMs ?? DEFAULT_PRESENCE_BATCH_INTERVAL_MS;
    this.present = new RoomIndex(cache, occupiesSeat);
    for (const [key, r] of cache.entries()) this.track(key, r);
    cache.onChange((key, r, previous, revision) => {
      this.track(key, r);
      this.noteSeatChange(previous, r, revision);
    });
  }

  /** Keeps a batched join or departure until a batch covers it. */
  private noteSeatChange(
    prev: PresenceRecord | undefined,
    next: PresenceRecord | undefined,
    revision: number | undefined,
  ): void {
    const change = seatChange(prev, next);
    const r = next ?? prev;
    if (!change || !r || revision === undefined) return;
    // A record deleted while holding a seat says nothing: the room's size decides.
    const batched = next
      ? next.batched === true
      : isLargeRoom(this.present.room(r.roomId).size, this.threshold);
    if (!batched) return;
    let room = this.pending.get(r.roomId);
    if (!room) this.pending.set(r.roomId, (room = new Map<string, PendingChange>()));
    room.set(r.userId, { rev: revision, present: change === 'joined', entry: participantOf(r) });
  }

  /**
   * Emits the presence batch of each room with pending changes whose interval is over. The
   * room's mark in `torii_room_state` moves by compare-and-set: of the replicas that try, one
   * writes it and publishes the batch of the changes between the old mark and the new; the
   * others drop what it covered. A room thus gets at most one batch per interval.
   */
  private async emitBatches(): Promise<void> {
    if (this.batching) return;
    this.batching = true;
    const now = Date.now();
    for (const [roomId, at] of this.lastBatchAt)
      if (now - at >= this.batchIntervalMs) this.lastBatchAt.delete(roomId);
    try {
      await Promise.all(
        [...this.pending].map(async ([roomId, changes]) => {
          if (this.lastBatchAt.has(roomId)) return;
          let high = 0;
          for (const c of changes.values()) high = Math.max(high, c.rev);
          let mark: BatchMark | undefined;
          const { previous, step } = await casUpdate(
            this.roomState,
            presenceBatchKey(roomId),
            parseBatchMark,
            (cur) => {
              mark = nextBatchMark(cur, high, Date.now(), this.batchIntervalMs);
              return mark ? { put: mark } : undefined;
            },
          );
          if (!step || !mark) {
            if (previous) this.lastBatchAt.set(roomId, previous.at);
            if (previous && !prunePending(changes, previous.throughRev))
              this.pending.delete(roomId);
            return;
          }
          this.lastBatchAt.set(roomId, mark.at);
          const data = buildBatch(changes.values(), previous?.throughRev ?? 0, mark.throughRev, {
            n: mark.n,
            present: this.present.room(roomId).size,
          });
          if (!prunePending(changes, mark.throughRev)) this.pending.delete(roomId);
          // The number is in the batch: a member that sees a gap asks for the list again.
          await this.out.tryBroadcast(
            presenceBatchSubject(roomId),
            Broadcast.PresenceBatch,
            data,
            MsgId.presenceBatch(roomId, mark.n, mark.throughRev),
          );
        }),
      );
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'presence batches failed; tried again');
    } finally {
      this.batching = false;
    }
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
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    // Ticks within the interval, so that a batch is late by a quarter of it at most.
    this.batcher = setInterval(() => void this.emitBatches(), this.batchIntervalMs / 4);
    this.resync = setInterval(() => void this.reconcile(), this.s.resyncMs);
    await this.reconcile();
  }

  /** Keeps the due and per-server indexes in step with a record. */
  private track(key: string, r: PresenceRecord | undefined): void {
    for (const server of this.serversOf.get(key) ?? []) {
      const keys = this.byServer.get(server);
      keys?.delete(key);
      if (keys?.size === 0) this.byServer.delete(server);
    }
    const servers = [...new Set(r?.connections.map((c) => c.server) ?? [])];
    if (servers.length > 0) this.serversOf.set(key, servers);
    else this.serversOf.delete(key);
    for (const server of servers) {
      let keys = this.byServer.get(server);
      if (!keys) this.byServer.set(server, (keys = new Set()));
      keys.add(key);
    }
    this.schedule(key, r);
  }

  private schedule(key: string, r: PresenceRecord | undefined): void {
    if (r?.state === PresenceState.Away && r.awayAt) {
      const awayAt = r.awayAt;
      this.due.set(key, {
        at: Date.parse(awayAt) + this.s.graceMs,
        run: () => this.apply(r.roomId, r.userId, { type: 'grace_over', awayAt, at: now() }),
      });
    } else if (r?.state === PresenceState.Left) {
      const changedAt = r.changedAt;
      this.due.set(key, {
        at: Date.parse(changedAt) + this.s.consumerRetentionMs,
        run: () => this.cleanUp(r.roomId, r.userId, changedAt),
      });
    } else {
      this.due.delete(key);
    }
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
    const keys = [...(this.byServer.get(serverId) ?? [])];
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
            if (isLargeRoom(this.present.room(roomId).size, this.threshold)) next.batched = true;
            else delete next.batched;
            transition = { ...t, next };
          }
          return transition.next ? { put: transition.next } : undefined;
        },
        { cache: this.cache },
      );
      const next = transition?.next;
      if (!next) return;
      this.track(key, next); // the cache may lag behind our own write
      // Only the replica whose write stored the transition gets here with it, once: an event
      // applied again (a retry, another replica's copy) changes nothing and announces nothing.
      if (transition?.joined) {
        this.out.platform({
          event: PlatformEvent.ParticipantJoined,
          data: {
            roomId,
            userId,
            name: next.name ?? userId,
            role: next.role ?? 'unknown',
            at: next.since,
          },
        });
        if (!next.batched)
          await this.announce(
            roomId,
            userId,
            Broadcast.ParticipantJoined,
            { userId, name: next.name, role: next.role, since: next.since },
            MsgId.joined(roomId, userId, next.since),
          );
      }
      if (transition?.left)
        await this.left(
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
        firstMs: EVENT_RETRY_FIRST_MS,
        maxMs: EVENT_RETRY_MAX_MS,
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

  /** Finishes the grace and retention periods that are over, on any replica. */
  private async sweep(): Promise<void> {
    if (this.sweeping) return; // a long sweep must not overlap the next tick
    this.sweeping = true;
    try {
      const tasks = this.due.takeDue(Date.now()); // a change schedules a record again
      // Many users drop at once when a network or a server fails: finish them in parallel.
      await Promise.all(
        Array.from({ length: Math.min(SWEEP_CONCURRENCY, tasks.length) }, async () => {
          for (let task = tasks.shift(); task; task = tasks.shift()) {
            const [key, d] = task;
            await d.run().catch((e: unknown) => {
              this.log.warn({ key, err: describeError(e) }, 'presence sweep step failed');
              if (!this.due.has(key)) this.due.set(key, { ...d, at: Date.now() + this.s.graceMs });
            });
          }
        }),
      );
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * The retention period of a user who left is over: its consumers, its device list, member
   * record, hand and renewal stamp go, then its presence record, only if it is still the same
   * departure (a user who came back keeps everything, and records stored within
   * {@link RETURN_WINDOW_MS} stay; a consumer deleted under a user coming back is created again,
   * see the SDK's repair). The presence record goes last, so a
   * replica that dies half way leaves a record that brings the next sweep back here.
   *
   * The hand goes without a delete marker: every `REQ_INITIAL_DATA` reads all of a room's hand
   * keys, markers included, and nothing follows hands, so a marker (kept minutes) would make each
   * user who left within those minutes cost every join. The other records keep their markers: the
   * callout follows member records and device lists by the messages their deletion publishes.
   */
  private async cleanUp(roomId: string, userId: string, changedAt: string): Promise<void> {
    const key = presenceKey(roomId, userId);
    const r = this.cache.get(key);
    if (r && (r.state !== PresenceState.Left || r.changedAt !== changedAt)) return;
    const devices = await this.roomState.get(devicesKey(roomId, userId));
    const names = [
      userConsumerName(userId),
      ...(devices?.operation === 'PUT' ? parseDevices(devices.json()) : []).map((d) =>
        deviceConsumerName(userId, d),
      ),
    ];
    const jsm = await jetstreamManager(this.app, { checkAPI: false });
    for (const name of names)
      await jsm.consumers.delete(roomStreamName(roomId), name).catch(() => undefined);
    // A record stored just now is the user's return in progress: the callout writes it while
    // admitting, before the server's CONNECT reaches presence.
    const returningSince = Date.now() - Math.min(RETURN_WINDOW_MS, this.s.consumerRetentionMs / 2);
    for (const k of [
      devicesKey(roomId, userId),
      memberKey(roomId, userId),
      renewKey(roomId, userId),
      strikesKey(roomId, userId),
    ])
      await casUpdate(
        this.roomState,
        k,
        (d) => d,
        (cur, storedAt) =>
          cur !== undefined && storedAt !== undefined && storedAt.getTime() < returningSince
            ? { delete: true }
            : undefined,
      );
    const hand = await this.roomState.get(handKey(roomId, userId));
    if (hand && hand.created.getTime() < returningSince)
      await eraseKey(jsm, Bucket.RoomState, hand.key, hand.revision);
    const gone = await casUpdate(this.presence, key, parsePresence, (cur) =>
      cur?.state === PresenceState.Left && cur.changedAt === changedAt
        ? { delete: true }
        : undefined,
    );
    if (gone.step) {
      this.track(key, undefined);
      this.log.debug({ roomId, userId }, 'departed user cleaned up');
    }
  }

  /**
   * A user left: tell the platform, broadcast it (unless the room's batch does) and lower the
   * user's hand.
   */
  private async left(
    roomId: string,
    userId: string,
    at: string,
    reason: LeftReason,
    batched: boolean,
  ): Promise<void> {
    this.out.platform({
      event: PlatformEvent.ParticipantLeft,
      data: { roomId, userId, reason, at },
    });
    if (!batched)
      await this.announce(
        roomId,
        userId,
        Broadcast.ParticipantLeft,
        { userId },
        MsgId.left(roomId, userId, at),
      );
    const lowered = await casUpdate(this.roomState, handKey(roomId, userId), parseHand, (h) =>
      // The budget stays: leaving and coming back must not refill the user's hand changes.
      h?.raised
        ? {
            put: {
              raised: false,
              appliedSeq: h.appliedSeq,
              ...(h.budget !== undefined ? { budget: h.budget } : {}),
            },
          }
        : undefined,
    );
    if (lowered.step) {
      this.out.platform({
        event: PlatformEvent.HandLowered,
        data: { roomId, userId, by: 'system', at },
      });
      await this.announce(
        roomId,
        userId,
        Broadcast.HandLowered,
        { userId, by: 'system' },
        MsgId.handLoweredOnLeave(roomId, userId, at),
      );
    }
  }

  /**
   * Asks every server for the account's connections and repairs the records: connections the
   * servers do not have are removed (their users become away), connections they have that the
   * records miss are added. A server that does not answer in time is asked once more on its
   * own: no responder means it is gone (its connections end), a late answer counts, and silence
   * judges nothing.
   */
  async reconcile(): Promise<void> {
    try {
      // Connections that appeared while the servers were answering are not stale: only judge
      // connections older than the question.
      const askedAt = Date.now() - CONNZ_WAIT_MS;
      const live = new Map<string, Map<number, string>>();
      for (const answer of await accountConnz(
        this.sys,
        this.account,
        { limit: CONNZ_LIMIT },
        { maxWaitMs: CONNZ_WAIT_MS },
      ))
        this.readConnz(answer, live);
      const gone: string[] = [];
      await Promise.all(
        [...this.byServer.keys()]
          .filter((server) => !live.has(server))
          .map(async (server) => {
            try {
              const answer = await serverConnz(
                this.sys,
                server,
                this.account,
                { limit: CONNZ_LIMIT },
                CONNZ_LATE_WAIT_MS,
              );
              if (answer) this.readConnz(answer, live);
            } catch (e) {
              if (e instanceof NoRespondersError || isNoResponders(e)) gone.push(server);
              else if (!(e instanceof TimeoutError))
                this.log.debug({ server, err: describeError(e) }, 'CONNZ of one server failed');
              else this.log.info({ server }, 'server late to answer CONNZ; its users stay');
            }
          }),
      );
      for (const server of gone) {
        this.log.info({ server }, 'server gone; its connections end');
        await this.onServerGone(server);
      }
      const at = now();
      const work: Promise<void>[] = [];
      for (const [server, conns] of live) {
        for (const key of this.byServer.get(server) ?? []) {
          const r = this.cache.get(key);
          const stale = (r?.connections ?? []).filter(
            (c) => c.server === server && !conns.has(c.cid) && Date.parse(c.since) < askedAt,
          );
          if (r && stale.length > 0)
            work.push(this.apply(r.roomId, r.userId, { type: 'gone', conns: stale, at }));
        }
        for (const [cid, user] of conns) {
          const who = identityOf(user);
          if (!who) continue;
          const rec = this.cache.get(presenceKey(who.roomId, who.userId));
          if (rec?.connections.some((c) => c.server === server && c.cid === cid)) continue;
          const conn: ConnectionRef = { server, cid };
          work.push(this.apply(who.roomId, who.userId, { type: 'connect', conn, at }));
        }
      }
      await Promise.all(work);
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'presence reconcile failed');
    }
  }

  private readConnz(answer: ConnzAnswer, live: Map<string, Map<number, string>>): void {
    live.set(answer.server, new Map(answer.connections.map((c) => [c.cid, c.user])));
    this.onConnz(answer);
  }

  /** Broadcasts a change of one user's presence on that user's broadcast subject. */
  private async announce<B extends Broadcast>(
    roomId: string,
    userId: string,
    event: B,
    data: BroadcastData<B>,
    id: MsgIdParts,
  ): Promise<void> {
    await this.out.tryBroadcast(userEventsSubject(roomId, userId), event, data, id);
  }

  /** Stops listening; resolves when the events already taken are applied. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweeper);
    clearInterval(this.resync);
    clearInterval(this.batcher);
    for (const s of this.subs) s.unsubscribe();
    await this.queue.idle();
  }
}

const now = (): string => new Date().toISOString();

/** nats.js reports a request nobody listens to as a 503 status on some paths. */
function isNoResponders(e: unknown): boolean {
  const cause = (e as { cause?: unknown } | null)?.cause;
  return cause instanceof NoRespondersError;
}
