/**
 * Every NATS subject, stream, consumer, bucket and queue name Torii uses (docs/protocol.md, docs/worker.md, docs/platform.md).
 * Call sites never paste subjects together: they call these builders, which take ids that were
 * already checked with `checkRoomId`/`checkUserId` (a `.`, `*` or `>` would change the subject).
 */
import { isValidId } from './ids.js';

/** Queue group shared by callout replicas, workers and service endpoints. */
export const QUEUE_GROUP = 'torii_queue';

/** The work-queue stream that carries client events to the workers. */
export const WORKER_STREAM = 'sysJsWorker';

/** The shared durable consumer of {@link WORKER_STREAM}. */
export const WORKER_CONSUMER = QUEUE_GROUP;

/** NATS micro service name of the platform endpoints. */
export const SERVICE_NAME = 'torii';

/** KV bucket names (docs/worker.md). */
export const Bucket = {
  /** Compiled room config, key `{roomId}`; written by the controller only. */
  Rooms: 'torii_rooms',
  /** Hands and other room state; written by workers. */
  RoomState: 'torii_room_state',
  /** Connection tracking. */
  Presence: 'torii_presence',
  /** Kicked users, honoured by the callout. */
  Blocks: 'torii_blocks',
} as const;
export type Bucket = (typeof Bucket)[keyof typeof Bucket];

/** `KV_{bucket}`: the stream behind a KV bucket (stream info, replica checks). */
export const kvStreamName = (bucket: Bucket): string => `KV_${bucket}`;

/** `$KV.{bucket}.{key}`: where a bucket files a key (`>` for all of them). */
export const kvSubject = (bucket: Bucket, key: string): string => `$KV.${bucket}.${key}`;

/**
 * Default NATS account names (config mode); each is configurable. Room clients live in `CLIENTS`,
 * which holds no stream: whatever reply subject a client names, an answer lands in `CLIENTS`,
 * never in `APP` where the streams and buckets are (docs/decisions.md, "Account layout").
 */
export const DefaultAccount = { Auth: 'AUTH', App: 'APP', Clients: 'CLIENTS', Sys: 'SYS' } as const;

/** Service endpoint subjects (docs/platform.md). */
export const ServiceSubject = {
  RoomsList: 'torii.rooms.list',
  RoomsGet: 'torii.rooms.get',
  RoomsParticipants: 'torii.rooms.participants',
  RoomsKick: 'torii.rooms.kick',
  TokensIssue: 'torii.tokens.issue',
} as const;
export type ServiceSubject = (typeof ServiceSubject)[keyof typeof ServiceSubject];

/**
 * Platform events (docs/platform.md): plain JSON on core NATS in the APP account, published once per
 * action for the platform's services (NestJS `@EventPattern` handlers receive the JSON as their
 * data). Room clients, in CLIENTS, can neither subscribe to nor publish them.
 */
export const PlatformEvent = {
  ParticipantJoined: 'torii.events.participant.joined',
  ParticipantLeft: 'torii.events.participant.left',
  HandRaised: 'torii.events.hand.raised',
  HandLowered: 'torii.events.hand.lowered',
  RoomEnded: 'torii.events.room.ended',
} as const;
export type PlatformEvent = (typeof PlatformEvent)[keyof typeof PlatformEvent];

/** Every platform event: `torii.events.>`. */
export const PLATFORM_EVENTS_ALL = 'torii.events.>';

/**
 * `sysJsWorker.{roomId}.{userId}`: a user's events as the room's permission templates name them
 * (docs/protocol.md). No event travels here: the callout grants {@link roleWorkerSubject} of the
 * connection's role in its place.
 */
export const workerSubject = (roomId: string, userId: string): string =>
  `${WORKER_STREAM}.${roomId}.${userId}`;

/**
 * `sysJsWorker.{roomId}.{userId}.{role}`: a user's events to the workers, sent by a connection
 * admitted with `role`. The server lets a connection publish only on its own role's subject, so
 * a worker takes the role from the subject, never from a record that all of a user's connections
 * share (docs/decisions.md, "Roles per connection").
 */
export const roleWorkerSubject = (roomId: string, userId: string, role: string): string =>
  `${workerSubject(roomId, userId)}.${role}`;

/** `sysJsWorker.*.*.*`: the work-queue stream's subjects (room, user, role). */
export const WORKER_STREAM_SUBJECTS = [roleWorkerSubject('*', '*', '*')];

/** Parses `sysJsWorker.{roomId}.{userId}.{role}`; undefined for anything else. */
export function parseWorkerSubject(
  subject: string,
): { roomId: string; userId: string; role: string } | undefined {
  const parts = subject.split('.');
  if (parts.length !== 4 || parts[0] !== WORKER_STREAM) return undefined;
  const [, roomId, userId, role] = parts as [string, string, string, string];
  return { roomId, userId, role };
}

/** The room stream's name is the roomId itself (so `$JS.API.STREAM.INFO.{roomId}` works). */
export const roomStreamName = (roomId: string): string => roomId;

/**
 * The room stream's subjects: chat, whiteboard, broadcasts (the room's, and those about each
 * user) and answers, but not `live` (core NATS, not stored, docs/protocol.md: cursors and typing must
 * not push history out of the stream's limits).
 */
export const roomStreamSubjects = (roomId: string): string[] => [
  `room.${roomId}.chat.*`,
  `room.${roomId}.wb.*`,
  `room.${roomId}.evt`,
  `room.${roomId}.evt.*`,
  `room.${roomId}.user.*`,
];

/** `room.{roomId}.chat.{userId}` */
export const chatSubject = (roomId: string, userId: string): string =>
  `room.${roomId}.chat.${userId}`;
/** `room.{roomId}.wb.{userId}` */
export const whiteboardSubject = (roomId: string, userId: string): string =>
  `room.${roomId}.wb.${userId}`;
/** `room.{roomId}.evt`: broadcasts about the room itself (updated, ended). */
export const roomEventsSubject = (roomId: string): string => `room.${roomId}.evt`;
/**
 * `room.{roomId}.evt.{userId}`: broadcasts about one user (joined, left, hand raised or lowered).
 * A subject per user, so that the room stream's per-subject limit gives each user a share of the
 * broadcasts: one member causing many (its hand up and down, reconnects) pushes out only older
 * broadcasts about itself (docs/decisions.md, "A history no member can evict alone").
 */
export const userEventsSubject = (roomId: string, userId: string): string =>
  `room.${roomId}.evt.${userId}`;
/**
 * The token of the presence batches' subject: `~` occurs in no user id (src/protocol/ids.ts), so no
 * user's broadcast subject is this one, and a user's share of the history stays its own.
 */
const PRESENCE_BATCH_TOKEN = '~presence';
/**
 * `room.{roomId}.evt.~presence`: the presence batches of a large room (`EVT_PRESENCE_BATCH`,
 * docs/protocol.md). Under `room.{roomId}.evt.*`, so every member's consumer filter and the
 * republished copy already cover it; a subject of its own, so the stream's per-subject limit
 * keeps the last batches apart from any user's broadcasts.
 */
export const presenceBatchSubject = (roomId: string): string =>
  `room.${roomId}.evt.${PRESENCE_BATCH_TOKEN}`;
/** Where a broadcast goes: about a user (a valid id), or about the room. */
export const broadcastSubject = (roomId: string, aboutUser?: unknown): string =>
  isValidId(aboutUser) ? userEventsSubject(roomId, aboutUser) : roomEventsSubject(roomId);
/** `room.{roomId}.user.{userId}`: answers to one user. */
export const userAnswerSubject = (roomId: string, userId: string): string =>
  `room.${roomId}.user.${userId}`;
/** `room.{roomId}.live.{userId}`: core NATS, not stored (cursors, typing). */
export const liveSubject = (roomId: string, userId: string): string =>
  `room.${roomId}.live.${userId}`;

/** What a subject of a room stream carries. */
export const RoomSubjectKind = {
  Chat: 'chat',
  Whiteboard: 'wb',
  Events: 'evt',
  Answer: 'user',
  Live: 'live',
} as const;
export type RoomSubjectKind = (typeof RoomSubjectKind)[keyof typeof RoomSubjectKind];

const ROOM_SUBJECT_KINDS: ReadonlySet<string> = new Set(Object.values(RoomSubjectKind));

/**
 * Parses `room.{roomId}.{kind}[.{userId}]` (the sender for chat, whiteboard and live; the
 * recipient for answers; whom a broadcast is about, for broadcasts about a user); undefined for
 * anything else.
 */
export function parseRoomSubject(
  subject: string,
): { roomId: string; kind: RoomSubjectKind; userId?: string } | undefined {
  const parts = subject.split('.');
  if (parts[0] !== 'room' || parts.length < 3 || parts.length > 4) return undefined;
  const [, roomId, kind, userId] = parts as [string, string, string, string | undefined];
  if (!ROOM_SUBJECT_KINDS.has(kind)) return undefined;
  if (kind !== RoomSubjectKind.Events && userId === undefined) return undefined;
  return { roomId, kind: kind as RoomSubjectKind, ...(userId !== undefined ? { userId } : {}) };
}

/** Token that marks a room stream's republished copy: `room.{roomId}.rp.…`. */
const REPUBLISH_TOKEN = 'rp';

/**
 * Where the room stream republishes what it stores (`room.{roomId}.{kind}…` →
 * `room.{roomId}.rp.{kind}…`, with `Nats-Stream`/`Nats-Sequence` headers): every device of every
 * member gets the room at core NATS speed, and the consumer serves only catch-up.
 */
export const roomRepublish = (roomId: string): { src: string; dest: string } => ({
  src: `room.${roomId}.>`,
  dest: `room.${roomId}.${REPUBLISH_TOKEN}.>`,
});

/** The republished copy of a room stream subject. */
export function republishedSubject(subject: string): string {
  const [prefix, roomId, ...rest] = subject.split('.');
  return [prefix, roomId, REPUBLISH_TOKEN, ...rest].join('.');
}

/** The room stream subject of a republished copy; undefined for anything else. */
export function unrepublishedSubject(subject: string): string | undefined {
  // On every message a device receives: slices, not split and join.
  if (!subject.startsWith('room.')) return undefined;
  const dot = subject.indexOf('.', 5);
  if (dot < 0 || !subject.startsWith(`${REPUBLISH_TOKEN}.`, dot + 1)) return undefined;
  const rest = subject.slice(dot + 2 + REPUBLISH_TOKEN.length);
  return rest.length > 0 ? `${subject.slice(0, dot)}.${rest}` : undefined;
}

/** Every room's republished subjects: the stream that APP exports to CLIENTS. */
export const REPUBLISH_EXPORT = `room.*.${REPUBLISH_TOKEN}.>`;

/** The per-user durable consumer on the room stream is named after the user. */
export const userConsumerName = (userId: string): string => userId;

/**
 * A device's consumer: `{userId}~{deviceId}`, the user's own for no device. `~` occurs in no id,
 * so no device consumer of one user can be named like another user's.
 */
export const deviceConsumerName = (userId: string, deviceId?: string): string =>
  deviceId === undefined ? userConsumerName(userId) : `${userId}~${deviceId}`;

/** The user a consumer named by {@link deviceConsumerName} belongs to. */
export const consumerUser = (name: string): string => {
  const tilde = name.indexOf('~');
  return tilde < 0 ? name : name.slice(0, tilde);
};

/** Prefix of a connection name that names a device. */
export const DEVICE_NAME_PREFIX = 'torii-device:';
/** Longest device id, in characters. */
export const MAX_DEVICE_ID_LENGTH = 32;
/** What a device id may be, for messages. */
export const DEVICE_ID_RULE = `letters, digits, '_' and '-', at most ${MAX_DEVICE_ID_LENGTH}`;

/** True for a valid device id: an id (docs/protocol.md) of at most {@link MAX_DEVICE_ID_LENGTH}. */
export const isValidDeviceId = (id: unknown): boolean =>
  isValidId(id) && id.length <= MAX_DEVICE_ID_LENGTH;

/** The connection name that names a device (the callout reads it from CONNECT). */
export const deviceConnectionName = (deviceId: string): string =>
  `${DEVICE_NAME_PREFIX}${deviceId}`;

/**
 * The device a connection name names; undefined when it names none.
 * @throws Error when the name has the device prefix but not a valid id
 */
export function parseDeviceName(name: unknown): string | undefined {
  if (typeof name !== 'string' || !name.startsWith(DEVICE_NAME_PREFIX)) return undefined;
  const id = name.slice(DEVICE_NAME_PREFIX.length);
  if (!isValidDeviceId(id)) throw new Error(`device id ${JSON.stringify(id)}: ${DEVICE_ID_RULE}`);
  return id;
}

/** Filter subjects of a user's consumer (non-overlapping, docs/protocol.md). */
export const userConsumerFilters = (roomId: string, userId: string): string[] => [
  `room.${roomId}.chat.*`,
  `room.${roomId}.wb.*`,
  roomEventsSubject(roomId),
  userEventsSubject(roomId, '*'),
  userAnswerSubject(roomId, userId),
];

/** `_INBOX.{roomId}.{userId}`: the inbox prefix a client must use. */
export const userInboxPrefix = (roomId: string, userId: string): string =>
  `_INBOX.${roomId}.${userId}`;

/**
 * Every inbox: what `--inbox-policy shared` lets a legacy client subscribe to (one that cannot
 * use its own {@link userInboxPrefix}), at the cost of reading everyone's replies.
 */
export const ALL_INBOXES = '_INBOX.>';

/** JetStream API subjects a client may use for its own room and consumer. */
export const JsApi = {
  /** Account info; imported only so that the server's own "not enabled" answer stays out. */
  ACCOUNT_INFO: '$JS.API.INFO',
  streamInfo: (stream: string): string => `$JS.API.STREAM.INFO.${stream}`,
  consumerInfo: (stream: string, consumer: string): string =>
    `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
  consumerNext: (stream: string, consumer: string): string =>
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
  /**
   * The acks of one consumer, in both formats nats-server ≥ 2.14 subscribes every consumer to
   * (`server/consumer.go`) and the only ones it does: v1
   * `$JS.ACK.{stream}.{consumer}.{delivered}.{sseq}.{cseq}.{ts}.{pending}` (9 tokens), and v2
   * `$JS.ACK.{domain}.{account hash}.{stream}.{consumer}.…` (11 tokens or more), the reply of
   * every delivery once the server's `js_ack_fc_v2` feature flag is on (planned to become the
   * default). v2's domain (`_` without one) and account hash are wildcards: they name the
   * exporting account, which the import already fixes. The token counts keep the two patterns
   * disjoint from each other's form, so neither reaches another stream's or consumer's acks
   * (docs/decisions.md, "Both ack formats").
   */
  acks: (stream: string, consumer: string): readonly [v1: string, v2: string] => [
    `$JS.ACK.${stream}.${consumer}.*.*.*.*.*`,
    `$JS.ACK.*.*.${stream}.${consumer}.*.*.*.*.>`,
  ],
  /**
   * Every consumer's acks in both formats (5 tokens or more after `$JS.ACK`): the one import of
   * `CLIENTS`; each client's permissions narrow it to {@link JsApi.acks} of its own consumer.
   */
  ALL_ACKS: '$JS.ACK.*.*.>',
  /** Moves a consumer's next delivery to a stream sequence (catch-up after a reconnect). */
  consumerReset: (stream: string, consumer: string): string =>
    `$JS.API.CONSUMER.RESET.${stream}.${consumer}`,
} as const;

/** Prefix of JetStream's advisories, published in the account of the stream. */
const JS_ADVISORY = '$JS.EVENT.ADVISORY';

/** JetStream advisories that tell a cache its stream or consumer is gone (or new). */
export const JsAdvisory = {
  /** `$JS.EVENT.ADVISORY.STREAM.CREATED.{stream}` (`*` for every stream). */
  streamCreated: (stream: string): string => `${JS_ADVISORY}.STREAM.CREATED.${stream}`,
  /** `$JS.EVENT.ADVISORY.STREAM.DELETED.{stream}` */
  streamDeleted: (stream: string): string => `${JS_ADVISORY}.STREAM.DELETED.${stream}`,
  /** `$JS.EVENT.ADVISORY.CONSUMER.DELETED.{stream}.{consumer}` */
  consumerDeleted: (stream: string, consumer: string): string =>
    `${JS_ADVISORY}.CONSUMER.DELETED.${stream}.${consumer}`,
  /** `$JS.EVENT.ADVISORY.API`: the audit of every JetStream API call, answer included. */
  apiAudit: (): string => `${JS_ADVISORY}.API`,
} as const;

/**
 * Parses a stream or consumer advisory subject of {@link JsAdvisory}: what happened, to which
 * stream, and for consumer advisories to which consumer; undefined for anything else.
 */
export function parseJsAdvisory(
  subject: string,
): { kind: 'STREAM' | 'CONSUMER'; action: string; stream: string; consumer?: string } | undefined {
  if (!subject.startsWith(`${JS_ADVISORY}.`)) return undefined;
  const [kind, action, stream, consumer, extra] = subject.slice(JS_ADVISORY.length + 1).split('.');
  if (!action || !stream || extra !== undefined) return undefined;
  if (kind === 'STREAM' && consumer === undefined) return { kind, action, stream };
  if (kind === 'CONSUMER' && consumer !== undefined) return { kind, action, stream, consumer };
  return undefined;
}

/**
 * The subjects of `APP` that the `CLIENTS` account imports as services: everything a room client
 * publishes that must reach a stream, a consumer or JetStream's API (docs/protocol.md). A client's
 * permissions narrow each to its own room and user; `room.{roomId}.live.*` stays inside `CLIENTS`.
 */
export const CLIENT_SERVICE_IMPORTS: readonly string[] = [
  roleWorkerSubject('*', '*', '*'),
  chatSubject('*', '*'),
  whiteboardSubject('*', '*'),
  JsApi.ACCOUNT_INFO,
  JsApi.streamInfo('*'),
  JsApi.consumerInfo('*', '*'),
  JsApi.consumerNext('*', '*'),
  JsApi.consumerReset('*', '*'),
  JsApi.ALL_ACKS,
];

/**
 * `{roomId}/{userId}`: the name of a room client's NATS user JWT, which the servers report as the
 * connection's user in connect events and CONNZ (`authorized_user`, and its `user` filter).
 */
export const clientUserName = (roomId: string, userId: string): string => `${roomId}/${userId}`;

/** NATS system subjects (auth callout, events, server requests). */
export const Sys = {
  /** Where the server sends auth callout requests. */
  AUTH_CALLOUT: '$SYS.REQ.USER.AUTH',
  connect: (account: string): string => `$SYS.ACCOUNT.${account}.CONNECT`,
  disconnect: (account: string): string => `$SYS.ACCOUNT.${account}.DISCONNECT`,
  /** Every server's shutdown advisory. */
  SERVER_SHUTDOWN_ALL: '$SYS.SERVER.*.SHUTDOWN',
  /** One reply per server, listing the account's connections. */
  accountConnz: (account: string): string => `$SYS.REQ.ACCOUNT.${account}.CONNZ`,
  /**
   * One reply per server with connections in the account: its counters (messages and bytes
   * received from the account's clients since the server started), cheap at any size.
   */
  accountStatz: (account: string): string => `$SYS.REQ.ACCOUNT.${account}.STATZ`,
  kick: (serverId: string): string => `$SYS.REQ.SERVER.${serverId}.KICK`,
  /** One server's connections (a server that is gone has no responder). */
  serverConnz: (serverId: string): string => `$SYS.REQ.SERVER.${serverId}.CONNZ`,
} as const;
