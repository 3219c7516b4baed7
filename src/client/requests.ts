/**
 * Requests answered by id: an event is published to the role's worker subject with an id of
 * this connection's own, and the worker's answer comes back in the room stream with that id
 * (docs/protocol.md). {@link PendingAnswers} matches answers to what waits for them;
 * {@link RoomSender} sends events, chat and whiteboard messages into the room stream.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { newRequestIdPrefix } from './live.js';
import type { StoredPublisher } from './pubacks.js';
import { MAX_REQUEST_BYTES, type Answer } from '../protocol/events.js';
import { retry } from '../domain/retry.js';
import { ToriiError, type AnswerCode, type ErrorCode } from '../protocol/errors.js';
import { chatSubject, roleWorkerSubject, whiteboardSubject } from '../protocol/subjects.js';
import { isJsError, JS_STREAM_STORE_FAILED } from '../protocol/jetstream.js';

const UTF8 = new TextEncoder();

/** Default time to wait for an answer, in milliseconds. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * JetStream's code for a message its stream would not store (`JSStreamStoreFailedF`); the work
 * queue's limits say which (maximum messages per subject, bytes, messages).
 */
const QUEUE_FULL = /maximum (messages|bytes)/i;
/** True when the work queue refused an event for its limits: the sender's share, or all of it. */
const isQueueFull = (e: unknown): e is JetStreamApiError =>
  e instanceof JetStreamApiError &&
  isJsError(e, JS_STREAM_STORE_FAILED) &&
  QUEUE_FULL.test(e.message);

/** Longest wait for one publish of an event, in milliseconds. */
const PUBLISH_TIMEOUT_MS = 5_000;
/** First and longest pause between two publishes of one event, in milliseconds. */
const PUBLISH_RETRY_FIRST_MS = 250;
const PUBLISH_RETRY_MAX_MS = 2_000;
/** Publish failures that pass: JetStream starting on a server, a leader being elected. */
const TRANSIENT_PUBLISH_ERRORS: ReadonlySet<string> = new Set([
  'JetStreamNotEnabled',
  'NoStreamError',
  'TimeoutError',
]);
const isTransient = (e: unknown): boolean =>
  e instanceof Error && TRANSIENT_PUBLISH_ERRORS.has(e.name);

/**
 * An error answer from the worker (its {@link AnswerCode}), or `TIMEOUT` when none came in time:
 * Torii's one error type, as the SDK raises it.
 */
export class RoomRequestError extends ToriiError {
  declare readonly code: AnswerCode | typeof ErrorCode.Timeout;

  constructor(code: AnswerCode | typeof ErrorCode.Timeout, message: string) {
    super(code, message);
  }
}

/**
 * The requests waiting for their answer, by id, each with its timeout. An answer arrives as a
 * room message like any other (it may come during a catch-up, or after a reconnect), so the
 * waiting side and the receiving side meet here.
 */
export class PendingAnswers {
  private readonly pending = new Map<
    string,
    { resolve: (a: Answer) => void; timer: ReturnType<typeof setTimeout> }
  >();

  /**
   * Waits for the answer with `id`: rejects with a `TIMEOUT` {@link RoomRequestError} naming
   * `event` after `timeoutMs`. The promise is observed here, so a request abandoned before it is
   * awaited never becomes an unhandled rejection.
   */
  wait(id: string, event: string, timeoutMs: number): Promise<Answer> {
    const answer = new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RoomRequestError('TIMEOUT', `no answer to ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
    });
    answer.catch(() => undefined);
    return answer;
  }

  /** Resolves the request this answer is for, if one waits (an answer without id is no one's). */
  answer(a: Answer): void {
    const p = a.id !== null ? this.pending.get(a.id) : undefined;
    if (p && a.id !== null) {
      clearTimeout(p.timer);
      this.pending.delete(a.id);
      p.resolve(a);
    }
  }

  /** Stops waiting for `id` (its event was never stored); its promise stays unsettled. */
  forget(id: string): void {
    const p = this.pending.get(id);
    if (p) clearTimeout(p.timer);
    this.pending.delete(id);
  }

  /** Stops waiting for every request, so that no timer outlives the connection. */
  clear(): void {
    for (const [, p] of this.pending) clearTimeout(p.timer);
    this.pending.clear();
  }
}

/** What a {@link RoomSender} needs of its connection. */
interface RoomSenderDeps {
  nc: NatsConnection;
  publisher: StoredPublisher;
  pending: PendingAnswers;
  roomId: string;
  userId: string;
  /** The current token's role: events go to its subject (renewal may change the token). */
  role: () => string;
  /** True once the connection is closed: a publish then stops trying. */
  closed: () => boolean;
}

/**
 * Publishes into the room stream for one member: events (awaiting their answer), chat and
 * whiteboard messages. Every message gets an id of this connection's own, which is both the
 * answer's key and the stream's de-duplication id, so a publish tried again is stored once.
 */
export class RoomSender {
  private counter = 0;
  private readonly prefix = newRequestIdPrefix();

  constructor(private readonly d: RoomSenderDeps) {}

  /**
   * Sends an event and resolves with the answer's data; rejects with {@link RoomRequestError}
   * (an error answer, `TIMEOUT`, `BAD_REQUEST` for a request over the payload bound,
   * `RATE_LIMITED` when the work queue is full).
   */
  async request(event: string, data: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    const id = `${this.prefix}-${++this.counter}`;
    const payload = JSON.stringify({ event, id, data });
    // The server closes a connection that publishes more than max_payload: refuse it here.
    const max = Math.min(this.d.nc.info?.max_payload ?? MAX_REQUEST_BYTES, MAX_REQUEST_BYTES);
    if (UTF8.encode(payload).length > max)
      throw new RoomRequestError('BAD_REQUEST', `request larger than ${max} bytes`);
    const answer = this.d.pending.wait(id, event, timeoutMs);
    try {
      // On the token's role subject: the only one the server lets this connection publish to.
      await this.publishStored(
        roleWorkerSubject(this.d.roomId, this.d.userId, this.d.role()),
        payload,
        id,
        timeoutMs,
      );
    } catch (e) {
      this.d.pending.forget(id);
      if (isQueueFull(e))
        throw new RoomRequestError('RATE_LIMITED', `too many events waiting: ${e.message}`);
      throw e;
    }
    const a = await answer;
    if (!a.ok) throw new RoomRequestError(a.error.code, a.error.message);
    return a.data;
  }

  /** Sends a chat message to the room (stored in the room stream). */
  async chat(text: string, timeoutMs: number): Promise<void> {
    await this.publishStored(
      chatSubject(this.d.roomId, this.d.userId),
      JSON.stringify({ text, at: new Date().toISOString() }),
      `${this.prefix}-c${++this.counter}`,
      timeoutMs,
    );
  }

  /** Sends a whiteboard message to the room (stored in the room stream, so late joiners see it). */
  async whiteboard(data: unknown, timeoutMs: number): Promise<void> {
    await this.publishStored(
      whiteboardSubject(this.d.roomId, this.d.userId),
      JSON.stringify(data),
      `${this.prefix}-w${++this.counter}`,
      timeoutMs,
    );
  }

  /**
   * Publishes to the room's JetStream within `timeoutMs`. A server restarting or a stream
   * electing a leader fails a publish for a moment: it is tried again meanwhile, and stored once
   * whatever the tries (`Nats-Msg-Id` = `msgID`).
   */
  private async publishStored(
    subject: string,
    payload: string,
    msgID: string,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await retry(
      () =>
        this.d.publisher.publish(
          subject,
          payload,
          msgID,
          Math.max(1, Math.min(PUBLISH_TIMEOUT_MS, deadline - Date.now())),
        ),
      {
        firstMs: PUBLISH_RETRY_FIRST_MS,
        maxMs: PUBLISH_RETRY_MAX_MS,
        deadline,
        retryable: isTransient,
        stopped: this.d.closed,
      },
    );
  }
}
