/**
 * `RoomClient`: one connection to a room (the SDK's entry point, docs/protocol.md): connect with
 * the token and the private inbox, catch up and hand each message on once in stream order,
 * requests answered by id, renewal, consumer repair.
 */
import {
  jetstream,
  JetStreamApiError,
  type ConsumerInfo,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import {
  PermissionViolationError,
  tokenAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/nats-core';
import { decodeJwt } from 'jose';
import {
  DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
  DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
  encodeLive,
  LiveFilter,
  newRequestIdPrefix,
  parseLive,
  type LiveMessage,
  type LiveRate,
} from './live.js';
import { StoredPublisher } from './pubacks.js';
import type { AnswerData, RenewedToken, RequestData } from '../protocol/messages.js';
import { readCopy, received, roomCopies } from './republished.js';
import {
  CATCH_UP_STEP_MS,
  JS_CONSUMER_NOT_FOUND,
  JS_CONSUMER_OFFLINE,
  PROBE_TIMEOUT_MS,
} from '../protocol/jetstream.js';
import { MAX_REQUEST_BYTES, RequestEvent, type Answer } from '../protocol/events.js';
import { backoffCeilingMs, jittered, retry } from '../domain/retry.js';
import { ToriiError, type AnswerCode, type ErrorCode } from '../protocol/errors.js';
import {
  chatSubject,
  DEVICE_ID_RULE,
  deviceConnectionName,
  deviceConsumerName,
  isValidDeviceId,
  JsApi,
  liveSubject,
  parseRoomSubject,
  republishedSubject,
  RoomSubjectKind,
  userConsumerFilters,
  roleWorkerSubject,
  whiteboardSubject,
  userInboxPrefix,
} from '../protocol/subjects.js';
import { isJsError, jsErrorCode, JS_STREAM_STORE_FAILED } from '../protocol/jetstream.js';

/** Default time to wait for an answer, in milliseconds. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How long `close()` waits for the leave to be acknowledged, in milliseconds. */
const LEAVE_TIMEOUT_MS = 1_000;
/** Messages kept for the first listener, at most. */
const MAX_BACKLOG = 1_000;
/**
 * Longest wait for one step of a catch-up (reset, one batch), in milliseconds: well under the
 * consumer's inactive threshold, which each pull renews.
 */
const CATCH_UP_TIMEOUT_MS = CATCH_UP_STEP_MS;
/** Messages pulled per catch-up batch, at most. */
const CATCH_UP_BATCH = 256;
/** First and longest pause between two tries of a catch-up that failed, in milliseconds. */
const CATCH_UP_RETRY_FIRST_MS = 250;
const CATCH_UP_RETRY_MAX_MS = 5_000;
/**
 * Least time between two repairs of the consumer, in milliseconds: longer than a worker takes to
 * restore it, during which the consumer is missing for a moment.
 */
const REPAIR_INTERVAL_MS = 15_000;
/**
 * Republished messages held during a catch-up, at most: past it they are dropped, and the
 * catch-up pulls them from the consumer instead (they are in the stream).
 */
const MAX_HELD = 10_000;
const UTF8 = new TextDecoder();
/** Renew this long before the token expires, in milliseconds (at least half its lifetime). */
export const DEFAULT_RENEW_BEFORE_MS = 60_000;

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

/** Something that arrived on the user's consumer. */
export interface RoomMessage {
  kind: 'answer' | 'event' | 'chat' | 'whiteboard';
  subject: string;
  /** Stream sequence in the room stream. */
  seq: number;
  body: unknown;
  /** The sender of a chat or whiteboard message (from the subject, which the server enforces). */
  from?: string;
}

export interface RoomClientOptions {
  servers: string | string[];
  token: string;
  roomId: string;
  userId: string;
  /**
   * The transport's connect function: `wsconnect` from `@nats-io/nats-core` in a browser (with
   * `ws://` or `wss://` servers), `connect` from `@nats-io/transport-node` in Node. Required, so
   * that no transport (and nothing Node-only) is in the SDK's import graph.
   */
  connect: (opts: ConnectionOptions) => Promise<NatsConnection>;
  /** Renew the token automatically; default true. */
  autoRenew?: boolean;
  /**
   * Live updates each sender may hand to the app, at most; beyond it they are dropped (counted in
   * `liveDropped`). Default {@link DEFAULT_LIVE_SENDER_MSGS_PER_SEC} messages and
   * {@link DEFAULT_LIVE_SENDER_BYTES_PER_SEC} bytes a second.
   */
  liveRate?: Partial<LiveRate>;
  /** Called with each renewed token (an app keeps it, to reconnect after a reload). */
  onTokenRenewed?: (token: string) => void;
  renewBeforeMs?: number;
  /** Extra connection options (timeouts, …; the name is the device's when `deviceId` is set). */
  connection?: Partial<ConnectionOptions>;
  /**
   * This device's id (letters, digits, `_`, `-`; at most 32), kept by the app (e.g. in local
   * storage): the device gets a consumer of its own, so its catch-up never moves another
   * device's. Without one, the connection uses the user's own consumer.
   */
  deviceId?: string;
  /**
   * The last stream sequence this device handed to the application before (a restart): catch-up
   * starts after it, so nothing arrives twice; 0 replays everything the room stream holds (a
   * page that keeps no history). Without one, catch-up starts where the device's consumer was
   * last acked; the server deletes a consumer 30 s after its last pull (and the next admission
   * creates it from the room's start), so after a longer absence that is the start.
   */
  resumeAfter?: number;
  /**
   * A listener from the first message on, the whole catch-up included (`on` keeps at most 1,000
   * messages for a listener that comes after `connect`): for replaying a long history.
   */
  listener?: (m: RoomMessage) => void;
}

/**
 * The role a room token grants: events go to that role's subject, the only one the callout lets
 * the connection publish to.
 * @throws RoomRequestError when the token names no role
 */
function roleOf(token: string): string {
  const role = decodeJwt(token).role;
  if (typeof role !== 'string' || role.length === 0)
    throw new RoomRequestError('BAD_REQUEST', 'token: no role claim');
  return role;
}

export class RoomClient {
  private token: string;
  /** The current token's role: events go to its subject. */
  private role: string;
  private readonly js: JetStreamClient;
  private readonly publisher: StoredPublisher;
  private readonly pending = new Map<
    string,
    { resolve: (a: Answer) => void; timer: ReturnType<typeof setTimeout> }
  >();
  private readonly listeners = new Set<(m: RoomMessage) => void>();
  /** Highest stream sequence handed to the application. */
  private lastSeq: number;
  /** Republished messages are held, not handed on: from the start, and from a disconnect, until caught up. */
  private catching = true;
  private catchUpRunning = false;
  private again = false;
  /** When the consumer was last asked to be restored, or reconnected for (ms since the epoch). */
  private lastRepair = 0;
  /** Whether the last repair asked a worker to create the missing consumer. */
  private askedToCreate = false;
  /** Republished messages that arrived during a catch-up. */
  private held: { subject: string; seq: number; data: Uint8Array }[] = [];
  private renewTimer: ReturnType<typeof setTimeout> | undefined;
  private counter = 0;
  private readonly prefix = newRequestIdPrefix();
  private readonly liveListeners = new Set<(m: LiveMessage) => void>();
  private liveFilter: LiveFilter | undefined;
  private closed = false;
  /** What arrived before the first listener (at most {@link MAX_BACKLOG}). */
  private backlog: RoomMessage[] | undefined = [];
  private online = true;
  private readonly statusListeners = new Set<(connected: boolean) => void>();

  private constructor(
    readonly nc: NatsConnection,
    private readonly o: RoomClientOptions,
    token: { current: string },
  ) {
    this.token = token.current;
    this.role = roleOf(token.current);
    this.js = jetstream(nc);
    this.publisher = new StoredPublisher(nc, userInboxPrefix(o.roomId, o.userId));
    this.lastSeq = o.resumeAfter ?? 0;
  }

  /** Connects, starts consuming, and (by default) schedules token renewal. */
  static async connect(o: RoomClientOptions): Promise<RoomClient> {
    if (o.deviceId !== undefined && !isValidDeviceId(o.deviceId))
      throw new RoomRequestError('BAD_REQUEST', `deviceId: ${DEVICE_ID_RULE}`);
    roleOf(o.token); // before connecting: a token without a role could send no event
    const holder = { current: o.token };
    const nc = await o.connect({
      servers: o.servers,
      inboxPrefix: userInboxPrefix(o.roomId, o.userId),
      // The server closes the connection when the NATS JWT expires; the reconnect presents
      // whatever token is current by then (a renewed one).
      authenticator: tokenAuthenticator(() => holder.current),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      ignoreAuthErrorAbort: true,
      // An Error (with its stack) per request costs more than a room message's whole handling.
      noAsyncTraces: true,
      ...o.connection,
      ...(o.deviceId !== undefined ? { name: deviceConnectionName(o.deviceId) } : {}),
    });
    const client = new RoomClient(nc, o, holder);
    client.setToken = (t: string) => {
      holder.current = t;
      client.token = t;
      client.role = roleOf(t);
    };
    if (o.listener) client.on(o.listener);
    client.subscribeLive();
    client.subscribeRoom();
    await client.catchUp();
    void client.watchStatus();
    if (o.autoRenew !== false) client.scheduleRenewal();
    return client;
  }

  /** False while the connection is between servers. */
  get connected(): boolean {
    return this.online && !this.nc.isClosed();
  }

  /** Listens to connection changes; returns a function that stops listening. */
  onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      // What arrives after a reconnect may be newer than what was missed: hold it until caught up.
      if (s.type === 'disconnect') this.catching = true;
      if (s.type === 'reconnect' && !this.closed) void this.catchUp();
      const online = s.type === 'disconnect' ? false : s.type === 'reconnect' ? true : this.online;
      if (online === this.online) continue;
      this.online = online;
      for (const l of this.statusListeners) l(online);
    }
  }

  /** Replaced in `connect` so the authenticator sees new tokens. */
  private setToken: (t: string) => void = () => undefined;

  /** The current room token. */
  get currentToken(): string {
    return this.token;
  }

  /** The last stream sequence handed to the application (keep it for `resumeAfter`). */
  get lastSequence(): number {
    return this.lastSeq;
  }

  /** The consumer this connection catches up from. */
  private get consumerName(): string {
    return deviceConsumerName(this.o.userId, this.o.deviceId);
  }

  /**
   * Subscribes to the republished copies of what the device's consumer would deliver: the room
   * at core NATS speed, on every device at once. What arrives while catching up waits in order.
   */
  private subscribeRoom(): void {
    const { roomId, userId } = this.o;
    const copies = roomCopies(roomId);
    for (const filter of userConsumerFilters(roomId, userId)) {
      this.nc.subscribe(republishedSubject(filter), {
        callback: (err, m) => {
          if (err) return;
          const r = readCopy(copies, m);
          if (!r) return;
          if (!this.catching) this.deliver(r.subject, r.seq, m.data, r);
          else if (this.held.length < MAX_HELD)
            this.held.push({ subject: r.subject, seq: r.seq, data: m.data });
          else this.again = true; // pulled by the next pass instead
        },
      });
    }
  }

  /**
   * Catches up from the device's consumer: moves it to just after the last sequence handed to
   * the application, pulls until nothing is pending, then hands on what arrived meanwhile. Runs
   * at connect and after every reconnect; a reconnect during a catch-up runs it once more. A
   * catch-up that fails while connected is tried again, and a consumer whose one server died is
   * restored first (see {@link repairConsumer}): until then, what arrives is held, not lost.
   */
  private async catchUp(): Promise<void> {
    if (this.catchUpRunning) {
      this.again = true;
      return;
    }
    this.catchUpRunning = true;
    this.catching = true;
    let failures = 0;
    try {
      do {
        this.again = false;
        try {
          await this.pullMissed();
        } catch (e) {
          // Between servers, the reconnect catches up again; a role that may not move its
          // consumer never will.
          if (this.closed || !this.connected || e instanceof PermissionViolationError) break;
          await this.repairConsumer();
          const wait = jittered(
            backoffCeilingMs(
              { firstMs: CATCH_UP_RETRY_FIRST_MS, maxMs: CATCH_UP_RETRY_MAX_MS },
              ++failures,
            ),
          );
          await new Promise((r) => setTimeout(r, wait));
          this.again = true;
        }
      } while (this.again && !this.closed);
    } finally {
      const held = this.held.sort((a, b) => a.seq - b.seq);
      this.held = [];
      this.catching = false;
      this.catchUpRunning = false;
      for (const h of held) this.deliver(h.subject, h.seq, h.data);
    }
  }

  /**
   * After a failed catch-up: asks JetStream about the device's consumer. One that no server
   * serves (its one server died: it keeps its name, but nobody answers for it) is restored by a
   * worker on a server that is up (`REQ_RESTORE_CONSUMER`). One that is gone (the server deletes
   * a consumer its inactive threshold after its last pull) is created by a worker the same way;
   * still gone at the next repair, by the callout at a new admission: the connection reconnects.
   * At most once per {@link REPAIR_INTERVAL_MS}; the answer is not awaited (it is held with the
   * room's copies until caught up), the next try of the catch-up sees it.
   */
  private async repairConsumer(): Promise<void> {
    if (Date.now() - this.lastRepair < REPAIR_INTERVAL_MS) return;
    const state = await this.consumerState();
    if (state === 'ok' || state === 'unknown') return; // a failure of the moment: try again
    this.lastRepair = Date.now();
    const askedToCreate = this.askedToCreate;
    this.askedToCreate = state === 'missing' && !askedToCreate;
    if (state === 'missing' && askedToCreate) {
      void this.nc.reconnect().catch(() => undefined);
    } else {
      const data = this.o.deviceId !== undefined ? { deviceId: this.o.deviceId } : {};
      void this.request(RequestEvent.RestoreConsumer, data).catch(() => undefined);
    }
  }

  /**
   * The device's consumer as JetStream serves it: `unserved` when JetStream counts its server as
   * gone, or does not answer for it at all. A worker checks again before it restores anything
   * (with the stream's info, which clients may not read), so a consumer that was only slow to
   * answer costs one `REQ_RESTORE_CONSUMER` that changes nothing.
   */
  private async consumerState(): Promise<'ok' | 'unserved' | 'missing' | 'unknown'> {
    let code: number | 'ok';
    try {
      const r = await this.nc.request(JsApi.consumerInfo(this.o.roomId, this.consumerName), '', {
        timeout: PROBE_TIMEOUT_MS,
      });
      code = jsErrorCode(r.json<unknown>()) ?? 'ok';
    } catch (e) {
      return e instanceof Error && e.name === 'TimeoutError' ? 'unserved' : 'unknown';
    }
    if (code === 'ok') return 'ok';
    if (code === JS_CONSUMER_OFFLINE) return 'unserved';
    if (code === JS_CONSUMER_NOT_FOUND) return 'missing';
    return 'unknown';
  }

  private async pullMissed(): Promise<void> {
    const { roomId } = this.o;
    const name = this.consumerName;
    // resumeAfter 0: from the start of what the stream holds (a page that keeps no history).
    const fromSeq = this.lastSeq > 0 || this.o.resumeAfter === 0 ? this.lastSeq + 1 : undefined;
    const body = fromSeq !== undefined ? JSON.stringify({ seq: fromSeq }) : '';
    const reset = (
      await this.nc.request(JsApi.consumerReset(roomId, name), body, {
        timeout: CATCH_UP_TIMEOUT_MS,
      })
    ).json<{ num_pending?: number; error?: { description?: string } }>();
    if (reset.error) throw new Error(`catch-up: ${reset.error.description ?? 'reset refused'}`);
    let pending = reset.num_pending ?? 0;
    // Bound from what the reset just showed exists, not with `consumers.get`, which asks
    // JetStream for the consumer's info: one API call per join saved.
    const consumer = this.js.consumers.getConsumerFromInfo({
      stream_name: roomId,
      name,
      config: { durable_name: name },
    } as ConsumerInfo);
    while (pending > 0 && !this.closed) {
      const batch = await consumer.fetch({
        max_messages: Math.min(pending, CATCH_UP_BATCH),
        expires: CATCH_UP_TIMEOUT_MS,
      });
      let last: JsMsg | undefined;
      for await (const m of batch) {
        last = m;
        pending = m.info.pending;
        this.deliver(m.subject, m.seq, m.data);
      }
      if (!last) break;
      // Cumulative: acks the whole batch (the consumer's ack policy is `all`).
      last.ack();
    }
  }

  /** Hands a room stream message to the application once, in stream order. */
  private deliver(
    subject: string,
    seq: number,
    data: Uint8Array,
    parsed: { kind: RoomSubjectKind; userId?: string } | undefined = parseRoomSubject(subject),
  ): void {
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    const text = UTF8.decode(data);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    const kind: RoomMessage['kind'] =
      parsed?.kind === RoomSubjectKind.Answer
        ? 'answer'
        : parsed?.kind === RoomSubjectKind.Events
          ? 'event'
          : parsed?.kind === RoomSubjectKind.Chat
            ? 'chat'
            : 'whiteboard';
    if (kind === 'answer') {
      const a = body as Answer;
      const p = a.id !== null ? this.pending.get(a.id) : undefined;
      if (p && a.id !== null) {
        clearTimeout(p.timer);
        this.pending.delete(a.id);
        p.resolve(a);
      }
    }
    const msg: RoomMessage = { kind, subject, seq, body };
    const from = kind === 'chat' || kind === 'whiteboard' ? parsed?.userId : undefined;
    if (from) msg.from = from;
    if (this.listeners.size === 0 && this.backlog && this.backlog.length < MAX_BACKLOG)
      this.backlog.push(msg);
    for (const l of this.listeners) l(msg);
  }

  /**
   * Listens to everything that arrives; returns a function that stops listening. The first
   * listener also gets what arrived before it (consuming starts in `connect`).
   */
  on(listener: (m: RoomMessage) => void): () => void {
    const early = this.backlog ?? [];
    this.backlog = undefined;
    for (const m of early) listener(m);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Sends an event and resolves with the answer's data; rejects with {@link RoomRequestError}.
   * An event of the contract (src/protocol/messages.ts) takes its data and resolves with its
   * answer's type; any other name is sent as it is (its answer is then `UNKNOWN_EVENT`).
   */
  request<E extends RequestEvent>(
    event: E,
    data?: RequestData<E>,
    timeoutMs?: number,
  ): Promise<AnswerData<E>>;
  request<T = unknown>(
    event: string,
    data?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<T>;
  async request(
    event: string,
    data: Record<string, unknown> = {},
    timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
  ): Promise<unknown> {
    const id = `${this.prefix}-${++this.counter}`;
    const payload = JSON.stringify({ event, id, data });
    // The server closes a connection that publishes more than max_payload: refuse it here.
    const max = Math.min(this.nc.info?.max_payload ?? MAX_REQUEST_BYTES, MAX_REQUEST_BYTES);
    if (new TextEncoder().encode(payload).length > max)
      throw new RoomRequestError('BAD_REQUEST', `request larger than ${max} bytes`);
    const answer = new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RoomRequestError('TIMEOUT', `no answer to ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
    });
    answer.catch(() => undefined); // observed below; never an unhandled rejection
    try {
      // On the token's role subject: the only one the server lets this connection publish to.
      await this.publishStored(
        roleWorkerSubject(this.o.roomId, this.o.userId, this.role),
        payload,
        id,
        timeoutMs,
      );
    } catch (e) {
      const p = this.pending.get(id);
      if (p) clearTimeout(p.timer);
      this.pending.delete(id);
      if (isQueueFull(e))
        throw new RoomRequestError('RATE_LIMITED', `too many events waiting: ${e.message}`);
      throw e;
    }
    const a = await answer;
    if (!a.ok) throw new RoomRequestError(a.error.code, a.error.message);
    return a.data;
  }

  /** Sends a chat message to the room (stored in the room stream). */
  async chat(text: string, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<void> {
    await this.publishStored(
      chatSubject(this.o.roomId, this.o.userId),
      JSON.stringify({ text, at: new Date().toISOString() }),
      `${this.prefix}-c${++this.counter}`,
      timeoutMs,
    );
  }

  /** Sends a whiteboard message to the room (stored in the room stream, so late joiners see it). */
  async whiteboard(data: unknown, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<void> {
    await this.publishStored(
      whiteboardSubject(this.o.roomId, this.o.userId),
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
        this.publisher.publish(
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
        stopped: () => this.closed,
      },
    );
  }

  /** Publishes a live (not stored) update such as a cursor position. */
  live(data: unknown): void {
    this.nc.publish(liveSubject(this.o.roomId, this.o.userId), encodeLive(data));
  }

  /**
   * Listens to the room's live updates from other members; returns a function that stops
   * listening. Anything on the live subjects that is not a live message is dropped (see
   * `parseLive`).
   */
  onLive(listener: (m: LiveMessage) => void): () => void {
    this.liveListeners.add(listener);
    return () => this.liveListeners.delete(listener);
  }

  /** Live updates dropped for coming faster than their sender's bound (`liveRate`). */
  get liveDropped(): number {
    return this.liveFilter?.dropped ?? 0;
  }

  private subscribeLive(): void {
    const { roomId, userId } = this.o;
    const filter = new LiveFilter({
      msgsPerSec: this.o.liveRate?.msgsPerSec ?? DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
      bytesPerSec: this.o.liveRate?.bytesPerSec ?? DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
    });
    this.liveFilter = filter;
    this.nc.subscribe(liveSubject(roomId, '*'), {
      callback: (err, m) => {
        if (err) return;
        const live = parseLive(roomId, received(m));
        if (!live || live.from === userId) return;
        if (!filter.admit(live.from, m.data.length)) return;
        for (const l of this.liveListeners) l(live);
      },
    });
  }

  /** Renews the token now; the next reconnect uses the new one. */
  async renew(): Promise<RenewedToken> {
    const r = await this.request(RequestEvent.RenewToken);
    this.setToken(r.token);
    this.o.onTokenRenewed?.(r.token);
    return r;
  }

  private scheduleRenewal(): void {
    if (this.closed) return;
    const exp = decodeJwt(this.token).exp;
    if (typeof exp !== 'number') return;
    const lifetime = exp * 1000 - Date.now();
    const before = Math.min(this.o.renewBeforeMs ?? DEFAULT_RENEW_BEFORE_MS, lifetime / 2);
    this.renewTimer = setTimeout(
      () => {
        this.renew()
          .catch(() => undefined) // the next attempt comes with the next schedule
          .finally(() => this.scheduleRenewal());
      },
      Math.max(1_000, lifetime - before),
    );
  }

  /**
   * Leaves the room: tells the workers (so the departure is immediate, not after the grace
   * period), then closes. `{ leave: false }` closes like a dropped network would.
   */
  async close(o: { leave?: boolean } = {}): Promise<void> {
    // Between servers a leave cannot be delivered; presence notices the departure after its grace.
    if (o.leave !== false && !this.closed && this.connected) {
      await this.request(RequestEvent.Leave, {}, LEAVE_TIMEOUT_MS).catch(() => undefined);
    }
    this.closed = true;
    clearTimeout(this.renewTimer);
    this.publisher.close();
    for (const [, p] of this.pending) clearTimeout(p.timer);
    this.pending.clear();
    if (this.nc.isClosed()) return;
    // drain, not close: acks still buffered are flushed before the socket ends
    if (this.online) await this.nc.drain().catch(() => this.nc.close());
    else await this.nc.close();
  }
}
