/**
 * The room stream's per-member bounds (`max_msgs_per_subject`, `max_msg_size`), defaulted or
 * checked against the Room's history budget so that no member alone can evict the rest of the
 * room's history (docs/decisions.md, "A history no member can evict alone").
 */
import { MAX_BROADCAST_BYTES } from '../protocol/events.js';
import { DEFAULT_ROLE_SPECS, parseQuantity, ROOM_DEFAULTS, type RoomSpec } from './room-spec.js';

/**
 * Bytes of a room's initial data per seat that the default {@link RoomSpec} `history.maxMessageSize`
 * leaves room for: a participant entry (id, display name, role, since) and a raised hand, as
 * typical names and notes make them (about 110 and 100 bytes). The `REQ_INITIAL_DATA` answer is
 * stored in the room stream like every answer, so the stream's largest message must hold it.
 */
const INITIAL_DATA_BYTES_PER_SEAT = 256;
/**
 * Least default `history.maxMessageSize`, in bytes: a whiteboard stroke of the SDK's most points
 * (500 points in the unit square as JSON, about 20 KB) and any chat a person types.
 */
const DEFAULT_MIN_MAX_MESSAGE_SIZE = 32 * 1024;
/**
 * Smallest `history.maxMessageSize` a Room may set, in bytes: room for the largest broadcast
 * ({@link MAX_BROADCAST_BYTES}) with a margin.
 */
const MIN_MAX_MESSAGE_SIZE = 4 * 1024;
/** Largest `history.maxMessageSize`, in bytes: nats-server's default `max_payload`. */
const MAX_MAX_MESSAGE_SIZE = 1024 * 1024;
/** Largest default `history.maxMessagesPerUser`: rooms with a larger budget keep this many. */
const DEFAULT_MAX_MESSAGES_PER_USER = 1_000;
/**
 * The part of a room stream's budget (`maxBytes` and `maxMessages`) that one member's full share
 * may take at most: whatever one member sends, the rest of the room keeps the other half.
 */
const MEMBER_SHARE_OF_HISTORY = 0.5;

/**
 * Subjects of the room stream that one member can fill: its answers, and its chat and whiteboard
 * when some role of the room may use them (the stream cannot tell roles apart).
 */
function memberSubjects(spec: RoomSpec): number {
  const roles = Object.values(spec.roles ?? DEFAULT_ROLE_SPECS);
  const chat = (spec.features?.chat ?? true) && roles.some((r) => r?.chat === true);
  const whiteboard =
    (spec.features?.whiteboard ?? true) && roles.some((r) => r?.whiteboard === true);
  return 1 + (chat ? 1 : 0) + (whiteboard ? 1 : 0);
}

/** A room stream's per-member bounds and what they guarantee. */
interface HistoryLimits {
  maxMessagesPerUser: number;
  maxMessageSize: number;
  /** Subjects one member can fill ({@link memberSubjects}), its broadcasts' subject aside. */
  memberSubjects: number;
  /**
   * Most bytes one member can hold in the stream: messages × (subjects × largest message + the
   * largest broadcast).
   */
  memberShareBytes: number;
  /** Most messages one member can hold in the stream. */
  memberShareMessages: number;
  /** Problems of explicit settings (empty for defaults, which always fit). */
  problems: string[];
}

const KiB = (n: number): string => (n % 1024 === 0 ? `${n / 1024}Ki` : `${n} bytes`);

/**
 * The room stream's per-subject bounds, defaulted or checked so that one member's full share
 * (every subject it can fill at `maxMessagesPerUser` messages of `maxMessageSize` bytes, and as
 * many broadcasts about it on its own broadcast subject) is at
 * most {@link MEMBER_SHARE_OF_HISTORY} of `maxBytes` and of `maxMessages`: no member alone can
 * push the rest of the room out of the stream (docs/decisions.md, "A history no member can
 * evict alone"). `maxBytes` and `maxMessages` must already be valid.
 */
export function roomHistoryLimits(
  spec: RoomSpec,
  budget: { maxBytes: number; maxMessages: number },
): HistoryLimits {
  const h = spec.history ?? {};
  const problems: string[] = [];
  const seats = spec.maxParticipants ?? ROOM_DEFAULTS.maxParticipants;
  const initialData = INITIAL_DATA_BYTES_PER_SEAT * seats;
  let size = Math.min(Math.max(DEFAULT_MIN_MAX_MESSAGE_SIZE, initialData), MAX_MAX_MESSAGE_SIZE);
  if (h.maxMessageSize !== undefined) {
    const explicit = parseQuantity(h.maxMessageSize);
    if (
      explicit === undefined ||
      explicit < MIN_MAX_MESSAGE_SIZE ||
      explicit > MAX_MAX_MESSAGE_SIZE
    ) {
      problems.push(
        `spec.history.maxMessageSize: ${JSON.stringify(h.maxMessageSize)} is not a quantity from ${KiB(MIN_MAX_MESSAGE_SIZE)} to ${KiB(MAX_MAX_MESSAGE_SIZE)}`,
      );
    } else if (explicit < Math.min(initialData, MAX_MAX_MESSAGE_SIZE)) {
      problems.push(
        `spec.history.maxMessageSize: ${KiB(explicit)} cannot hold the initial data of ${seats} participants (${INITIAL_DATA_BYTES_PER_SEAT} bytes each): at least ${initialData} bytes`,
      );
    } else size = explicit;
  }
  const subjects = memberSubjects(spec);
  const share = MEMBER_SHARE_OF_HISTORY;
  // Per message on each subject: the member's own (at most `size` each) and one broadcast about it.
  const bytesPerRound = subjects * size + MAX_BROADCAST_BYTES;
  const messagesPerRound = subjects + 1;
  const fits = Math.floor(
    Math.min(
      (budget.maxBytes * share) / bytesPerRound,
      (budget.maxMessages * share) / messagesPerRound,
    ),
  );
  let perUser = Math.max(1, Math.min(fits, DEFAULT_MAX_MESSAGES_PER_USER));
  const n = h.maxMessagesPerUser;
  if (n !== undefined) {
    if (!Number.isInteger(n) || n < 1) {
      problems.push('spec.history.maxMessagesPerUser: must be a positive integer');
    } else if (n > fits) {
      problems.push(
        `spec.history.maxMessagesPerUser: ${n} lets one member hold ${n} messages on each of its ${subjects} subjects (up to ${size} bytes each) and ${n} broadcasts about it (up to ${MAX_BROADCAST_BYTES} bytes each): ${n * bytesPerRound} bytes and ${n * messagesPerRound} messages, more than half of maxBytes (${budget.maxBytes}) or maxMessages (${budget.maxMessages}), so that member alone could push everyone else's history out. Use at most ${Math.max(fits, 0)}, or raise maxBytes to at least ${Math.ceil((n * bytesPerRound) / share)} and maxMessages to at least ${Math.ceil((n * messagesPerRound) / share)}`,
      );
    } else perUser = n;
  }
  return {
    maxMessagesPerUser: perUser,
    maxMessageSize: size,
    memberSubjects: subjects,
    memberShareBytes: perUser * bytesPerRound,
    memberShareMessages: perUser * messagesPerRound,
    problems,
  };
}
