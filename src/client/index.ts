/**
 * A small client for Torii rooms (used by the integration tests and the examples; written against
 * the transport-neutral `NatsConnection`, so a browser can pass a `@nats-io/nats.ws` connect).
 * It connects with the room token and the private inbox prefix, consumes the user's durable
 * consumer (answers, broadcasts, chat, whiteboard), sends events and awaits their answers by id,
 * and renews the token before it expires so that reconnects keep working.
 */
import { jetstream, type ConsumerMessages, type JetStreamClient } from '@nats-io/jetstream';
import {
  connect as nodeConnect,
  tokenAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import { decodeJwt } from 'jose';
import { encodeLive, newRequestIdPrefix, parseLive, received, type LiveMessage } from './live.js';
import { MAX_REQUEST_BYTES, RequestEvent, type Answer, type AnswerCode } from '../core/events.js';
import {
  chatSubject,
  liveSubject,
  parseRoomSubject,
  RoomSubjectKind,
  userAnswerSubject,
  userInboxPrefix,
  workerSubject,
} from '../core/subjects.js';

/** Default time to wait for an answer, in milliseconds. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How long `close()` waits for the leave to be acknowledged, in milliseconds. */
const LEAVE_TIMEOUT_MS = 1_000;
/** Messages kept for the first listener, at most. */
const MAX_BACKLOG = 1_000;
/** Renew this long before the token expires, in milliseconds (at least half its lifetime). */
export const DEFAULT_RENEW_BEFORE_MS = 60_000;

/** An error answer from the worker. */
export class RoomRequestError extends Error {
  constructor(
    readonly code: AnswerCode | 'TIMEOUT',
    message: string,
  ) {
    super(message);
    this.name = 'RoomRequestError';
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
  /** A connect function (nats.ws in a browser); the Node transport by default. */
  connect?: (opts: ConnectionOptions) => Promise<NatsConnection>;
  /** Renew the token automatically; default true. */
  autoRenew?: boolean;
  renewBeforeMs?: number;
  /** Extra connection options (name, timeouts, …). */
  connection?: Partial<ConnectionOptions>;
}

export type { LiveMessage } from './live.js';

export class RoomClient {
  private token: string;
  private readonly js: JetStreamClient;
  private readonly pending = new Map<
    string,
    { resolve: (a: Answer) => void; timer: ReturnType<typeof setTimeout> }
  >();
  private readonly listeners = new Set<(m: RoomMessage) => void>();
  private messages: ConsumerMessages | undefined;
  private renewTimer: ReturnType<typeof setTimeout> | undefined;
  private counter = 0;
  private readonly prefix = newRequestIdPrefix();
  private readonly liveListeners = new Set<(m: LiveMessage) => void>();
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
    this.js = jetstream(nc);
  }

  /** Connects, starts consuming, and (by default) schedules token renewal. */
  static async connect(o: RoomClientOptions): Promise<RoomClient> {
    const holder = { current: o.token };
    const nc = await (o.connect ?? nodeConnect)({
      servers: o.servers,
      inboxPrefix: userInboxPrefix(o.roomId, o.userId),
      // The server closes the connection when the NATS JWT expires; the reconnect presents
      // whatever token is current by then (a renewed one).
      authenticator: tokenAuthenticator(() => holder.current),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      ignoreAuthErrorAbort: true,
      ...o.connection,
    });
    const client = new RoomClient(nc, o, holder);
    client.setToken = (t: string) => {
      holder.current = t;
      client.token = t;
    };
    client.subscribeLive();
    await client.consume();
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
      if (s.type === 'reconnect' && !this.closed) void this.resume();
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

  /**
   * Consumes again on a fresh inbox after a reconnect. Pull requests of the old connection are
   * still waiting in the server; they name the old inbox, which nats.js subscribes again on
   * reconnect. The server forwards deliveries for them through a response mapping that ended
   * with the old connection (the room stream lives in another account), so they would be lost
   * until `ack_wait`. Dropping the old inbox takes away their interest: the consumer skips them.
   */
  private async resume(): Promise<void> {
    const old = this.messages;
    this.messages = undefined;
    await old?.close().catch(() => undefined);
    if (!this.closed) await this.consume().catch(() => undefined);
  }

  private async consume(): Promise<void> {
    const consumer = await this.js.consumers.get(this.o.roomId, this.o.userId);
    const messages = await consumer.consume({ max_messages: 100 });
    this.messages = messages;
    const answers = userAnswerSubject(this.o.roomId, this.o.userId);
    void (async () => {
      for await (const m of messages) {
        let body: unknown;
        try {
          body = m.json();
        } catch {
          body = m.string();
        }
        const parsed = parseRoomSubject(m.subject);
        const kind: RoomMessage['kind'] =
          m.subject === answers
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
        const from = kind === 'chat' || kind === 'whiteboard' ? parsed?.userId : undefined;
        const msg: RoomMessage = {
          kind,
          subject: m.subject,
          seq: m.seq,
          body,
          ...(from ? { from } : {}),
        };
        if (this.listeners.size === 0 && this.backlog && this.backlog.length < MAX_BACKLOG)
          this.backlog.push(msg);
        for (const l of this.listeners) l(msg);
        m.ack();
      }
    })();
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

  /** Sends an event and resolves with the answer's data; rejects with {@link RoomRequestError}. */
  async request<T = unknown>(
    event: string,
    data: Record<string, unknown> = {},
    timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
  ): Promise<T> {
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
      // Nats-Msg-Id = id: a retried publish is stored once.
      await this.js.publish(workerSubject(this.o.roomId, this.o.userId), payload, { msgID: id });
    } catch (e) {
      const p = this.pending.get(id);
      if (p) clearTimeout(p.timer);
      this.pending.delete(id);
      throw e;
    }
    const a = await answer;
    if (!a.ok) throw new RoomRequestError(a.error.code, a.error.message);
    return a.data as T;
  }

  /** Sends a chat message to the room (stored in the room stream). */
  async chat(text: string): Promise<void> {
    await this.js.publish(
      chatSubject(this.o.roomId, this.o.userId),
      JSON.stringify({ text, at: new Date().toISOString() }),
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

  private subscribeLive(): void {
    const { roomId, userId } = this.o;
    this.nc.subscribe(liveSubject(roomId, '*'), {
      callback: (err, m) => {
        if (err) return;
        const live = parseLive(roomId, received(m));
        if (!live || live.from === userId) return;
        for (const l of this.liveListeners) l(live);
      },
    });
  }

  /** Renews the token now; the next reconnect uses the new one. */
  async renew(): Promise<{ token: string; expiresAt: string }> {
    const r = await this.request<{ token: string; expiresAt: string }>(RequestEvent.RenewToken);
    this.setToken(r.token);
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
    for (const [, p] of this.pending) clearTimeout(p.timer);
    this.pending.clear();
    await this.messages?.close();
    if (this.nc.isClosed()) return;
    // drain, not close: acks still buffered are flushed before the socket ends
    if (this.online) await this.nc.drain().catch(() => this.nc.close());
    else await this.nc.close();
  }
}
