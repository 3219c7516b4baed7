/**
 * A classroom on top of {@link RoomClient}: joins with `REQ_INITIAL_DATA`, keeps the room's state
 * (participants, the ordered hand queue) from the snapshot and the broadcasts after it, and turns
 * what arrives into typed events (chat, whiteboard strokes, hands, joins and departures, the end
 * of the session, the connection's state). Transport-neutral and free of Node built-ins, like the
 * rest of the SDK: the browser page (src/web) and any web or mobile app use it. The wire protocol
 * it speaks is docs/protocol.md.
 */
import { AuthorizationError, UserAuthenticationExpiredError } from '@nats-io/nats-core';
import { decodeJwt } from 'jose';
import { Broadcast, RequestEvent, type BroadcastMessage } from '../protocol/events.js';
import { inJoinOrder } from '../domain/presence-batch.js';
import type { RoomTokenClaims } from '../protocol/claims.js';
import type { LiveMessage } from './live.js';
import type {
  InitialData as WireInitialData,
  MediaServerData as WireMediaServerData,
  Participant as WireParticipant,
  ParticipantsPage as WireParticipantsPage,
  Permissions as WirePermissions,
  RaisedHand,
  AnswerData,
  RequestData,
} from '../protocol/messages.js';
import {
  RoomClient,
  RoomRequestError,
  type RoomClientOptions,
  type RoomMessage,
} from './room-client.js';

// The wire types are the contract's (src/protocol/messages.ts, docs/protocol.schema.json): what
// the workers send, derived from the same schemas that native apps generate their decoders from.

/** A member of the room as the classroom knows it. */
export type Participant = WireParticipant;
/** A raised hand; the queue is ordered by `raisedAt`; `note` is empty without one. */
export type Hand = RaisedHand;
/** What the user may do, from `REQ_INITIAL_DATA`; `media`: its LiveKit grants. */
export type Permissions = WirePermissions;
/** The answer to `REQ_MEDIA_SERVER_DATA` (docs/protocol.md): where and how to join media. */
export type MediaServerData = WireMediaServerData;
/**
 * The answer to `REQ_INITIAL_DATA` (docs/protocol.md, "Joining"). In a large room
 * (`participantsPartial`) `participants` lists only moderators, raised hands and the latest to
 * join: page the rest with {@link Classroom.loadParticipants}.
 */
export type InitialData = WireInitialData;
/** The answer to `REQ_PARTICIPANTS` (docs/protocol.md, "Large rooms"). */
export type ParticipantsPage = WireParticipantsPage;

/** Participants per page when {@link Classroom.loadAllParticipants} walks the list. */
export const LOAD_ALL_PAGE = 500;

/** A chat message. */
export interface ChatMessage {
  from: string;
  text: string;
  /** ISO-8601 time the sender stamped. */
  at: string;
  seq: number;
}

/** A whiteboard stroke: points in the unit square (0..1 on both axes), so any canvas size fits. */
export interface Stroke {
  color: string;
  /** Line width as a fraction of the canvas width. */
  width: number;
  points: [number, number][];
}

/** A stroke as it arrived, with its sender and room stream sequence. */
export interface WhiteboardStroke extends Stroke {
  from: string;
  seq: number;
}

/** The connection as the user should see it. */
export const ConnectionState = {
  Connecting: 'connecting',
  Connected: 'connected',
  Reconnecting: 'reconnecting',
  /** The token expired before it could be renewed: a new token is needed. */
  Expired: 'expired',
  /** The servers refused the user while its token was valid: kicked (blocked) from the room. */
  Kicked: 'kicked',
  /** The room was deleted (`EVT_SESSION_ENDED`). */
  Ended: 'ended',
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/** Whether a state is final: the classroom has closed and will not reconnect. */
export const isFinalState = (s: ConnectionState): boolean =>
  s === ConnectionState.Expired || s === ConnectionState.Kicked || s === ConnectionState.Ended;

/** What a classroom tells its listeners. */
export type ClassroomEvent =
  | { type: 'participant-joined'; participant: Participant }
  | { type: 'participant-left'; userId: string }
  /** The number of members present changed (a large room's batches say it). */
  | { type: 'participant-count'; count: number }
  /**
   * A large room's batch was missed (its history was cut, or the batch only counted): the list
   * may be stale. The classroom pages it again if it held it whole.
   */
  | { type: 'participants-stale' }
  | { type: 'hand-raised'; hand: Hand }
  | { type: 'hand-lowered'; userId: string; by: string }
  | { type: 'chat'; message: ChatMessage }
  | { type: 'whiteboard'; stroke: WhiteboardStroke }
  | { type: 'live'; from: string; data: unknown }
  | { type: 'room-updated'; data: unknown }
  /**
   * What the user may do changed (a Room change, seen after `EVT_ROOM_UPDATED` or a reconnect):
   * `permissions` is now in force, `previous` was.
   */
  | { type: 'permissions-changed'; permissions: Permissions; previous: Permissions }
  | { type: 'session-ended'; data: unknown }
  | { type: 'connection'; state: ConnectionState }
  /** The token was renewed (reconnects present it); keep it to join again after a reload. */
  | { type: 'token-renewed'; token: string };

/**
 * Refusals in a row, with no connection between, that make a kick: one alone may be a callout
 * that did not answer in time (a replica restarting), which the next try survives.
 */
export const REFUSALS_FOR_KICK = 2;

/** True when both allow exactly the same. */
export function samePermissions(a: Permissions, b: Permissions): boolean {
  const m = (p: Permissions) => [
    p.media?.canPublish,
    p.media?.canSubscribe,
    p.media?.canPublishData,
  ];
  return (
    a.chat === b.chat &&
    a.whiteboard === b.whiteboard &&
    a.moderator === b.moderator &&
    a.raiseHand === b.raiseHand &&
    m(a).every((x, i) => x === m(b)[i])
  );
}

/** Most points a stroke may carry (a whiteboard message stays far below the payload limit). */
export const MAX_STROKE_POINTS = 500;

/** Options of {@link Classroom.join}: those of {@link RoomClient.connect} without the ids. */
export type ClassroomOptions = Omit<RoomClientOptions, 'roomId' | 'userId' | 'listener'> & {
  /** Read from the token's `room` and `sub` claims when not given. */
  roomId?: string;
  userId?: string;
};

/** The room and user a room token names (its `room` and `sub` claims). */
export function tokenIdentity(token: string): { roomId: string; userId: string; exp?: number } {
  const c = decodeJwt<Partial<RoomTokenClaims>>(token);
  if (typeof c.room !== 'string' || typeof c.sub !== 'string')
    throw new RoomRequestError('BAD_REQUEST', 'token: no room or sub claim');
  return { roomId: c.room, userId: c.sub, ...(typeof c.exp === 'number' ? { exp: c.exp } : {}) };
}

/** True for a well-formed stroke (what arrives on the whiteboard subject is the sender's word). */
export function isStroke(v: unknown): v is Stroke {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Partial<Stroke>;
  return (
    typeof s.color === 'string' &&
    s.color.length <= 32 &&
    typeof s.width === 'number' &&
    Number.isFinite(s.width) &&
    Array.isArray(s.points) &&
    s.points.length <= MAX_STROKE_POINTS &&
    s.points.every(
      (p) =>
        Array.isArray(p) &&
        p.length === 2 &&
        p.every((n) => typeof n === 'number' && Number.isFinite(n)),
    )
  );
}

/**
 * A joined classroom. `Classroom.join(options)` connects, replays the room's history, asks for
 * the initial data and applies the broadcasts above its `snapshotSeq`; from then on `participants`
 * and `hands` are current and every change is an event to `on(listener)`.
 */
export class Classroom {
  readonly roomId: string;
  readonly userId: string;
  /** The snapshot this classroom started from. */
  readonly initial: InitialData;
  private readonly room: RoomState;
  private readonly listeners = new Set<(e: ClassroomEvent) => void>();
  private stateNow: ConnectionState = ConnectionState.Connected;
  private perms: Permissions;
  private refreshing = false;
  private refreshAgain = false;
  private reloading = false;

  private constructor(
    readonly client: RoomClient,
    initial: InitialData,
    ids: { roomId: string; userId: string },
  ) {
    this.roomId = ids.roomId;
    this.userId = ids.userId;
    this.initial = initial;
    this.perms = initial.me.permissions;
    this.room = new RoomState(initial);
  }

  /**
   * Connects and joins. Chat and whiteboard history are replayed from the room stream (`replay`
   * false starts after what this device saw last instead).
   * @throws RoomRequestError when the initial data is refused; a refused connection rejects with
   *   the transport's error (an `AuthorizationError` for a kicked user or an expired token)
   */
  static async join(o: ClassroomOptions & { replay?: boolean }): Promise<Classroom> {
    const ids = { ...tokenIdentity(o.token), ...pick(o) };
    const { replay, ...rest } = o;
    // Until the initial data is in, what arrives waits here (the history, however long, too).
    const early: RoomMessage[] = [];
    let deliver: (m: RoomMessage) => void = (m) => early.push(m);
    // A renewal before the classroom exists (its initial data still on the way) is told then.
    let renewed: string | undefined;
    let onRenewed: (token: string) => void = (t) => (renewed = t);
    const client = await RoomClient.connect({
      ...rest,
      roomId: ids.roomId,
      userId: ids.userId,
      // 0: everything the room stream still holds (a page keeps no history of its own).
      ...(replay !== false && o.resumeAfter === undefined ? { resumeAfter: 0 } : {}),
      listener: (m) => deliver(m),
      onTokenRenewed: (t) => {
        o.onTokenRenewed?.(t);
        onRenewed(t);
      },
    });
    let initial: InitialData;
    try {
      initial = await client.request(RequestEvent.InitialData);
    } catch (e) {
      await client.close({ leave: false });
      throw e;
    }
    const room = new Classroom(client, initial, ids);
    for (const m of early) room.receive(m);
    deliver = (m) => room.receive(m);
    onRenewed = (token) => room.emit({ type: 'token-renewed', token });
    if (renewed !== undefined) onRenewed(renewed);
    client.onLive((m: LiveMessage) => room.emit({ type: 'live', from: m.from, data: m.data }));
    void room.watch();
    return room;
  }

  /**
   * Who is in the room as far as this classroom knows, in the order they joined: everyone in a
   * small room; in a large one (`participantsPartial`) those the initial data listed, those that
   * joined since and the pages loaded.
   */
  get participants(): Participant[] {
    return this.room.participants();
  }

  /** How many members are present (the whole room, listed or not). */
  get participantCount(): number {
    return this.room.count;
  }

  /** True while `participants` may be a part of the room: page it with {@link loadAllParticipants}. */
  get participantsPartial(): boolean {
    return this.room.partial;
  }

  /**
   * One page of the participant list in join order (`cursor`: null for the first, then the last
   * page's `next`; `limit` 1 to 500), merged into `participants`.
   * @throws RoomRequestError `BAD_REQUEST` for a bad cursor or limit
   */
  async loadParticipants(
    o: RequestData<typeof RequestEvent.Participants> = {},
  ): Promise<ParticipantsPage> {
    const page = await this.client.request(RequestEvent.Participants, {
      cursor: o.cursor ?? null,
      ...(o.limit !== undefined ? { limit: o.limit } : {}),
    });
    this.room.mergePage(page);
    return page;
  }

  /**
   * Pages the whole participant list (a large room's: one request per {@link LOAD_ALL_PAGE});
   * afterwards `participants` is the room's and batches keep it so.
   */
  async loadAllParticipants(): Promise<Participant[]> {
    let cursor: string | null = null;
    let first: number | undefined;
    const seen = new Set<string>();
    do {
      const page: ParticipantsPage = await this.loadParticipants({ cursor, limit: LOAD_ALL_PAGE });
      first ??= page.snapshotSeq;
      for (const p of page.participants) seen.add(p.userId);
      cursor = page.next;
    } while (cursor !== null);
    this.room.dropUnlisted(seen, first ?? 0);
    return this.participants;
  }

  /** Raised hands, first raised first. */
  get hands(): Hand[] {
    return [...this.room.queue];
  }

  /** Chat messages and strokes received so far, in stream order. */
  get received(): readonly (ChatMessage | WhiteboardStroke)[] {
    return this.room.history;
  }

  /** What the user may do now: the initial data's, then each `permissions-changed`'s. */
  get permissions(): Permissions {
    return this.perms;
  }

  get state(): ConnectionState {
    return this.stateNow;
  }

  /** Listens to the classroom; returns a function that stops listening. */
  on(listener: (e: ClassroomEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends a chat message. */
  chat(text: string): Promise<void> {
    return this.client.chat(text);
  }

  /** Draws a stroke on the whiteboard (stored in the room stream, so late joiners see it). */
  async draw(stroke: Stroke): Promise<void> {
    if (!isStroke(stroke)) throw new RoomRequestError('BAD_REQUEST', 'not a stroke');
    await this.client.whiteboard(stroke);
  }

  /** Publishes a live update (a cursor, a presence heartbeat); not stored. */
  live(data: unknown): void {
    this.client.live(data);
  }

  raiseHand(note?: string): Promise<AnswerData<typeof RequestEvent.RaiseHand>> {
    return this.client.request(RequestEvent.RaiseHand, note ? { note } : {});
  }

  /** Lowers the user's own hand, or (moderators) another user's. */
  lowerHand(userId?: string): Promise<AnswerData<typeof RequestEvent.LowerHand>> {
    return this.client.request(RequestEvent.LowerHand, userId ? { userId } : {});
  }

  /**
   * Where and how to join the room's media (a LiveKit token for this user, its grants following
   * the role). Ask again before `expiresAt` for a fresh token.
   * @throws RoomRequestError `NOT_FOUND` when the workers have no media server
   */
  media(): Promise<MediaServerData> {
    return this.client.request(RequestEvent.MediaServerData);
  }

  /** Leaves the room (the others see it at once) and closes. */
  async leave(): Promise<void> {
    await this.client.close();
  }

  private receive(m: RoomMessage): void {
    for (const e of this.room.receive(m)) {
      this.emit(e);
      if (e.type === 'participants-stale' && !this.room.partial && !this.reloading) {
        this.reloading = true;
        void this.loadAllParticipants()
          .catch(() => undefined)
          .finally(() => (this.reloading = false));
      }
      if (e.type === 'session-ended') this.setState(ConnectionState.Ended);
      if (e.type === 'room-updated') this.refreshPermissions();
    }
  }

  /**
   * Asks the workers again what this user may do (after a Room change or a reconnect) and tells
   * listeners when it changed. The servers enforce rights whatever this says: a right taken away
   * closes the connection (the reconnect is admitted with the new rights); a right gained needs a
   * new admission too, so the classroom reconnects for it.
   */
  private refreshPermissions(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    void (async () => {
      do {
        this.refreshAgain = false;
        const next = await this.client
          .request(RequestEvent.InitialData)
          .then((d) => d.me.permissions)
          .catch(() => undefined);
        if (next === undefined || isFinalState(this.stateNow)) return;
        const previous = this.perms;
        if (samePermissions(previous, next)) continue;
        this.perms = next;
        this.emit({ type: 'permissions-changed', permissions: next, previous });
        if ((next.chat && !previous.chat) || (next.whiteboard && !previous.whiteboard))
          void this.client.nc.reconnect().catch(() => undefined);
      } while (this.refreshAgain);
    })().finally(() => (this.refreshing = false));
  }

  private emit(e: ClassroomEvent): void {
    for (const l of this.listeners) l(e);
  }

  private setState(s: ConnectionState): void {
    if (s === this.stateNow || isFinalState(this.stateNow)) return;
    this.stateNow = s;
    this.emit({ type: 'connection', state: s });
    // A final state closes: reconnecting would be refused again and again.
    if (isFinalState(s)) void this.client.close({ leave: false }).catch(() => undefined);
  }

  /**
   * Maps the transport's status to what the user sees. The server ending a connection whose JWT
   * expired is routine when the token was renewed meanwhile (the reconnect presents the new one),
   * and an expiry only when the current token has expired too. Refused reconnects
   * ({@link REFUSALS_FOR_KICK} in a row) mean the user was kicked (blocked), or the room is gone
   * (the end of a session is told by `EVT_SESSION_ENDED` before that).
   */
  private async watch(): Promise<void> {
    let refusals = 0;
    const expired = (): boolean => {
      const exp = tokenIdentity(this.client.currentToken).exp;
      return exp !== undefined && exp * 1000 <= Date.now();
    };
    for await (const s of this.client.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnecting')
        this.setState(ConnectionState.Reconnecting);
      else if (s.type === 'reconnect') {
        refusals = 0;
        this.setState(ConnectionState.Connected);
        // A Room change that took a right away closed the connection: see what is left.
        this.refreshPermissions();
      } else if (s.type === 'error' && s.error instanceof UserAuthenticationExpiredError) {
        if (expired()) this.setState(ConnectionState.Expired);
      } else if (s.type === 'error' && s.error instanceof AuthorizationError) {
        if (expired()) this.setState(ConnectionState.Expired);
        else if (++refusals >= REFUSALS_FOR_KICK) this.setState(ConnectionState.Kicked);
      }
    }
  }
}

/**
 * The room's state as a client keeps it: the snapshot of `REQ_INITIAL_DATA`, then every
 * broadcast above its `snapshotSeq` (those at or below it are already in the snapshot), and the
 * chat and whiteboard history. Pure: it only turns messages into state and events.
 */
export class RoomState {
  readonly snapshotSeq: number;
  readonly members = new Map<string, Participant>();
  queue: Hand[];
  readonly history: (ChatMessage | WhiteboardStroke)[] = [];
  /** Members present, listed or not. */
  count: number;
  /** The room stream sequence `count` is as of. */
  private countSeq: number;
  /** `members` may be a part of the room (a large room's initial data). */
  partial: boolean;
  /** The room stream sequence of each member's last join or departure applied. */
  private readonly changedSeq = new Map<string, number>();
  /** The number of the last presence batch applied. */
  private lastBatch: number | undefined;

  constructor(initial: InitialData) {
    this.snapshotSeq = initial.snapshotSeq;
    for (const p of initial.participants) this.members.set(p.userId, p);
    this.queue = [...initial.hands].sort(byRaisedAt);
    this.count = initial.participantCount ?? initial.participants.length;
    this.countSeq = initial.snapshotSeq;
    this.partial = initial.participantsPartial === true;
  }

  /** The members this state lists, in the order they joined (then by id). */
  participants(): Participant[] {
    return inJoinOrder([...this.members.values()]);
  }

  /**
   * Merges a `REQ_PARTICIPANTS` page: a member whose join or departure this state applied above
   * the page's sequence is newer than the page and stays as it is.
   */
  mergePage(page: ParticipantsPage): void {
    for (const p of page.participants)
      if ((this.changedSeq.get(p.userId) ?? 0) <= page.snapshotSeq) this.members.set(p.userId, p);
    if (page.snapshotSeq >= this.countSeq) {
      this.count = page.total;
      this.countSeq = page.snapshotSeq;
    }
  }

  /**
   * After a walk of every page that began at `seq`: members no page listed and no change above
   * `seq` brought are gone; the list is now whole.
   */
  dropUnlisted(listed: ReadonlySet<string>, seq: number): void {
    for (const userId of [...this.members.keys()])
      if (!listed.has(userId) && (this.changedSeq.get(userId) ?? 0) <= seq)
        this.members.delete(userId);
    this.partial = false;
  }

  /** Applies what arrived; returns what changed, for listeners. */
  receive(m: RoomMessage): ClassroomEvent[] {
    const out: ClassroomEvent[] = [];
    this.take(m, (e) => out.push(e));
    return out;
  }

  private take(m: RoomMessage, emit: (e: ClassroomEvent) => void): void {
    if (m.kind === 'chat' && m.from) {
      const b = m.body as { text?: unknown; at?: unknown };
      if (typeof b?.text !== 'string') return;
      const message: ChatMessage = {
        from: m.from,
        text: b.text,
        at: typeof b.at === 'string' ? b.at : '',
        seq: m.seq,
      };
      this.history.push(message);
      emit({ type: 'chat', message });
    } else if (m.kind === 'whiteboard' && m.from) {
      if (!isStroke(m.body)) return;
      const stroke: WhiteboardStroke = { ...m.body, from: m.from, seq: m.seq };
      this.history.push(stroke);
      emit({ type: 'whiteboard', stroke });
    } else if (m.kind === 'event' && m.seq > this.snapshotSeq) {
      // At or below snapshotSeq the snapshot already holds the broadcast's effect.
      this.apply(m.body as BroadcastMessage<Record<string, unknown>>, m.seq, emit);
    }
  }

  /** A large room's batch: its joins and departures, its count, and whether one was missed. */
  private applyBatch(d: Record<string, unknown>, seq: number, emit: (e: ClassroomEvent) => void) {
    const n = typeof d['n'] === 'number' ? d['n'] : undefined;
    const missed =
      d['truncated'] === true ||
      (n !== undefined && this.lastBatch !== undefined && n > this.lastBatch + 1);
    if (n !== undefined) this.lastBatch = n;
    for (const userId of Array.isArray(d['left']) ? d['left'] : []) {
      if (typeof userId !== 'string') continue;
      this.changedSeq.set(userId, seq);
      if (this.members.delete(userId)) emit({ type: 'participant-left', userId });
    }
    for (const j of Array.isArray(d['joined']) ? d['joined'] : []) {
      const p = participantFrom(j as Record<string, unknown> | null, '');
      if (!p) continue;
      this.changedSeq.set(p.userId, seq);
      this.members.set(p.userId, p);
      emit({ type: 'participant-joined', participant: p });
    }
    if (typeof d['present'] === 'number' && seq >= this.countSeq) {
      this.count = d['present'];
      this.countSeq = seq;
      emit({ type: 'participant-count', count: this.count });
    }
    if (missed) emit({ type: 'participants-stale' });
  }

  private apply(
    b: BroadcastMessage<Record<string, unknown>>,
    seq: number,
    emit: (e: ClassroomEvent) => void,
  ): void {
    const d = b.data ?? {};
    const userId = typeof d['userId'] === 'string' ? d['userId'] : undefined;
    switch (b.event) {
      case Broadcast.ParticipantJoined: {
        const p = participantFrom(d, b.at);
        if (!p) return;
        this.changedSeq.set(p.userId, seq);
        if (!this.members.has(p.userId)) this.count++;
        this.countSeq = Math.max(this.countSeq, seq);
        this.members.set(p.userId, p);
        emit({ type: 'participant-joined', participant: p });
        return;
      }
      case Broadcast.ParticipantLeft:
        if (!userId) return;
        this.changedSeq.set(userId, seq);
        if (this.members.delete(userId)) this.count = Math.max(0, this.count - 1);
        this.countSeq = Math.max(this.countSeq, seq);
        emit({ type: 'participant-left', userId });
        return;
      case Broadcast.PresenceBatch:
        this.applyBatch(d, seq, emit);
        return;
      case Broadcast.HandRaised: {
        if (!userId) return;
        const hand: Hand = {
          userId,
          raisedAt: typeof d['raisedAt'] === 'string' ? d['raisedAt'] : b.at,
          note: typeof d['note'] === 'string' ? d['note'] : '',
        };
        this.queue = [...this.queue.filter((h) => h.userId !== userId), hand].sort(byRaisedAt);
        emit({ type: 'hand-raised', hand });
        return;
      }
      case Broadcast.HandLowered:
        if (!userId) return;
        this.queue = this.queue.filter((h) => h.userId !== userId);
        emit({
          type: 'hand-lowered',
          userId,
          by: typeof d['by'] === 'string' ? d['by'] : userId,
        });
        return;
      case Broadcast.RoomUpdated:
        emit({ type: 'room-updated', data: d });
        return;
      case Broadcast.SessionEnded:
        emit({ type: 'session-ended', data: d });
        return;
      default:
        return; // a broadcast of a newer server: nothing to apply
    }
  }
}

/** A participant from a broadcast's data; undefined without a user id. */
function participantFrom(d: Record<string, unknown> | null, at: string): Participant | undefined {
  const userId = d?.['userId'];
  if (!d || typeof userId !== 'string') return undefined;
  return {
    userId,
    name: typeof d['name'] === 'string' ? d['name'] : userId,
    role: typeof d['role'] === 'string' ? d['role'] : 'unknown',
    since: typeof d['since'] === 'string' ? d['since'] : at,
  };
}

const byRaisedAt = (a: Hand, b: Hand): number =>
  a.raisedAt.localeCompare(b.raisedAt) || a.userId.localeCompare(b.userId);

function pick(o: { roomId?: string; userId?: string }): { roomId?: string; userId?: string } {
  return {
    ...(o.roomId !== undefined ? { roomId: o.roomId } : {}),
    ...(o.userId !== undefined ? { userId: o.userId } : {}),
  };
}
