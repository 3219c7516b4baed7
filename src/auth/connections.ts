/**
 * The per-user connection cap. A user's live connections are those its presence record lists,
 * plus the admissions this replica made that presence does not show yet (a CONNECT event reaches
 * presence after the callout answered). An admission is matched to presence by the connection's
 * `(server, cid)`, which the server's request names and presence records: once presence lists it
 * (open or lately closed), it is no longer counted twice; one presence never shows (the connection
 * failed after admission) stops counting after the admission TTL.
 *
 * Bound: with N callout replicas, a user has at most N × cap connections while presence lags (each
 * replica sees only its own pending admissions), and no admission at all once presence lists cap
 * connections. When presence stops confirming (no worker running), each replica admits at most
 * cap per admission TTL.
 */
import { MAX_DEVICES_PER_USER } from '../infra/streams.js';
import { presenceKey, type PresenceRecord } from '../domain/presence.js';

/**
 * Default cap on one user's connections to one room: one per device
 * ({@link MAX_DEVICES_PER_USER}) and as many again, for a second tab or a reconnect that overlaps
 * the connection it replaces before the server noticed that one gone.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_USER = 2 * MAX_DEVICES_PER_USER;
/** Users with pending admissions remembered at most; past it, expired entries are swept. */
const MAX_TRACKED_USERS = 100_000;

interface Pending {
  server: string | undefined;
  cid: number | undefined;
  until: number;
}

export class ConnectionCounter {
  /** Admissions presence has not shown yet, by presence key. */
  private readonly pending = new Map<string, Pending[]>();

  constructor(
    private readonly presence: (roomId: string, userId: string) => PresenceRecord | undefined,
    private readonly ttlMs: number,
  ) {}

  /** The user's live connections as far as this replica knows. */
  count(roomId: string, userId: string, now: number): number {
    const r = this.presence(roomId, userId);
    return (r?.connections.length ?? 0) + this.unseen(roomId, userId, r, now).length;
  }

  /**
   * Counts an admission for `(server, cid)` until presence shows it; returns the function that
   * takes it back (the admission failed after all).
   */
  add(
    roomId: string,
    userId: string,
    server: string | undefined,
    cid: number | undefined,
    now: number,
  ): () => void {
    const key = presenceKey(roomId, userId);
    if (!this.pending.has(key) && this.pending.size >= MAX_TRACKED_USERS) this.sweep(now);
    const entry: Pending = { server, cid, until: now + this.ttlMs };
    const list = this.pending.get(key);
    if (list) list.push(entry);
    else this.pending.set(key, [entry]);
    return () => {
      const l = this.pending.get(key);
      const i = l?.indexOf(entry) ?? -1;
      if (l && i >= 0) l.splice(i, 1);
      if (l?.length === 0) this.pending.delete(key);
    };
  }

  /** The user's pending admissions not yet in presence, pruning the others. */
  private unseen(
    roomId: string,
    userId: string,
    r: PresenceRecord | undefined,
    now: number,
  ): Pending[] {
    const key = presenceKey(roomId, userId);
    const list = this.pending.get(key);
    if (!list) return [];
    const shown = (p: Pending): boolean =>
      r !== undefined &&
      p.server !== undefined &&
      p.cid !== undefined &&
      [...r.connections, ...(r.closed ?? [])].some((c) => c.server === p.server && c.cid === p.cid);
    const left = list.filter((p) => p.until > now && !shown(p));
    if (left.length === 0) this.pending.delete(key);
    else this.pending.set(key, left);
    return left;
  }

  private sweep(now: number): void {
    for (const [key, list] of this.pending) {
      const left = list.filter((p) => p.until > now);
      if (left.length === 0) this.pending.delete(key);
      else this.pending.set(key, left);
    }
    if (this.pending.size >= MAX_TRACKED_USERS) this.pending.clear();
  }
}
