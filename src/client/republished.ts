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
 * silence the room for everyone. The server's own values are always the last ones.
 */
import { parseRoomSubject, RoomSubjectKind, unrepublishedSubject } from '../core/subjects.js';
import type { ReceivedMessage } from './live.js';

/** The stream position a republished copy carries (the server's values: the last of each). */
export interface StreamHeaders {
  stream?: string;
  subject?: string;
  sequence?: string;
}

/** A room stream message as the stream republished it. */
export interface Republished {
  /** The subject the message was stored under (`room.{roomId}.chat.{userId}`, …). */
  subject: string;
  /** Its sequence in the room stream. */
  seq: number;
  kind: RoomSubjectKind;
  /** The sender (chat, whiteboard) or the recipient (answers). */
  userId?: string;
}

/** What a republish carries, transport-neutral. */
export interface ReceivedRepublish extends ReceivedMessage {
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
const VERSION_LINE = 'NATS/1.0';
const CRLF = '\r\n';
const TEXT = new TextDecoder();

/**
 * Reads the stream headers of a raw NATS header block (`NATS/1.0\r\nName: value\r\n…\r\n\r\n`),
 * line by line, a later value replacing an earlier one: the server's come last (see the module
 * comment). Names match exactly, as the server writes them. Undefined when the block is not a
 * header block. Runs on every message a device receives: one native decode, then slices.
 */
export function readStreamHeaders(block: Uint8Array): StreamHeaders | undefined {
  const text = TEXT.decode(block);
  if (!text.startsWith(VERSION_LINE)) return undefined;
  let at = text.indexOf(CRLF);
  if (at < 0) return undefined;
  const found: StreamHeaders = {};
  for (at += 2; ;) {
    const end = text.indexOf(CRLF, at);
    if (end <= at) break; // the empty line that ends the block, or a truncated line
    const colon = text.indexOf(':', at);
    if (colon > at && colon < end) {
      const name = text.slice(at, colon);
      const field =
        name === HEADER_NAMES.sequence
          ? 'sequence'
          : name === HEADER_NAMES.subject
            ? 'subject'
            : name === HEADER_NAMES.stream
              ? 'stream'
              : undefined;
      if (field) found[field] = text.slice(colon + 1, end).trim();
    }
    at = end + 2;
  }
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
  const copy = copySubject(roomId, m.subject);
  if (!copy || h.subject !== copy.subject) return undefined;
  const seq = Number(h.sequence);
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined;
  const r: Republished = { subject: copy.subject, seq, kind: copy.kind };
  if (copy.userId !== undefined) r.userId = copy.userId;
  return r;
}

/** Subjects of copies remembered per room, at most (its senders and kinds: a few hundred). */
const SUBJECT_MEMO_MAX = 4_096;
/** Rooms whose subjects are remembered, at most (a device is in one). */
const ROOM_MEMO_MAX = 64;
type CopySubject = Omit<Republished, 'seq'>;
const subjectMemo = new Map<string, Map<string, CopySubject | null>>();

/**
 * The room stream subject, kind and user of a copy's subject, or null when it is not one of the
 * room's copies. Remembered: a device sees the same few subjects over and over.
 */
function copySubject(roomId: string, copy: string): CopySubject | null {
  let memo = subjectMemo.get(roomId);
  if (!memo) {
    if (subjectMemo.size >= ROOM_MEMO_MAX) subjectMemo.clear();
    subjectMemo.set(roomId, (memo = new Map<string, CopySubject | null>()));
  }
  const known = memo.get(copy);
  if (known !== undefined) return known;
  const subject = unrepublishedSubject(copy);
  const s = subject !== undefined ? parseRoomSubject(subject) : undefined;
  let parsed: CopySubject | null = null;
  if (subject && s && s.roomId === roomId && s.kind !== RoomSubjectKind.Live) {
    parsed = { subject, kind: s.kind };
    if (s.userId !== undefined) parsed.userId = s.userId;
  }
  if (memo.size >= SUBJECT_MEMO_MAX) memo.clear();
  memo.set(copy, parsed);
  return parsed;
}
