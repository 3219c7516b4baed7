/**
 * Lecture halls: in a room with more than {@link DEFAULT_LARGE_ROOM_THRESHOLD} members present,
 * joins and departures are not broadcast one by one (n joins would cost every member n
 * messages, O(n²) deliveries in all) but coalesced into one `EVT_PRESENCE_BATCH` per room per
 * {@link DEFAULT_PRESENCE_BATCH_INTERVAL_MS}, and the initial data carries counts and the
 * participants that matter rather than everyone; the full list is paged with
 * `REQ_PARTICIPANTS` (docs/decisions.md, "Lecture halls"). Pure functions: the worker feeds them.
 */
import { isValidId } from '../protocol/ids.js';
import type { AnswerData, BroadcastData, Participant } from '../protocol/messages.js';
import { MAX_CURSOR_LENGTH, MAX_PARTICIPANTS_PAGE } from '../protocol/limits.js';
import { occupiesSeat, type PresenceRecord } from './presence.js';

/**
 * Members present above which a room's presence changes are coalesced (`--large-room-threshold`
 * of `torii worker`). Rooms at or below it keep one broadcast per join and departure.
 */
export const DEFAULT_LARGE_ROOM_THRESHOLD = 50;
/**
 * Least time between two presence batches of one room, in milliseconds
 * (`--presence-batch-interval`): a member receives at most one batch per interval, whatever the
 * number of joins and departures.
 */
export const DEFAULT_PRESENCE_BATCH_INTERVAL_MS = 1_000;
/** Joins and departures a batch lists by name, at most; past it, it only counts them. */
export const PRESENCE_BATCH_MAX_LISTED = 200;
/**
 * Largest batch, in bytes of its listed entries: below the smallest `history.maxMessageSize` of a
 * room that can hold more than {@link DEFAULT_LARGE_ROOM_THRESHOLD} members (32 KiB).
 */
export const PRESENCE_BATCH_MAX_BYTES = 24 * 1024;
/** Most recently joined participants the initial data of a large room lists. */
const INITIAL_DATA_RECENT = 50;
/** Participants per `REQ_PARTICIPANTS` page when the request names no limit. */
const DEFAULT_PARTICIPANTS_PAGE = 100;
/** A participant as the initial data, pages and batches carry it (the wire contract's). */
export type ParticipantEntry = Participant;

/** A participant entry of a presence record. */
export const participantOf = (p: PresenceRecord): ParticipantEntry => ({
  userId: p.userId,
  name: p.name ?? p.userId,
  role: p.role ?? 'unknown',
  since: p.since,
});

/**
 * A join time as text that sorts as the time does: nats-server writes its CONNECT times (RFC 3339)
 * with only the fractional digits it needs, none on the second, so "…00Z" would sort after
 * "…00.5Z"; here every UTC time gets nine fractional digits. Other forms are left as they are.
 */
function joinedKey(since: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(since);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z` : since;
}

/** Participants in the order they joined (then by id): the order pages walk. */
export const byJoined = (a: ParticipantEntry, b: ParticipantEntry): number =>
  joinedKey(a.since).localeCompare(joinedKey(b.since)) || a.userId.localeCompare(b.userId);

/**
 * `list` in join order ({@link byJoined}), sorted in place: the one participant list the answers
 * and the endpoints give. Each time is made comparable once, not at every comparison: a lecture
 * hall's list is sorted at every page and every initial data.
 */
export function inJoinOrder<T extends ParticipantEntry>(list: T[]): T[] {
  const keys = new Map<T, string>();
  for (const p of list) keys.set(p, joinedKey(p.since));
  return list.sort(
    (a, b) =>
      (keys.get(a) ?? '').localeCompare(keys.get(b) ?? '') || a.userId.localeCompare(b.userId),
  );
}

/** True when a room with `present` members has its presence changes coalesced. */
export const isLargeRoom = (present: number, threshold: number): boolean => present > threshold;

/**
 * Whether a change of a presence record took or gave up a seat: `joined` when the user now
 * occupies a seat it did not, `left` when it gave one up (a deleted record that held one too).
 */
export function seatChange(
  prev: PresenceRecord | undefined,
  next: PresenceRecord | undefined,
): 'joined' | 'left' | undefined {
  const was = prev !== undefined && occupiesSeat(prev);
  const is = next !== undefined && occupiesSeat(next);
  return was === is ? undefined : is ? 'joined' : 'left';
}

/** One user's latest seat change not yet broadcast, at a presence bucket revision. */
export interface PendingChange {
  /** Revision of the presence record that made the change (the bucket's stream sequence). */
  rev: number;
  /** The user is present after it (a join), or not (a departure). */
  entry: ParticipantEntry;
  present: boolean;
}

/**
 * What a room's batches have covered, stored per room in `torii_room_state` and moved with
 * compare-and-set, so that of several worker replicas one emits each batch.
 */
export interface BatchMark {
  /** The presence bucket revision through which changes were broadcast. */
  throughRev: number;
  /** When the last batch was emitted (epoch milliseconds). */
  at: number;
  /** Number of the last batch (1 for the first). */
  n: number;
}

/** Parses a batch mark; undefined when malformed. */
export function parseBatchMark(data: unknown): BatchMark | undefined {
  const m = data as Partial<BatchMark> | null;
  if (typeof m !== 'object' || m === null) return undefined;
  const ok = [m.throughRev, m.at, m.n].every((x) => typeof x === 'number' && Number.isFinite(x));
  return ok ? (m as BatchMark) : undefined;
}

/**
 * The mark to write for a batch through revision `high` at `now`, or undefined when none is due:
 * nothing above the mark's revision, or the room had its batch less than `intervalMs` ago.
 */
export function nextBatchMark(
  cur: BatchMark | undefined,
  high: number,
  now: number,
  intervalMs: number,
): BatchMark | undefined {
  if (cur && high <= cur.throughRev) return undefined;
  if (cur && now - cur.at < intervalMs) return undefined;
  return { throughRev: high, at: now, n: (cur?.n ?? 0) + 1 };
}

/**
 * The data of `EVT_PRESENCE_BATCH` (the wire contract's): `n` numbers the room's batches
 * (consecutive; a gap means one was missed); `joined` and `left` list who joined (and is still
 * present) and who left since the last batch, as far as listed; `joinedCount` and `leftCount`
 * count them all; `present` is the members present when it was made; `truncated` is true when
 * some are counted but not listed (page the list again).
 */
type PresenceBatchData = BroadcastData<'EVT_PRESENCE_BATCH'>;

/**
 * The batch of the pending changes with a revision in (`after`, `through`], listed up to
 * {@link PRESENCE_BATCH_MAX_LISTED} entries and {@link PRESENCE_BATCH_MAX_BYTES}, departures
 * first (they are small, and a stale member is worse than a missing one).
 */
export function buildBatch(
  pending: Iterable<PendingChange>,
  after: number,
  through: number,
  o: { n: number; present: number; maxListed?: number; maxBytes?: number },
): PresenceBatchData {
  const maxListed = o.maxListed ?? PRESENCE_BATCH_MAX_LISTED;
  const maxBytes = o.maxBytes ?? PRESENCE_BATCH_MAX_BYTES;
  const covered = [...pending].filter((c) => c.rev > after && c.rev <= through);
  covered.sort((a, b) => a.rev - b.rev);
  const leaving = covered.filter((c) => !c.present);
  const joining = covered.filter((c) => c.present);
  const out: PresenceBatchData = {
    n: o.n,
    joined: [],
    left: [],
    joinedCount: joining.length,
    leftCount: leaving.length,
    present: o.present,
    truncated: false,
  };
  let bytes = 0;
  let listed = 0;
  for (const c of [...leaving, ...joining]) {
    const size = c.present ? JSON.stringify(c.entry).length + 1 : c.entry.userId.length + 3;
    if (listed >= maxListed || bytes + size > maxBytes) {
      out.truncated = true;
      break;
    }
    listed++;
    bytes += size;
    if (c.present) out.joined.push(c.entry);
    else out.left.push(c.entry.userId);
  }
  return out;
}

/**
 * Drops the pending changes at or below revision `through` (broadcast, by this replica or
 * another); returns whether any remain.
 */
export function prunePending(pending: Map<string, PendingChange>, through: number): boolean {
  for (const [userId, c] of pending) if (c.rev <= through) pending.delete(userId);
  return pending.size > 0;
}

/**
 * The participants the initial data of a large room lists: moderators, those with a raised
 * hand, and the {@link INITIAL_DATA_RECENT} who joined last; in join order.
 */
export function relevantParticipants(
  all: readonly ParticipantEntry[],
  o: { moderatorRoles: ReadonlySet<string>; hands: ReadonlySet<string>; recent?: number },
): ParticipantEntry[] {
  const sorted = inJoinOrder([...all]);
  const recent = new Set(sorted.slice(-(o.recent ?? INITIAL_DATA_RECENT)).map((p) => p.userId));
  return sorted.filter(
    (p) => recent.has(p.userId) || o.moderatorRoles.has(p.role) || o.hands.has(p.userId),
  );
}

/** A `REQ_PARTICIPANTS` request the worker cannot serve: its message says which field and why. */
export class PageRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PageRequestError';
  }
}

/** A page of participants and where the next one starts (`next`: null after the last). */
type ParticipantsPage = Omit<AnswerData<'REQ_PARTICIPANTS'>, 'snapshotSeq'>;

/** The cursor that continues after `p`: `{since}|{userId}`. */
export const cursorAfter = (p: ParticipantEntry): string => `${p.since}|${p.userId}`;

/**
 * Checks a `REQ_PARTICIPANTS` request's data: `cursor` (absent or null for the first page, else
 * a page's `next`) and `limit` (1 to {@link MAX_PARTICIPANTS_PAGE}).
 * @throws PageRequestError naming the field
 */
export function checkPageRequest(data: Record<string, unknown>): {
  after: { since: string; userId: string } | undefined;
  limit: number;
} {
  const { cursor, limit } = data;
  let n = DEFAULT_PARTICIPANTS_PAGE;
  if (limit !== undefined) {
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1)
      throw new PageRequestError(`limit: an integer from 1 to ${MAX_PARTICIPANTS_PAGE}`);
    if (limit > MAX_PARTICIPANTS_PAGE)
      throw new PageRequestError(
        `limit: ${limit} is more than the ${MAX_PARTICIPANTS_PAGE} participants a page may hold`,
      );
    n = limit;
  }
  if (cursor === undefined || cursor === null) return { after: undefined, limit: n };
  const bad = (): PageRequestError =>
    new PageRequestError("cursor: the 'next' of a previous REQ_PARTICIPANTS answer, or null");
  if (typeof cursor !== 'string' || cursor.length > MAX_CURSOR_LENGTH) throw bad();
  const bar = cursor.indexOf('|');
  const since = cursor.slice(0, bar);
  const userId = cursor.slice(bar + 1);
  if (bar <= 0 || !isValidId(userId) || Number.isNaN(Date.parse(since))) throw bad();
  return { after: { since, userId }, limit: n };
}

/**
 * One page of `all` in join order: the first `limit` after `after` (the request's cursor), at
 * most `maxBytes` of JSON (the room stream's largest message holds the answer), at least one.
 */
export function pageOf(
  all: readonly ParticipantEntry[],
  after: { since: string; userId: string } | undefined,
  limit: number,
  maxBytes = Number.POSITIVE_INFINITY,
): ParticipantsPage {
  const sorted = inJoinOrder([...all]);
  const start = after
    ? sorted.findIndex((p) => byJoined(p, { ...after, name: '', role: '' }) > 0)
    : 0;
  const from = start < 0 ? sorted.length : start;
  const participants: ParticipantEntry[] = [];
  let bytes = 0;
  for (const p of sorted.slice(from, from + limit)) {
    bytes += JSON.stringify(p).length + 1;
    if (participants.length > 0 && bytes > maxBytes) break;
    participants.push(p);
  }
  const last = participants.at(-1);
  const more = from + participants.length < sorted.length;
  return {
    participants,
    next: more && last ? cursorAfter(last) : null,
    total: sorted.length,
  };
}
