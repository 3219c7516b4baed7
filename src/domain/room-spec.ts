/**
 * The Room resource as the CRD defines it (docs/controller.md, crds/): its API group, spec, status
 * and metadata types, the defaults of its fields, and the parsing of its quantities and durations.
 * What a spec compiles into is in room-compile.ts; the stream bounds it implies in room-history.ts.
 */

/** API group of the Room CRD. */
export const ROOM_API_GROUP = 'torii.io';
/** API version of the Room CRD. */
export const ROOM_API_VERSION = 'v1alpha1';
/** Kind of the Room CRD. */
export const ROOM_KIND = 'Room';
/** Plural resource name of the Room CRD (its API path). */
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

/** Where a room stream keeps its messages (JetStream `storage`). */
export const StorageType = { File: 'file', Memory: 'memory' } as const;
export type StorageType = (typeof StorageType)[keyof typeof StorageType];

/** Whether deleting a Room deletes its stream too (`Delete`) or keeps it (`Retain`). */
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
     * half of `maxBytes` and `maxMessages` (`roomHistoryLimits` in room-history.ts).
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
interface RoomMetadata {
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
