/**
 * The Room resource (docs/controller.md): its spec and status types, defaults, semantic validation,
 * and compilation into the room config that the controller publishes to KV `torii_rooms` and
 * that the callout and workers read. Types for the CRD live here, in one place.
 */
import { MAX_BROADCAST_BYTES } from '../protocol/events.js';
import { checkRoomId, ID_PATTERN } from '../protocol/ids.js';
import {
  JsApi,
  chatSubject,
  liveSubject,
  republishedSubject,
  userConsumerFilters,
  userInboxPrefix,
  whiteboardSubject,
  workerSubject,
} from '../protocol/subjects.js';

/** API group and version of the Room CRD. */
export const ROOM_API_GROUP = 'torii.io';
export const ROOM_API_VERSION = 'v1alpha1';
export const ROOM_KIND = 'Room';
export const ROOM_PLURAL = 'rooms';

/** Media grants of a role (LiveKit). */
export interface MediaGrantsSpec {
  canPublish?: boolean;
  canSubscribe?: boolean;
  canPublishData?: boolean;
}

/** What one role may do in a room. */
export interface RoleSpec {
  chat?: boolean;
  whiteboard?: boolean;
  /** Moderators may act on other users (lower their hands, …). */
  moderator?: boolean;
  /** May publish on the core-NATS live subject (cursors, typing). Default true. */
  live?: boolean;
  media?: MediaGrantsSpec;
}

export const StorageType = { File: 'file', Memory: 'memory' } as const;
export type StorageType = (typeof StorageType)[keyof typeof StorageType];

export const DeletionPolicy = { Delete: 'Delete', Retain: 'Retain' } as const;
export type DeletionPolicy = (typeof DeletionPolicy)[keyof typeof DeletionPolicy];

/** `spec` of a Room. */
export interface RoomSpec {
  roomId?: string;
  title?: string;
  maxParticipants?: number;
  features?: { chat?: boolean; whiteboard?: boolean; raiseHand?: boolean };
  roles?: Record<string, RoleSpec>;
  media?: { livekitRoom?: string; broadcast?: boolean };
  history?: {
    /** Duration like `24h`. */
    maxAge?: string;
    maxMessages?: number;
    /** Kubernetes quantity like `256Mi`, or bytes. */
    maxBytes?: string | number;
    storage?: StorageType;
    replicas?: number;
    /**
     * Messages each subject of the stream keeps (`max_msgs_per_subject`): a member's chat, its
     * whiteboard, its answers and the broadcasts about it each, and the room's own broadcasts. A
     * member's flood pushes out only its own older messages. Defaults to the most that keeps one member's full share within
     * half of `maxBytes` and `maxMessages` ({@link roomHistoryLimits}).
     */
    maxMessagesPerUser?: number;
    /** Largest message the stream stores (`max_msg_size`): quantity like `32Ki`, or bytes. */
    maxMessageSize?: string | number;
  };
  deletionPolicy?: DeletionPolicy;
}

/** A standard Kubernetes condition. */
export interface RoomCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** `status` of a Room. */
export interface RoomStatus {
  /** The room id the Room resolved to (spec.roomId or metadata.name); shown by `kubectl get rooms`. */
  roomId?: string;
  observedGeneration?: number;
  conditions?: RoomCondition[];
  stream?: { name: string; messages: number; bytes: number };
  joinedParticipants?: number;
}

/** Metadata Torii reads and writes on a Room. */
export interface RoomMetadata {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  finalizers?: string[];
  [extra: string]: unknown;
}

/** A Room as stored by the API server (or read from a YAML file). */
export interface RoomResource {
  apiVersion: string;
  kind: string;
  metadata: RoomMetadata;
  spec: RoomSpec;
  status?: RoomStatus;
}

/** `{namespace}/{name}`: the key of a Room in caches and queues. */
export const roomKey = (r: { metadata: { namespace?: string; name?: string } }): string =>
  `${r.metadata.namespace ?? 'default'}/${r.metadata.name ?? ''}`;

/** Finalizer that lets the controller clean up NATS before a Room disappears. */
export const ROOM_FINALIZER = 'torii.io/cleanup';

/** Condition types of a Room. */
export const ConditionType = {
  Ready: 'Ready',
  StreamReady: 'StreamReady',
  ConfigPublished: 'ConfigPublished',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** Defaults (docs/controller.md). */
export const ROOM_DEFAULTS = {
  maxParticipants: 100,
  maxAge: '24h',
  maxMessages: 100_000,
  // JetStream reserves a file stream's max_bytes against the server's storage limit up front:
  // 1,000 rooms at 32 MiB reserve 32 GiB. Rooms that need more history set it.
  maxBytes: 32 * 1024 * 1024,
  storage: StorageType.File,
  replicas: 1,
} as const;

/**
 * Bytes of a room's initial data per seat that the default {@link RoomSpec} `history.maxMessageSize`
 * leaves room for: a participant entry (id, display name, role, since) and a raised hand, as
 * typical names and notes make them (about 110 and 100 bytes). The `REQ_INITIAL_DATA` answer is
 * stored in the room stream like every answer, so the stream's largest message must hold it.
 */
export const INITIAL_DATA_BYTES_PER_SEAT = 256;
/**
 * Least default `history.maxMessageSize`, in bytes: a whiteboard stroke of the SDK's most points
 * (500 points in the unit square as JSON, about 20 KB) and any chat a person types.
 */
export const DEFAULT_MIN_MAX_MESSAGE_SIZE = 32 * 1024;
/**
 * Smallest `history.maxMessageSize` a Room may set, in bytes: room for the largest broadcast
 * ({@link MAX_BROADCAST_BYTES}) with a margin.
 */
export const MIN_MAX_MESSAGE_SIZE = 4 * 1024;
/** Largest `history.maxMessageSize`, in bytes: nats-server's default `max_payload`. */
export const MAX_MAX_MESSAGE_SIZE = 1024 * 1024;
/** Largest default `history.maxMessagesPerUser`: rooms with a larger budget keep this many. */
export const DEFAULT_MAX_MESSAGES_PER_USER = 1_000;
/**
 * The part of a room stream's budget (`maxBytes` and `maxMessages`) that one member's full share
 * may take at most: whatever one member sends, the rest of the room keeps the other half.
 */
export const MEMBER_SHARE_OF_HISTORY = 0.5;

/** Largest room Torii accepts. */
export const MAX_PARTICIPANTS_LIMIT = 10_000;

/** Roles of a Room that does not define its own. */
export const DEFAULT_ROLE_SPECS: Readonly<Record<string, RoleSpec>> = {
  teacher: {
    chat: true,
    whiteboard: true,
    moderator: true,
    media: { canPublish: true, canSubscribe: true, canPublishData: true },
  },
  student: {
    chat: true,
    whiteboard: false,
    media: { canPublish: false, canSubscribe: true, canPublishData: true },
  },
  observer: {
    chat: false,
    whiteboard: false,
    live: false,
    media: { canPublish: false, canSubscribe: true, canPublishData: false },
  },
};

/** Placeholders in permission templates, filled in by the callout per connection. */
export const Placeholder = {
  Room: '{roomId}',
  User: '{userId}',
  /** The connection's consumer: the user's own, or one of its devices' (`deviceConsumerName`). */
  Consumer: '{consumer}',
} as const;

/** A role after defaults and room features are applied. */
export interface CompiledRole {
  moderator: boolean;
  chat: boolean;
  whiteboard: boolean;
  live: boolean;
  media: Required<MediaGrantsSpec>;
  /** NATS permission templates with {@link Placeholder}s. */
  permissions: { publish: string[]; subscribe: string[] };
}

/** What the controller publishes to KV `torii_rooms` under `{roomId}`. */
export interface CompiledRoomConfig {
  /** Format version of this record. */
  version: 1;
  roomId: string;
  title: string;
  maxParticipants: number;
  features: { chat: boolean; whiteboard: boolean; raiseHand: boolean };
  media: { livekitRoom: string; broadcast: boolean };
  roles: Record<string, CompiledRole>;
  history: {
    maxAgeMs: number;
    maxMessages: number;
    maxBytes: number;
    storage: StorageType;
    replicas: number;
    /** `max_msgs_per_subject` of the room stream. */
    maxMessagesPerUser: number;
    /** `max_msg_size` of the room stream, in bytes. */
    maxMessageSize: number;
  };
  /** Where it came from, e.g. `classes/n5-evening` or a file path. */
  source?: string;
}

const QUANTITY = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;
const QUANTITY_FACTORS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** Parses a Kubernetes quantity (`256Mi`, `1G`, `1024`) into bytes; undefined when invalid. */
export function parseQuantity(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = QUANTITY.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (QUANTITY_FACTORS[m[2] ?? ''] as number));
}

const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;
/** Parses `24h`, `7d`, `1h30m`, `90s` into milliseconds; undefined when invalid or empty. */
export function parseRoomDuration(value: string): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = DURATION.exec(value.trim());
  if (!m || value.trim() === '') return undefined;
  const [d, h, min, s] = [m[1], m[2], m[3], m[4]].map((x) => Number(x ?? 0)) as [
    number,
    number,
    number,
    number,
  ];
  return (((d * 24 + h) * 60 + min) * 60 + s) * 1000;
}

/** The room id a Room resolves to: `spec.roomId`, else `metadata.name`. */
export function resolveRoomId(name: string, spec: RoomSpec): string {
  return spec.roomId ?? name;
}

/**
 * Checks what the CRD schema cannot: ids, role names, sizes, durations.
 * @returns human-readable problems, empty when the spec is valid
 */
export function validateRoomSpec(name: string, spec: RoomSpec): string[] {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec))
    return ['spec: must be an object'];
  const problems: string[] = [];
  const roomId = resolveRoomId(name, spec);
  try {
    checkRoomId(
      roomId,
      spec.roomId === undefined ? 'metadata.name (used as roomId)' : 'spec.roomId',
    );
  } catch (e) {
    problems.push((e as Error).message);
  }
  const max = spec.maxParticipants;
  if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > MAX_PARTICIPANTS_LIMIT)) {
    problems.push(`spec.maxParticipants: must be an integer from 1 to ${MAX_PARTICIPANTS_LIMIT}`);
  }
  if (spec.roles !== undefined) {
    const names = Object.keys(spec.roles);
    if (names.length === 0)
      problems.push('spec.roles: define at least one role, or omit roles for the defaults');
    for (const r of names)
      if (!ID_PATTERN.test(r)) problems.push(`spec.roles: invalid role name ${JSON.stringify(r)}`);
  }
  const bools: [string, unknown][] = [
    ['spec.features.chat', spec.features?.chat],
    ['spec.features.whiteboard', spec.features?.whiteboard],
    ['spec.features.raiseHand', spec.features?.raiseHand],
    ['spec.media.broadcast', spec.media?.broadcast],
    ...Object.entries(spec.roles ?? {}).flatMap(([r, role]): [string, unknown][] => [
      [`spec.roles.${r}.chat`, role?.chat],
      [`spec.roles.${r}.whiteboard`, role?.whiteboard],
      [`spec.roles.${r}.moderator`, role?.moderator],
      [`spec.roles.${r}.live`, role?.live],
      [`spec.roles.${r}.media.canPublish`, role?.media?.canPublish],
      [`spec.roles.${r}.media.canSubscribe`, role?.media?.canSubscribe],
      [`spec.roles.${r}.media.canPublishData`, role?.media?.canPublishData],
    ]),
  ];
  for (const [field, v] of bools)
    if (v !== undefined && typeof v !== 'boolean') problems.push(`${field}: must be true or false`);
  if (spec.title !== undefined && (typeof spec.title !== 'string' || spec.title.length > 200))
    problems.push('spec.title: a string of at most 200 characters');
  if (
    spec.deletionPolicy !== undefined &&
    !Object.values(DeletionPolicy).includes(spec.deletionPolicy)
  ) {
    problems.push('spec.deletionPolicy: Delete or Retain');
  }
  const h = spec.history ?? {};
  if (h.storage !== undefined && !Object.values(StorageType).includes(h.storage))
    problems.push('spec.history.storage: file or memory');
  if (h.maxAge !== undefined && parseRoomDuration(h.maxAge) === undefined) {
    problems.push(
      `spec.history.maxAge: ${JSON.stringify(h.maxAge)} is not a duration like 24h or 7d`,
    );
  }
  if (h.maxBytes !== undefined && parseQuantity(h.maxBytes) === undefined) {
    problems.push(
      `spec.history.maxBytes: ${JSON.stringify(h.maxBytes)} is not a quantity like 256Mi`,
    );
  }
  if (h.maxMessages !== undefined && (!Number.isInteger(h.maxMessages) || h.maxMessages < 1)) {
    problems.push('spec.history.maxMessages: must be a positive integer');
  }
  if (h.replicas !== undefined && ![1, 3, 5].includes(h.replicas))
    problems.push('spec.history.replicas: must be 1, 3 or 5');
  const maxBytes = parseQuantity(h.maxBytes ?? ROOM_DEFAULTS.maxBytes);
  const maxMessages = h.maxMessages ?? ROOM_DEFAULTS.maxMessages;
  if (maxBytes !== undefined && Number.isInteger(maxMessages) && maxMessages >= 1)
    problems.push(...roomHistoryLimits(spec, { maxBytes, maxMessages }).problems);
  if (
    spec.media?.livekitRoom !== undefined &&
    !/^[A-Za-z0-9_.:-]{1,128}$/.test(spec.media.livekitRoom)
  ) {
    problems.push('spec.media.livekitRoom: use letters, digits and _ . : - (at most 128)');
  }
  return problems;
}

/**
 * Subjects of the room stream that one member can fill: its answers, and its chat and whiteboard
 * when some role of the room may use them (the stream cannot tell roles apart).
 */
export function memberSubjects(spec: RoomSpec): number {
  const roles = Object.values(spec.roles ?? DEFAULT_ROLE_SPECS);
  const chat = (spec.features?.chat ?? true) && roles.some((r) => r?.chat === true);
  const whiteboard =
    (spec.features?.whiteboard ?? true) && roles.some((r) => r?.whiteboard === true);
  return 1 + (chat ? 1 : 0) + (whiteboard ? 1 : 0);
}

/** A room stream's per-member bounds and what they guarantee. */
export interface HistoryLimits {
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

function compileRole(role: RoleSpec, features: CompiledRoomConfig['features']): CompiledRole {
  const r = Placeholder.Room;
  const u = Placeholder.User;
  const c = Placeholder.Consumer;
  const chat = features.chat && role.chat === true;
  const whiteboard = features.whiteboard && role.whiteboard === true;
  const live = role.live !== false;
  const publish = [
    workerSubject(r, u),
    // No STREAM.INFO: with `subjects_filter` its answer lists every subject of the stream, so
    // every user who ever got an answer; the SDK's consumer probe does without it.
    JsApi.consumerInfo(r, c),
    JsApi.consumerNext(r, c),
    JsApi.consumerReset(r, c),
    ...JsApi.acks(r, c),
    ...(chat ? [chatSubject(r, u)] : []),
    ...(whiteboard ? [whiteboardSubject(r, u)] : []),
    ...(live ? [liveSubject(r, u)] : []),
  ];
  const subscribe = [
    `${userInboxPrefix(r, u)}.>`,
    liveSubject(r, '*'),
    ...userConsumerFilters(r, u).map(republishedSubject),
  ];
  return {
    moderator: role.moderator === true,
    chat,
    whiteboard,
    live,
    media: {
      canPublish: role.media?.canPublish === true,
      canSubscribe: role.media?.canSubscribe !== false,
      canPublishData: role.media?.canPublishData === true,
    },
    permissions: { publish, subscribe },
  };
}

/**
 * Compiles a valid spec (see {@link validateRoomSpec}) into the KV room config.
 * @throws Error when the spec is invalid
 */
export function compileRoom(name: string, spec: RoomSpec, source?: string): CompiledRoomConfig {
  const problems = validateRoomSpec(name, spec);
  if (problems.length > 0) throw new Error(problems.join('; '));
  const roomId = resolveRoomId(name, spec);
  const features = {
    chat: spec.features?.chat ?? true,
    whiteboard: spec.features?.whiteboard ?? true,
    raiseHand: spec.features?.raiseHand ?? true,
  };
  const roleSpecs = spec.roles ?? DEFAULT_ROLE_SPECS;
  const roles: Record<string, CompiledRole> = {};
  for (const [roleName, role] of Object.entries(roleSpecs))
    roles[roleName] = compileRole(role, features);
  const h = spec.history ?? {};
  const maxMessages = h.maxMessages ?? ROOM_DEFAULTS.maxMessages;
  const maxBytes = parseQuantity(h.maxBytes ?? ROOM_DEFAULTS.maxBytes) as number;
  const limits = roomHistoryLimits(spec, { maxBytes, maxMessages });
  return {
    version: 1,
    roomId,
    title: spec.title ?? roomId,
    maxParticipants: spec.maxParticipants ?? ROOM_DEFAULTS.maxParticipants,
    features,
    media: {
      livekitRoom: spec.media?.livekitRoom ?? roomId,
      broadcast: spec.media?.broadcast ?? false,
    },
    roles,
    history: {
      maxAgeMs: parseRoomDuration(h.maxAge ?? ROOM_DEFAULTS.maxAge) as number,
      maxMessages,
      maxBytes,
      storage: h.storage ?? ROOM_DEFAULTS.storage,
      replicas: h.replicas ?? ROOM_DEFAULTS.replicas,
      maxMessagesPerUser: limits.maxMessagesPerUser,
      maxMessageSize: limits.maxMessageSize,
    },
    ...(source !== undefined ? { source } : {}),
  };
}

/**
 * Fills the placeholders of a permission template for one connection (ids already checked).
 * `consumer` defaults to the user's own consumer.
 */
export function renderPermissions(
  templates: readonly string[],
  roomId: string,
  userId: string,
  consumer: string = userId,
): string[] {
  return templates.map((t) =>
    t
      .replaceAll(Placeholder.Room, roomId)
      .replaceAll(Placeholder.User, userId)
      .replaceAll(Placeholder.Consumer, consumer),
  );
}

/** Parses a KV room record; undefined when it is not a room config of a known version. */
export function parseRoomConfig(data: unknown): CompiledRoomConfig | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const c = data as Partial<CompiledRoomConfig>;
  if (
    c.version !== 1 ||
    typeof c.roomId !== 'string' ||
    typeof c.roles !== 'object' ||
    c.roles === null
  )
    return undefined;
  if (typeof c.maxParticipants !== 'number') return undefined;
  return c as CompiledRoomConfig;
}
