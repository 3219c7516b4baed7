/**
 * JetStream assets of Torii: the `sysJsWorker` work-queue stream, each room's stream and each
 * user's durable consumer on it (docs/protocol.md). Config builders are pure; `ensure*` functions
 * are idempotent.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType as JsStorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { CompiledRoomConfig } from '../domain/room-compile.js';
import {
  roomRepublish,
  roomStreamName,
  roomStreamSubjects,
  userConsumerFilters,
  userConsumerName,
  WORKER_STREAM,
  WORKER_STREAM_SUBJECTS,
} from '../protocol/subjects.js';
import {
  isJsError,
  JS_CONSUMER_CREATE,
  JS_CONSUMER_EXISTS,
  JS_CONSUMER_NOT_FOUND,
  JS_CONSUMER_OFFLINE,
  JS_STREAM_NOT_FOUND,
  PROBE_TIMEOUT_MS,
} from '../protocol/jetstream.js';

/** Milliseconds → the nanoseconds JetStream's API takes. */
export const nanos = (ms: number): number => ms * 1_000_000;

/**
 * Default `inactive_threshold` of a user's or device's consumer, in milliseconds: nats-server
 * deletes it this long after its last pull, delivery or ack. A consumer serves only the catch-up
 * right after a connect or reconnect (live messages come as republished copies, and the client
 * moves the consumer to just after what it last handed on), and every reconnect passes the
 * callout, which creates it again: so it exists only while it is needed, and a connected user
 * costs nats-server no consumer at rest (docs/decisions.md, "A consumer only while it is
 * needed"). 30 s is many times a catch-up (each pull, at most {@link CATCH_UP_STEP_MS} apart,
 * counts as activity) and the ack wait the server adds to it for unacked deliveries.
 */
export const DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS = 30_000;
/** Messages a user may hold unacked before the server pauses delivery to it. */
const USER_MAX_ACK_PENDING = 1_000;
/** How long a message of the worker queue is kept if no worker takes it. */
const WORKER_STREAM_MAX_AGE_MS = 3_600_000;
/** Duplicate window for client retries (`Nats-Msg-Id`). */
const WORKER_DUPLICATE_WINDOW_MS = 120_000;
/** Largest event payload a client may send, in bytes. */
export const WORKER_MAX_MSG_SIZE = 64 * 1024;
/**
 * Events one connection's subject (`sysJsWorker.{room}.{user}.{role}`) may have queued, at most.
 * A burst of a few hundred is a user clicking through a slow moment; a thousand waiting is a
 * script, and the next one is refused (its PubAck is an error), not stored: a flood costs its
 * sender, and at most {@link WORKER_MAX_PER_USER} × {@link WORKER_MAX_MSG_SIZE} of the queue.
 */
export const WORKER_MAX_PER_USER = 1_000;
/**
 * Bytes the work queue may hold, at most; reserved on every server with a replica, like the
 * buckets' bounds (docs/operations.md).
 */
export const WORKER_MAX_BYTES = 256 * 1024 ** 2;

/** The work-queue stream carrying client events to the workers. */
export function workerStreamConfig(replicas = 1): Partial<StreamConfig> {
  return {
    name: WORKER_STREAM,
    subjects: WORKER_STREAM_SUBJECTS,
    retention: RetentionPolicy.Workqueue,
    storage: JsStorageType.File,
    num_replicas: replicas,
    max_age: nanos(WORKER_STREAM_MAX_AGE_MS),
    duplicate_window: nanos(WORKER_DUPLICATE_WINDOW_MS),
    max_msg_size: WORKER_MAX_MSG_SIZE,
    max_bytes: WORKER_MAX_BYTES,
    max_msgs_per_subject: WORKER_MAX_PER_USER,
    // Refuse what does not fit rather than drop what is queued: a dropped event is an answer
    // its sender waits for in vain, a refused one an error it sees at once.
    discard: DiscardPolicy.New,
    discard_new_per_subject: true,
  };
}

/** Devices a user may have in one room, besides its connections that name none. */
export const MAX_DEVICES_PER_USER = 5;
/** Consumers one seat may need: one per device and the user's own (connections naming none). */
export const CONSUMERS_PER_SEAT = MAX_DEVICES_PER_USER + 1;

/**
 * Consumers a room stream allows. nats-server 2.15 caps streams at 1,000 consumers unless the
 * stream says otherwise (and -1 does not opt out), so each room sets its own bound: enough for a
 * full room whose every user has the most devices. Consumers of users who left are kept for the
 * retention period on top of those; when they fill the stream, the callout deletes the oldest of
 * them to admit someone (docs/decisions.md, "A room's consumer limit counts who is there").
 */
export function roomMaxConsumers(room: CompiledRoomConfig): number {
  return Math.max(CONSUMERS_PER_SEAT * room.maxParticipants, ROOM_MIN_MAX_CONSUMERS);
}
/** Floor of {@link roomMaxConsumers}. */
const ROOM_MIN_MAX_CONSUMERS = 64;

/** A room's stream, from its compiled config. */
export function roomStreamConfig(room: CompiledRoomConfig): Partial<StreamConfig> {
  return {
    name: roomStreamName(room.roomId),
    subjects: roomStreamSubjects(room.roomId),
    retention: RetentionPolicy.Limits,
    storage: room.history.storage === 'memory' ? JsStorageType.Memory : JsStorageType.File,
    num_replicas: room.history.replicas,
    max_age: nanos(room.history.maxAgeMs),
    max_msgs: room.history.maxMessages,
    max_bytes: room.history.maxBytes,
    // Per subject, so per member: a flood pushes out its sender's own older messages, and the
    // room's budget holds every other member's history besides one full share (room-history.ts).
    max_msgs_per_subject: room.history.maxMessagesPerUser,
    max_msg_size: room.history.maxMessageSize,
    discard: DiscardPolicy.Old,
    max_consumers: roomMaxConsumers(room),
    allow_direct: true,
    republish: roomRepublish(room.roomId),
  };
}

/**
 * A user's durable pull consumer: R1, memory, history from the start. Acks are cumulative
 * (`AckPolicy.All`): a catch-up acks the last message of each batch only. Each ack subject is
 * unique, and nats-server keeps every subject a connection publishes in per-connection caches
 * (the publish-permission cache, the permission sublist's match cache, the inbound result
 * cache) until they fill: one ack per batch instead of one per message keeps a member's caches
 * small (docs/decisions.md, "A consumer only while it is needed").
 */
export function userConsumerConfig(
  roomId: string,
  userId: string,
  inactiveThresholdMs = DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS,
  name: string = userConsumerName(userId),
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: name,
    filter_subjects: userConsumerFilters(roomId, userId),
    ack_policy: AckPolicy.All,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: USER_MAX_ACK_PENDING,
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: nanos(inactiveThresholdMs),
  };
}

const isNotFound = (e: unknown): boolean => isJsError(e, JS_STREAM_NOT_FOUND);

/** Creates a stream, or updates it when it exists. Returns whether it was created. */
async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
): Promise<'created' | 'updated'> {
  try {
    await jsm.streams.info(config.name);
  } catch (e) {
    if (!isNotFound(e)) throw e;
    await jsm.streams.add(config);
    return 'created';
  }
  await jsm.streams.update(config.name, config);
  return 'updated';
}

/** What {@link ensureConsumer} did. */
type EnsuredConsumer = 'ensured' | 'restored';

/** A request JetStream did not answer in time (nats.js names it so in every transport). */
const isTimeout = (e: unknown): boolean => e instanceof Error && e.name === 'TimeoutError';

/**
 * Creates a durable consumer; one that exists with another configuration (an older Torii) is
 * updated to this one, and a one-replica consumer that no server serves is restored
 * ({@link restoreConsumer}).
 * Add alone is idempotent only for an identical configuration.
 */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<EnsuredConsumer> {
  try {
    await jsm.consumers.add(stream, config);
  } catch (e) {
    // Only a one-replica consumer: a replicated one that does not answer is electing a leader.
    const single = config.num_replicas === 1;
    if (
      single &&
      (isJsError(e, JS_CONSUMER_OFFLINE) || (isTimeout(e) && (await unserved(jsm, stream, config))))
    ) {
      await restoreConsumer(jsm, stream, config);
      return 'restored';
    }
    if (!isJsError(e, JS_CONSUMER_EXISTS)) throw e;
    try {
      await jsm.consumers.update(stream, config.durable_name, config);
    } catch (u) {
      // A consumer of an older Torii with a setting JetStream cannot change in place (its ack
      // policy): it holds nothing a client needs (the client moves it when it catches up), so
      // it is created again.
      if (!isImmutableChange(u)) throw u;
      await jsm.consumers.delete(stream, config.durable_name).catch((d: unknown) => {
        if (!isJsError(d, JS_CONSUMER_NOT_FOUND)) throw d;
      });
      await jsm.consumers.add(stream, config);
    }
  }
  return 'ensured';
}

/** An update refused because it changes what a consumer cannot change (its ack policy, …). */
const isImmutableChange = (e: unknown): boolean =>
  isJsError(e, JS_CONSUMER_CREATE) &&
  e instanceof JetStreamApiError &&
  /can not be updated/.test(e.apiError().description);

async function unserved(
  jsm: JetStreamManager,
  stream: string,
  config: { durable_name: string },
): Promise<boolean> {
  const state = await consumerState(jsm, stream, config.durable_name);
  return state === 'offline' || state === 'unserved';
}

/** How long {@link restoreConsumer} waits for a deleted consumer to be gone, in milliseconds. */
const RESTORE_DELETE_WAIT_MS = 15_000;
/** Interval of its checks, in milliseconds. */
const RESTORE_POLL_MS = 200;
/** Creates tried by {@link restoreConsumer}: JetStream may place the new one on a dead server. */
const RESTORE_ATTEMPTS = 3;

const TIMED_OUT = Symbol('timed out');
/** `p`, or {@link TIMED_OUT} when it takes longer than `ms` (`p` still runs; its end is ignored). */
function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<typeof TIMED_OUT>((r) => (timer = setTimeout(() => r(TIMED_OUT), ms)));
  p.catch(() => undefined);
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Restores a consumer that no server serves (its one server died): deletes it and creates it
 * again, where a server is up. The meta leader applies the delete but answers it only once it
 * counts the server as gone, which for a killed server takes minutes: so the answer is not
 * waited for, and the consumer counts as deleted once its info says it does not exist. Its
 * position is lost with its server; the client moves the new one to what it last received
 * (`$JS.API.CONSUMER.RESET`) when it catches up, so nothing is missed.
 * @throws when the consumer is not gone within {@link RESTORE_DELETE_WAIT_MS}, or is still not
 *   served after {@link RESTORE_ATTEMPTS} creates
 */
export async function restoreConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  const name = config.durable_name;
  for (let attempt = 1; ; attempt++) {
    let refused: Error | undefined;
    jsm.consumers.delete(stream, name).catch((e: unknown) => {
      // Gone already (another replica restores it too), or applied but not answered.
      if (!isJsError(e, JS_CONSUMER_NOT_FOUND) && !isTimeout(e))
        refused = e instanceof Error ? e : new Error(String(e));
    });
    for (const deadline = Date.now() + RESTORE_DELETE_WAIT_MS; ;) {
      const state = await consumerState(jsm, stream, name).catch(() => 'unknown' as const);
      if (state === 'missing') break;
      if (refused !== undefined) throw refused;
      if (Date.now() > deadline)
        throw new Error(`consumer ${stream} > ${name} still ${state} after its delete`);
      await new Promise((r) => setTimeout(r, RESTORE_POLL_MS));
    }
    try {
      await jsm.consumers.add(stream, config);
      return;
    } catch (e) {
      // Another replica created it first, with the same configuration or an older Torii's.
      if (isJsError(e, JS_CONSUMER_EXISTS)) return;
      // Placed on the dead server again: its create is never answered.
      if (!isTimeout(e) || attempt >= RESTORE_ATTEMPTS) throw e;
    }
  }
}

/**
 * How JetStream serves a consumer: `ok`; `offline` when it counts the consumer's servers as gone;
 * `unserved` when the consumer's info is not answered within {@link PROBE_TIMEOUT_MS} while its
 * stream's is (its one server is dead, and JetStream does not count it gone yet); `missing` when
 * it does not exist. Other failures (no meta leader, the stream not answering) are thrown.
 */
export async function consumerState(
  jsm: JetStreamManager,
  stream: string,
  name: string,
): Promise<'ok' | 'offline' | 'unserved' | 'missing'> {
  try {
    if ((await within(jsm.consumers.info(stream, name), PROBE_TIMEOUT_MS)) !== TIMED_OUT)
      return 'ok';
  } catch (e) {
    if (isJsError(e, JS_CONSUMER_OFFLINE)) return 'offline';
    if (isJsError(e, JS_CONSUMER_NOT_FOUND)) return 'missing';
    if (!isTimeout(e)) throw e;
  }
  if ((await within(jsm.streams.info(stream), PROBE_TIMEOUT_MS)) === TIMED_OUT)
    throw new Error(`stream ${stream} does not answer either`);
  return 'unserved';
}

/** Ensures the `sysJsWorker` stream. */
export function ensureWorkerStream(
  jsm: JetStreamManager,
  replicas = 1,
): Promise<'created' | 'updated'> {
  return ensureStream(jsm, { ...workerStreamConfig(replicas), name: WORKER_STREAM });
}

/** Ensures a room's stream. */
export function ensureRoomStream(
  jsm: JetStreamManager,
  room: CompiledRoomConfig,
): Promise<'created' | 'updated'> {
  return ensureStream(jsm, { ...roomStreamConfig(room), name: roomStreamName(room.roomId) });
}
