/**
 * The room stream's republished copies (`room.{roomId}.rp.…`): how a device tells a copy from
 * anything else that lands on those subjects, and reads the stream position it carries. Pure
 * functions, shared by the SDK and its tests; nothing Node-only.
 *
 * Why last-wins: the server stores the headers a publisher sent and, on republish, appends its
 * own `Nats-Stream`, `Nats-Subject` and `Nats-Sequence` after them (nats-server
 * `processJetStreamMsg`). A member who sends a chat with a forged `Nats-Sequence` therefore puts
 * the forged value first in every copy. A reader that took the first value would jump its
 * position past the forgery and drop everything after it as already seen: one student could
 * silence the room for everyone. The server's own values are always the last ones: it keeps the
 * publisher's block as it came, even one with an empty line before its end, and appends its lines
 * after that. So the last complete line of each name counts, wherever empty lines are; the
 * readers here search the block from its end.
 */
import { parseRoomSubject, RoomSubjectKind, unrepublishedSubject } from '../protocol/subjects.js';
import type { ReceivedMessage } from './live.js';

/** The stream position a republished copy carries (the server's values: the last of each). */
export interface StreamHeaders {
  stream?: string;
  subject?: string;
  sequence?: string;
}

/** A room stream message as the stream republished it. */
interface Republished {
  /** The subject the message was stored under (`room.{roomId}.chat.{userId}`, …). */
  subject: string;
  /** Its sequence in the room stream. */
  seq: number;
  kind: RoomSubjectKind;
  /** The sender (chat, whiteboard) or the recipient (answers). */
  userId?: string;
}

/** What a republish carries, transport-neutral. */
interface ReceivedRepublish extends ReceivedMessage {
  /** The stream headers, when the message had a header block. */
  stream?: StreamHeaders;
}

const HEADER_NAMES = {
  stream: 'Nats-Stream',
  subject: 'Nats-Subject',
  sequence: 'Nats-Sequence',
} as const satisfies Record<keyof StreamHeaders, string>;
type HeaderField = keyof typeof HEADER_NAMES;

/** Every header block starts with this version line (a status code may follow it). */
const VERSION_LINE = bytesOf('NATS/1.0');
// The bytes the readers below test are written as numbers in the loops (13 CR, 10 LF, 58 `:`,
// 32 space, 9 tab, 48 `0`, 78 `N`): a module constant is a context load and a check per byte
// there, and those loops run over every message a device receives (bench/fanout).
const TEXT = new TextDecoder();

/**
 * The UTF-8 bytes of `s`, as a plain array: what the readers compare message bytes with. An
 * element of a plain array of small integers costs less to read than one of a typed array.
 */
function bytesOf(s: string): readonly number[] {
  return Array.from(new TextEncoder().encode(s));
}
const NAME_BYTES = {
  stream: bytesOf(HEADER_NAMES.stream),
  subject: bytesOf(HEADER_NAMES.subject),
  sequence: bytesOf(HEADER_NAMES.sequence),
} as const satisfies Record<HeaderField, readonly number[]>;

/**
 * True when the line at `at` (before `end`) is a header named exactly `name` (`name:` starts
 * it), its first 6 bytes (`Nats-S`, as all three names start) known to match already.
 */
function named(b: Uint8Array, at: number, end: number, name: readonly number[]): boolean {
  const n = name.length;
  if (at + n >= end || b[at + n] !== 58) return false;
  for (let i = 6; i < n; i++) if (b[at + i] !== name[i]) return false;
  return true;
}

/** True when `a` and `b` hold the same bytes. */
function sameBytes(a: Uint8Array, b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Where the last value of each stream header starts in the block {@link scanStreamHeaders} read
 * last (just after the name's colon; -1 when absent). Plain numbers, not an object: that scan
 * runs on every message a device receives and allocates nothing.
 */
let streamAt = -1;
let subjectAt = -1;
let sequenceAt = -1;

/**
 * Reads the raw NATS header block `b[0, end)` (`NATS/1.0\r\nName: value\r\n…\r\n\r\n`): for each
 * of the three names, where the value of the last complete line (ended by CRLF) with exactly
 * that name starts ({@link streamAt}, …). Empty lines are skipped; the line before the first
 * CRLF is the version line. False when the block is not a header block.
 *
 * From the end backwards: the server's own lines are the last ones of the block, so they are read
 * first and the scan stops there, before anything a publisher wrote. A publisher's block may hold
 * an empty line before its end, which the server keeps when it appends its lines after it: a
 * reader that stopped at the first empty line would take the forged values in front of it.
 * Bytes only: no text is decoded, nothing is allocated.
 */
function scanStreamHeaders(b: Uint8Array, end: number): boolean {
  if (end < VERSION_LINE.length) return false;
  for (let i = 0; i < VERSION_LINE.length; i++) if (b[i] !== VERSION_LINE[i]) return false;
  let lf = end - 1; // the LF of the last CRLF: a line that starts after it is not complete
  while (lf > 0 && !(b[lf] === 10 && b[lf - 1] === 13)) lf--;
  if (lf <= 0) return false; // no line ends: not a header block
  let stream = -1;
  let subject = -1;
  let sequence = -1;
  const shift = SHIFT;
  // Windows b[i, i + 8) from the end backwards, each compared with `\r\nNats-S` (13 10 N a t s
  // - S); the line starts at i + 2, at the last CR at the latest. The first CRLF ends the version
  // line, which is 8 bytes at least.
  for (let i = Math.min(lf - 3, end - 8), missing = 3; i >= 8;) {
    if (
      b[i] === 13 &&
      b[i + 1] === 10 &&
      b[i + 2] === 78 &&
      b[i + 3] === 97 &&
      b[i + 4] === 116 &&
      b[i + 5] === 115 &&
      b[i + 6] === 45 &&
      b[i + 7] === 83
    ) {
      // `Nats-S` matched: which name, if any, from the byte after it; the rest of it, and the
      // colon, compared byte by byte
      const at = i + 2;
      const c = b[i + 8];
      if (c === 101 /* e */) {
        if (sequence < 0 && named(b, at, end, NAME_BYTES.sequence)) {
          sequence = at + 14; // past `Nats-Sequence:`
          missing--;
        }
      } else if (c === 117 /* u */) {
        if (subject < 0 && named(b, at, end, NAME_BYTES.subject)) {
          subject = at + 13; // past `Nats-Subject:`
          missing--;
        }
      } else if (c === 116 /* t */) {
        if (stream < 0 && named(b, at, end, NAME_BYTES.stream)) {
          stream = at + 12; // past `Nats-Stream:`
          missing--;
        }
      }
      if (missing === 0) break;
      i -= 8; // the pattern cannot overlap itself: its CR is its only one
    } else {
      i -= shift[b[i] as number] as number;
    }
  }
  streamAt = stream;
  subjectAt = subject;
  sequenceAt = sequence;
  return true;
}

/**
 * How far the search of {@link scanStreamHeaders} moves left from a window b[i, i + 8) that is
 * not `\r\nNats-S` (Horspool's rule, backwards): to the next window in which the byte b[i] could
 * be where the pattern has it, that is by the first position j ≥ 1 of that byte in the pattern,
 * or by 8 when the pattern has it nowhere after its start. Header text is mostly bytes the
 * pattern lacks, so most steps skip 8 bytes.
 */
const SHIFT = ((): readonly number[] => {
  const pattern = bytesOf('\r\nNats-S');
  const t = new Array<number>(256).fill(pattern.length);
  for (let j = pattern.length - 1; j >= 1; j--) t[pattern[j] as number] = j;
  return t;
})();

/** Past the spaces and tabs at `at`. */
function skipBlanks(b: Uint8Array, at: number): number {
  while (b[at] === 32 || b[at] === 9) at++;
  return at;
}

/** True when the line ends at `at`, after spaces and tabs. */
function endsAt(b: Uint8Array, at: number): boolean {
  const i = skipBlanks(b, at);
  return b[i] === 13 && b[i + 1] === 10;
}

/**
 * True when the header value at `at` (spaces and tabs around it aside) is exactly `want` (a room
 * id or a subject: no CR in it, so the comparison stays within the line).
 */
function valueIs(b: Uint8Array, at: number, want: readonly number[]): boolean {
  if (at < 0) return false;
  const v = skipBlanks(b, at);
  for (let i = 0; i < want.length; i++) if (b[v + i] !== want[i]) return false;
  return endsAt(b, v + want.length);
}

/**
 * The header value at `at` as a stream sequence, written in decimal digits as the server writes
 * it; 0 for anything else (empty, a sign, a fraction, an exponent, more digits than a safe
 * integer holds).
 */
function sequenceOf(b: Uint8Array, at: number): number {
  if (at < 0) return 0;
  const v = skipBlanks(b, at);
  let n = 0;
  let i = v;
  for (; i - v < 16; i++) {
    const d = (b[i] as number) - 48;
    if (!(d >= 0 && d <= 9)) break;
    n = n * 10 + d;
  }
  return i > v && i - v <= 15 && endsAt(b, i) ? n : 0;
}
const DIGITS = /^[0-9]{1,15}$/;

/** The header value at `at` as text (spaces and tabs around it aside); undefined when absent. */
function valueText(b: Uint8Array, at: number): string | undefined {
  if (at < 0) return undefined;
  const v = skipBlanks(b, at);
  let w = v;
  while (w < b.length && !(b[w] === 13 && b[w + 1] === 10)) w++;
  while (w > v && (b[w - 1] === 32 || b[w - 1] === 9)) w--;
  return TEXT.decode(b.subarray(v, w));
}

/**
 * Reads the stream headers of a raw NATS header block (`NATS/1.0\r\nName: value\r\n…\r\n\r\n`),
 * line by line, a later value replacing an earlier one: the server's come last (see the module
 * comment). Names match exactly, as the server writes them. Undefined when the block is not a
 * header block.
 */
export function readStreamHeaders(block: Uint8Array): StreamHeaders | undefined {
  if (!scanStreamHeaders(block, block.length)) return undefined;
  const found: StreamHeaders = {};
  const stream = valueText(block, streamAt);
  const subject = valueText(block, subjectAt);
  const sequence = valueText(block, sequenceAt);
  if (stream !== undefined) found.stream = stream;
  if (subject !== undefined) found.subject = subject;
  if (sequence !== undefined) found.sequence = sequence;
  return found;
}

/**
 * The raw header block of a message from a nats.js 3.x transport, whose messages keep the bytes
 * they were parsed from. Reading it directly costs a fraction of the header map nats.js would
 * build (a quarter of a device's time per message in bench/fanout); anything else falls back to
 * the public header map, with the same last-wins rule.
 */
function rawHeaderBlock(m: object): Uint8Array | undefined {
  const impl = m as { _rdata?: unknown; _msg?: { hdr?: unknown } };
  const length = impl._msg?.hdr;
  if (!(impl._rdata instanceof Uint8Array) || typeof length !== 'number' || length <= 0) {
    return undefined;
  }
  return impl._rdata.subarray(0, length);
}

/** The stream headers from a transport's public header map, with the same last-wins rule. */
function fromHeaderMap(
  h: { values(name: string): string[] } | undefined,
): StreamHeaders | undefined {
  if (!h) return undefined;
  const found: StreamHeaders = {};
  for (const [field, name] of Object.entries(HEADER_NAMES) as [HeaderField, string][]) {
    const v = h.values(name).at(-1);
    if (v) found[field] = v;
  }
  return found;
}

/** The parts of a received NATS message (`Msg` of any nats.js transport) that the parsers read. */
export function received(m: {
  subject: string;
  reply?: string;
  headers?: { values(name: string): string[] } | undefined;
  data: Uint8Array;
}): ReceivedRepublish {
  const block = rawHeaderBlock(m);
  // A header block that is not one (never from a server) still counts as headers: not live.
  const stream = block ? (readStreamHeaders(block) ?? {}) : fromHeaderMap(m.headers);
  const r: ReceivedRepublish = {
    subject: m.subject,
    hasHeaders: stream !== undefined,
    body: m.data,
  };
  if (m.reply) r.reply = m.reply;
  if (stream) r.stream = stream;
  return r;
}

/**
 * The room stream message a republished copy carries, or undefined when the message is not one
 * (a reply someone aimed at the subject: no stream headers, or a pulled delivery, which keeps its
 * own subject and a reply).
 */
export function parseRepublished(roomId: string, m: ReceivedRepublish): Republished | undefined {
  const h = m.stream;
  if (m.reply || !m.hasHeaders || !h || h.stream !== roomId) return undefined;
  const copy = copySubject(roomCopies(roomId), m.subject);
  if (!copy || h.subject !== copy.subject) return undefined;
  if (h.sequence === undefined || !DIGITS.test(h.sequence)) return undefined;
  const seq = Number(h.sequence);
  if (seq < 1) return undefined;
  return republished(copy, seq);
}

/**
 * The room stream message a received copy carries, or undefined when it is not one: the same
 * checks as `parseRepublished(roomId, received(m))`, read straight from the bytes of a nats.js
 * 3.x message (what the SDK does with every message a device receives: it decodes no header
 * text, builds no header map, compares the stream and subject as bytes, and knows the subjects it
 * saw recently by their bytes). Any other message shape takes the general path. `room` is
 * {@link roomCopies} of the device's room.
 */
export function readCopy(
  room: RoomCopies,
  m: {
    subject: string;
    reply?: string;
    headers?: { values(name: string): string[] } | undefined;
    data: Uint8Array;
  },
): Republished | undefined {
  const impl = m as {
    _rdata?: unknown;
    _msg?: { hdr?: unknown; reply?: unknown; subject?: unknown };
  };
  const raw = impl._rdata;
  const length = impl._msg?.hdr;
  if (!(raw instanceof Uint8Array) || typeof length !== 'number' || length > raw.length) {
    return parseRepublished(room.roomId, received(m));
  }
  if (length <= 0) return undefined; // no header block
  // A reply (a pulled delivery keeps one): the getter decodes it, so only when there is one.
  if (impl._msg?.reply !== undefined && m.reply) return undefined;
  if (!scanStreamHeaders(raw, length)) return undefined;
  const seq = sequenceOf(raw, sequenceAt);
  if (seq < 1) return undefined;
  if (!valueIs(raw, streamAt, room.id)) return undefined;
  const subject = impl._msg?.subject;
  const copy =
    subject instanceof Uint8Array ? recentCopy(room, subject, m) : copySubject(room, m.subject);
  if (!copy || !valueIs(raw, subjectAt, copy.bytes)) return undefined;
  return republished(copy, seq);
}

/** Subjects of copies known by their bytes, per room (a direct-mapped table: a power of 2). */
const RECENT = 64;

/**
 * The copy subject whose bytes `subject` holds, from the room's table of recent ones when there
 * (no text decoded), else as {@link copySubject} finds it, then kept in the table.
 */
function recentCopy(
  room: RoomCopies,
  subject: Uint8Array,
  m: { subject: string },
): CopySubject | null {
  const n = subject.length;
  const slot = (n * 31 + (subject[n - 1] ?? 0) * 7 + (subject[n - 2] ?? 0)) & (RECENT - 1);
  const known = room.recent[slot];
  if (known !== undefined && sameBytes(subject, known.copy)) return known;
  const copy = copySubject(room, m.subject);
  if (copy) room.recent[slot] = copy;
  return copy;
}

function republished(copy: CopySubject, seq: number): Republished {
  const r: Republished = { subject: copy.subject, seq, kind: copy.kind };
  if (copy.userId !== undefined) r.userId = copy.userId;
  return r;
}

/** Subjects of copies remembered per room, at most (its senders and kinds: a few hundred). */
const SUBJECT_MEMO_MAX = 4_096;
/** Rooms whose subjects are remembered, at most (a device is in one). */
const ROOM_MEMO_MAX = 64;
/**
 * A copy's room stream subject, kind and user, the stored subject's bytes (as the header has it)
 * and the copy's subject's bytes (as the message has it).
 */
type CopySubject = Omit<Republished, 'seq'> & { bytes: readonly number[]; copy: readonly number[] };
/** What is remembered of a room: its id's bytes, and the subjects its copies came on. */
interface RoomCopies {
  readonly roomId: string;
  /** The room id's bytes (the stream's name, as the header has it). */
  readonly id: readonly number[];
  readonly subjects: Map<string, CopySubject | null>;
  /** Recent copy subjects, by a hash of their bytes ({@link recentCopy}). */
  readonly recent: (CopySubject | undefined)[];
}
const roomMemos = new Map<string, RoomCopies>();

/** What {@link readCopy} remembers of a room, shared by the room's devices in one process. */
export function roomCopies(roomId: string): RoomCopies {
  let memo = roomMemos.get(roomId);
  if (!memo) {
    if (roomMemos.size >= ROOM_MEMO_MAX) roomMemos.clear();
    memo = {
      roomId,
      id: bytesOf(roomId),
      subjects: new Map(),
      recent: new Array<undefined>(RECENT),
    };
    roomMemos.set(roomId, memo);
  }
  return memo;
}

/**
 * The room stream subject, kind and user of a copy's subject, or null when it is not one of the
 * room's copies. Remembered: a device sees the same few subjects over and over.
 */
function copySubject(room: RoomCopies, copy: string): CopySubject | null {
  const memo = room.subjects;
  const known = memo.get(copy);
  if (known !== undefined) return known;
  const subject = unrepublishedSubject(copy);
  const s = subject !== undefined ? parseRoomSubject(subject) : undefined;
  let parsed: CopySubject | null = null;
  if (subject && s && s.roomId === room.roomId && s.kind !== RoomSubjectKind.Live) {
    parsed = { subject, kind: s.kind, bytes: bytesOf(subject), copy: bytesOf(copy) };
    if (s.userId !== undefined) parsed.userId = s.userId;
  }
  if (memo.size >= SUBJECT_MEMO_MAX) memo.clear();
  memo.set(copy, parsed);
  return parsed;
}
