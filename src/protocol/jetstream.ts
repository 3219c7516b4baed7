/**
 * The JetStream facts of the wire contract a client depends on: how long a catch-up step and a
 * consumer probe may take, and the JetStream API error codes a client (and Torii's roles) tell
 * apart, and the one way they are told apart ({@link isJsError}). Browser-safe
 * (docs/protocol.md).
 */
import { JetStreamApiError } from '@nats-io/jetstream';

/** Longest pause between two steps of a client's catch-up (the SDK's timeout per step), in ms. */
export const CATCH_UP_STEP_MS = 5_000;

/**
 * Longest wait for JetStream to answer a question about a consumer, in milliseconds: a served
 * consumer answers in milliseconds, and one that is not is asked about while a client waits.
 */
export const PROBE_TIMEOUT_MS = 2_000;

/** JetStream's error code for "stream not found". */
export const JS_STREAM_NOT_FOUND = 10059;

/** JetStream's error code for "consumer already exists" (with another configuration). */
export const JS_CONSUMER_EXISTS = 10148;

/** JetStream's error code for "message size exceeds maximum allowed" (the stream's `max_msg_size`). */
export const JS_MESSAGE_TOO_LARGE = 10054;

/** JetStream's error code for "maximum consumers limit reached" (the stream's `max_consumers`). */
export const JS_MAX_CONSUMERS = 10026;

/** JetStream's error code for "consumer not found". */
export const JS_CONSUMER_NOT_FOUND = 10014;

/**
 * JetStream's error code for "consumer is offline": every server holding the consumer is gone.
 * A user consumer has one replica (docs/protocol.md), so it is offline from the moment its server
 * dies until that server comes back, which may be never.
 */
export const JS_CONSUMER_OFFLINE = 10119;

/** JetStream's error code for a consumer create or update it refuses (`JSConsumerCreateErrF`). */
export const JS_CONSUMER_CREATE = 10012;

/** JetStream's error code for "wrong last sequence": a write whose expected revision was stale. */
export const JS_STREAM_WRONG_LAST_SEQUENCE = 10071;
/** The same, when the subject had no message yet ("wrong last sequence: unknown"). */
export const JS_STREAM_WRONG_LAST_SEQUENCE_UNKNOWN = 10164;
/** JetStream's error code for a store that failed (the work queue full, among others). */
export const JS_STREAM_STORE_FAILED = 10077;

/**
 * JetStream's error code of a failure: a thrown `JetStreamApiError`, or the `error` of an API
 * answer read as JSON (a raw request); undefined for anything else.
 */
export function jsErrorCode(e: unknown): number | undefined {
  if (e instanceof JetStreamApiError) return e.apiError().err_code;
  if (typeof e === 'object' && e !== null && 'error' in e) {
    const code = (e as { error?: { err_code?: unknown } }).error?.err_code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

/** True for a failure with JetStream's error code `code` (see {@link jsErrorCode}). */
export const isJsError = (e: unknown, ...codes: number[]): boolean => {
  const code = jsErrorCode(e);
  return code !== undefined && codes.includes(code);
};
