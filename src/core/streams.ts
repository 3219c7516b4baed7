/**
 * JetStream assets of Torii: the `sysJsWorker` work-queue stream, each room's stream and each
 * user's durable consumer on it (DESIGN.md §5). Config builders are pure; `ensure*` functions
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
import type { CompiledRoomConfig } from './room.js';
import {
  roomRepublish,
  roomStreamName,
  roomStreamSubjects,
  userConsumerFilters,
  userConsumerName,
  WORKER_STREAM,
  WORKER_STREAM_SUBJECTS,
} from './subjects.js';

/** Milliseconds → the nanoseconds JetStream's API takes. */
export const nanos = (ms: number): number => ms * 1_000_000;

/** Default `inactive_threshold` of a user's consumer: the safety net behind presence cleanup. */
export const DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS = 24 * 3_600_000;
/** Messages a user may hold unacked before the server pauses delivery to it. */
export const USER_MAX_ACK_PENDING = 1_000;
/** How long a message of the worker queue is kept if no worker takes it. */
export const WORKER_STREAM_MAX_AGE_MS = 3_600_000;
/** Duplicate window for client retries (`Nats-Msg-Id`). */
export const WORKER_DUPLICATE_WINDOW_MS = 120_000;
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

/**
 * Consumers a room stream allows. nats-server 2.15 caps streams at 1,000 consumers unless the
 * stream says otherwise (and -1 does not opt out), so each room sets its own bound: one durable
 * per participant, twice over for users who left but whose consumer is still retained.
 */
export function roomMaxConsumers(room: CompiledRoomConfig): number {
  return Math.max(2 * room.maxParticipants, ROOM_MIN_MAX_CONSUMERS);
}
/** Floor of {@link roomMaxConsumers}. */
export const ROOM_MIN_MAX_CONSUMERS = 64;

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
    discard: DiscardPolicy.Old,
    max_consumers: roomMaxConsumers(room),
    allow_direct: true,
    republish: roomRepublish(room.roomId),
  };
}

/** A user's durable pull consumer: R1, memory, explicit ack, history from the start. */
export function userConsumerConfig(
  roomId: string,
  userId: string,
  inactiveThresholdMs = DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS,
  name: string = userConsumerName(userId),
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: name,
    filter_subjects: userConsumerFilters(roomId, userId),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: USER_MAX_ACK_PENDING,
    mem_storage: true,
    num_replicas: 1,
    inactive_threshold: nanos(inactiveThresholdMs),
  };
}

/** JetStream's error code for "stream not found". */
export const JS_STREAM_NOT_FOUND = 10059;
/** JetStream's error code for "consumer already exists" (with another configuration). */
export const JS_CONSUMER_EXISTS = 10148;

function isNotFound(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.apiError().err_code === JS_STREAM_NOT_FOUND;
}

/** Creates a stream, or updates it when it exists. Returns whether it was created. */
export async function ensureStream(
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

/**
 * Creates a durable consumer; one that exists with another configuration (an older Torii) is
 * updated to this one. Add alone is idempotent only for an identical configuration.
 */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  try {
    await jsm.consumers.add(stream, config);
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.apiError().err_code === JS_CONSUMER_EXISTS)) throw e;
    await jsm.consumers.update(stream, config.durable_name, config);
  }
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
