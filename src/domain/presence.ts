/**
 * Presence records in KV `torii_presence` (docs/worker.md), key `{roomId}.{userId}`. The tracker
 * writes them; the callout reads them to enforce `maxParticipants`; workers serve them as the
 * participant list.
 */
import { isValidId } from '../protocol/ids.js';

export const PresenceState = { Online: 'online', Away: 'away', Left: 'left' } as const;
export type PresenceState = (typeof PresenceState)[keyof typeof PresenceState];

/** One NATS connection of a user, unique as `(server, cid)`. */
interface PresenceConnection {
  server: string;
  cid: number;
  since: string;
}

/** A user's presence in one room. */
export interface PresenceRecord {
  roomId: string;
  userId: string;
  state: PresenceState;
  connections: PresenceConnection[];
  role?: string;
  name?: string;
  /** When the user first joined this session (ISO-8601). */
  since: string;
  /** When the state last changed (ISO-8601). */
  changedAt: string;
  /** When the last connection closed without a clean close (state `away`). */
  awayAt?: string;
  /** The user said it is leaving (`REQ_LEAVE`): its last connection closing means left, not away. */
  leaving?: boolean;
  /**
   * When a `REQ_LEAVE` last made the user leave at once (ISO-8601). Within the leave window after
   * it, another `REQ_LEAVE` is not honoured: the departure takes the grace period, and a rejoin
   * within it announces nothing. This bounds the joined/left broadcasts of a connect-and-leave loop.
   */
  leftAt?: string;
  /** Connections that closed lately (see {@link MAX_CLOSED_REMEMBERED}). */
  closed?: ConnectionRef[];
  /**
   * The seat change this record made (a join, a departure) is announced in the room's presence
   * batch, not by a broadcast of its own: the room was large when it was stored
   * (src/domain/presence-batch.ts). Decided once, by the writer, so every replica agrees.
   */
  batched?: boolean;
  /** Written by earlier versions once the consumer was deleted; no longer written. */
  consumerDeleted?: boolean;
}

/** `{roomId}.{userId}` */
export const presenceKey = (roomId: string, userId: string): string => `${roomId}.${userId}`;

/** Parses a presence record; undefined when malformed. */
export function parsePresence(data: unknown): PresenceRecord | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const r = data as Partial<PresenceRecord>;
  if (!isValidId(r.roomId) || !isValidId(r.userId)) return undefined;
  if (r.state !== 'online' && r.state !== 'away' && r.state !== 'left') return undefined;
  if (!Array.isArray(r.connections)) return undefined;
  return r as PresenceRecord;
}

/** A user counts towards `maxParticipants` until it has left. */
export const occupiesSeat = (r: PresenceRecord): boolean => r.state !== PresenceState.Left;

/** A NATS connection, unique as `(server, cid)`. */
export interface ConnectionRef {
  server: string;
  cid: number;
}

/**
 * Closed connections remembered per user. Events of one connection can arrive out of order (the
 * queue group hands CONNECT and DISCONNECT to different replicas): a CONNECT for a connection
 * already closed is recognised by this list and ignored, so it cannot leave a ghost online.
 */
export const MAX_CLOSED_REMEMBERED = 16;

/** What happened to a user's presence, in the tracker's words. */
export type PresenceEvent =
  | {
      type: 'connect';
      conn: ConnectionRef;
      at: string;
      /** Role and display name for a user who was not in the room (from the callout's record). */
      role?: string;
      name?: string;
    }
  | { type: 'disconnect'; conn: ConnectionRef; at: string }
  /** Connections found gone without their own event: a server shut down or died, or CONNZ. */
  | { type: 'gone'; conns: ConnectionRef[]; at: string }
  /**
   * `REQ_LEAVE`: the last connection closing means left, not away; not honoured within
   * `windowMs` of the last departure it made immediate ({@link PresenceRecord.leftAt}).
   */
  | { type: 'leave_requested'; at: string; windowMs: number }
  /** The grace period that began at `awayAt` is over. */
  | { type: 'grace_over'; awayAt: string; at: string };

/** The outcome of one event: the record to write (undefined: nothing changes) and what to announce. */
interface PresenceTransition {
  next: PresenceRecord | undefined;
  joined: boolean;
  left: boolean;
}

const sameConn = (a: ConnectionRef, b: ConnectionRef): boolean =>
  a.server === b.server && a.cid === b.cid;

const NO_CHANGE: PresenceTransition = { next: undefined, joined: false, left: false };

function remember(closed: ConnectionRef[] | undefined, conns: ConnectionRef[]): ConnectionRef[] {
  const out = (closed ?? []).filter((c) => !conns.some((x) => sameConn(c, x)));
  for (const c of conns) out.push({ server: c.server, cid: c.cid });
  return out.slice(-MAX_CLOSED_REMEMBERED);
}

/**
 * The presence state machine: the record after `ev`, given the record before it (undefined when
 * the user has none). Pure; the tracker feeds it under compare-and-set, so replicas that see the
 * events of one user in different orders still agree.
 *
 * online → (last connection closed) → away → (grace over) → left; with `leaving` set, or when
 * the record was not in, the last connection closing means left at once.
 */
export function applyPresence(
  prev: PresenceRecord | undefined,
  roomId: string,
  userId: string,
  ev: PresenceEvent,
): PresenceTransition {
  switch (ev.type) {
    case 'leave_requested':
      if (!prev || prev.leaving || prev.state === PresenceState.Left) return NO_CHANGE;
      if (prev.leftAt !== undefined && Date.parse(ev.at) - Date.parse(prev.leftAt) < ev.windowMs)
        return NO_CHANGE;
      return { next: { ...prev, leaving: true }, joined: false, left: false };
    case 'grace_over': {
      if (prev?.state !== PresenceState.Away || prev.awayAt !== ev.awayAt) return NO_CHANGE;
      const next: PresenceRecord = { ...prev, state: PresenceState.Left, changedAt: ev.at };
      delete next.awayAt;
      delete next.leaving;
      return { next, joined: false, left: true };
    }
    case 'connect': {
      if (prev?.closed?.some((c) => sameConn(c, ev.conn))) return NO_CHANGE; // it closed already
      const others = (prev?.connections ?? []).filter((c) => !sameConn(c, ev.conn));
      return withConnections(prev, roomId, userId, [...others, { ...ev.conn, since: ev.at }], ev);
    }
    case 'disconnect':
    case 'gone': {
      const closed = ev.type === 'disconnect' ? [ev.conn] : ev.conns;
      const conns = (prev?.connections ?? []).filter((c) => !closed.some((x) => sameConn(c, x)));
      if (!prev) {
        if (ev.type === 'gone') return NO_CHANGE;
        // The DISCONNECT came first: keep the connection's end, so its CONNECT changes nothing.
        const next: PresenceRecord = {
          roomId,
          userId,
          state: PresenceState.Left,
          connections: [],
          since: ev.at,
          changedAt: ev.at,
          closed: remember(undefined, closed),
        };
        return { next, joined: false, left: false };
      }
      const t = withConnections(prev, roomId, userId, conns, ev);
      const base = t.next ?? prev;
      const next = { ...base, closed: remember(base.closed, closed) };
      return JSON.stringify(next) === JSON.stringify(prev) ? NO_CHANGE : { ...t, next };
    }
  }
}

function withConnections(
  prev: PresenceRecord | undefined,
  roomId: string,
  userId: string,
  conns: PresenceConnection[],
  ev: PresenceEvent & { at: string },
): PresenceTransition {
  const wasIn = prev !== undefined && prev.state !== PresenceState.Left;
  let next: PresenceRecord;
  if (conns.length > 0) {
    const role = wasIn ? prev.role : ev.type === 'connect' ? (ev.role ?? prev?.role) : prev?.role;
    const name = wasIn ? prev.name : ev.type === 'connect' ? (ev.name ?? prev?.name) : prev?.name;
    next = {
      ...(prev ?? {}),
      roomId,
      userId,
      connections: conns,
      state: PresenceState.Online,
      since: wasIn ? prev.since : ev.at,
      changedAt: wasIn && prev.state === PresenceState.Online ? prev.changedAt : ev.at,
      name: name ?? userId,
    };
    if (role !== undefined) next.role = role;
    delete next.awayAt;
    delete next.consumerDeleted;
    // A leave announced by one tab does not outlive it while other tabs stay.
    if ((prev?.connections.length ?? 0) > conns.length) delete next.leaving;
  } else {
    if (!prev || !wasIn) return NO_CHANGE; // nothing was open
    const leaving = prev.leaving === true;
    next = { ...prev, connections: [], changedAt: ev.at };
    delete next.leaving;
    if (leaving) {
      next.state = PresenceState.Left;
      next.leftAt = ev.at;
      delete next.awayAt;
    } else {
      next.state = PresenceState.Away;
      next.awayAt = prev.awayAt ?? ev.at;
    }
  }
  if (prev && JSON.stringify(prev) === JSON.stringify(next)) return NO_CHANGE;
  return {
    next,
    joined: !wasIn && next.state === PresenceState.Online,
    left: wasIn && next.state === PresenceState.Left,
  };
}
