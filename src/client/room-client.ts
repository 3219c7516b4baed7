/**
 * `RoomClient`: one connection to a room (the SDK's entry point, docs/protocol.md), composed of
 * its parts: the connection and its status (connection.ts), the ordered reader of the room
 * stream (catch-up.ts) with the repair of its consumer (consumer-repair.ts), requests answered
 * by id (requests.ts), live updates (live-feed.ts) and the token's renewal (renewal.ts).
 */
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { CatchUp } from './catch-up.js';
import { ConnectionStatus, openRoomConnection } from './connection.js';
import { ConsumerRepair } from './consumer-repair.js';
import { LiveFeed } from './live-feed.js';
import type { LiveMessage, LiveRate } from './live.js';
import { StoredPublisher } from './pubacks.js';
import { Renewal, RoomToken } from './renewal.js';
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  PendingAnswers,
  RoomRequestError,
  RoomSender,
} from './requests.js';
import { roomMessage, RoomListeners, type RoomMessage } from './room-message.js';
import type { AnswerData, RenewedToken, RequestData } from '../protocol/messages.js';
import { RequestEvent, type Answer } from '../protocol/events.js';
import {
  DEVICE_ID_RULE,
  deviceConsumerName,
  isValidDeviceId,
  userInboxPrefix,
} from '../protocol/subjects.js';

export { DEFAULT_REQUEST_TIMEOUT_MS, RoomRequestError } from './requests.js';
export { DEFAULT_RENEW_BEFORE_MS } from './renewal.js';
export type { RoomMessage } from './room-message.js';

/** How long `close()` waits for the leave to be acknowledged, in milliseconds. */
const LEAVE_TIMEOUT_MS = 1_000;

/** How {@link RoomClient.connect} connects, and what the client does once connected. */
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
   * `liveDropped`). Default `DEFAULT_LIVE_SENDER_MSGS_PER_SEC` messages and
   * `DEFAULT_LIVE_SENDER_BYTES_PER_SEC` bytes a second.
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
 * One member's connection to a room: receives the room once, in stream order (`on`), sends
 * events awaiting their answer (`request`), chat, whiteboard and live updates, and renews its
 * token. Each job is a part of its own; this class wires them to one connection and to each
 * other (an answer that arrives resolves its request, a reconnect runs the catch-up).
 */
export class RoomClient {
  private readonly status: ConnectionStatus;
  private readonly publisher: StoredPublisher;
  private readonly pending = new PendingAnswers();
  private readonly sender: RoomSender;
  private readonly listeners = new RoomListeners();
  private readonly reader: CatchUp;
  private readonly liveFeed: LiveFeed;
  private readonly renewal: Renewal;
  private closed = false;

  private constructor(
    readonly nc: NatsConnection,
    o: RoomClientOptions,
    private readonly token: RoomToken,
  ) {
    const { roomId, userId } = o;
    const isClosed = (): boolean => this.closed;
    this.status = new ConnectionStatus(nc);
    this.publisher = new StoredPublisher(nc, userInboxPrefix(roomId, userId));
    this.sender = new RoomSender({
      nc,
      publisher: this.publisher,
      pending: this.pending,
      roomId,
      userId,
      role: () => token.role,
      closed: isClosed,
    });
    const consumerName = deviceConsumerName(userId, o.deviceId);
    const repair = new ConsumerRepair({
      nc,
      roomId,
      consumerName,
      askRestore: () =>
        this.request(
          RequestEvent.RestoreConsumer,
          o.deviceId !== undefined ? { deviceId: o.deviceId } : {},
        ),
    });
    this.reader = new CatchUp({
      nc,
      roomId,
      userId,
      consumerName,
      resumeAfter: o.resumeAfter,
      connected: () => this.connected,
      closed: isClosed,
      repair: () => repair.repair(),
      deliver: (subject, seq, data, parsed) => {
        const m = roomMessage(subject, seq, data, parsed);
        if (m.kind === 'answer') this.pending.answer(m.body as Answer);
        this.listeners.emit(m);
      },
    });
    if (o.listener) this.listeners.add(o.listener);
    this.liveFeed = new LiveFeed(nc, roomId, userId, o.liveRate);
    this.renewal = new Renewal({
      token,
      ask: () => this.request(RequestEvent.RenewToken),
      onRenewed: o.onTokenRenewed,
      renewBeforeMs: o.renewBeforeMs,
      closed: isClosed,
    });
  }

  /** Connects, starts consuming, and (by default) schedules token renewal. */
  static async connect(o: RoomClientOptions): Promise<RoomClient> {
    if (o.deviceId !== undefined && !isValidDeviceId(o.deviceId))
      throw new RoomRequestError('BAD_REQUEST', `deviceId: ${DEVICE_ID_RULE}`);
    // Before connecting: a token without a role could send no event.
    const token = new RoomToken(o.token);
    const nc = await openRoomConnection(o.connect, o, () => token.current);
    const client = new RoomClient(nc, o, token);
    client.reader.subscribe();
    await client.reader.run();
    void client.status.watch({
      disconnected: () => client.reader.disconnected(),
      reconnected: () => {
        if (!client.closed) void client.reader.run();
      },
    });
    if (o.autoRenew !== false) client.renewal.schedule();
    return client;
  }

  /** False while the connection is between servers. */
  get connected(): boolean {
    return this.status.connected;
  }

  /** Listens to connection changes; returns a function that stops listening. */
  onConnectionChange(listener: (connected: boolean) => void): () => void {
    return this.status.onChange(listener);
  }

  /** The current room token. */
  get currentToken(): string {
    return this.token.current;
  }

  /** The last stream sequence handed to the application (keep it for `resumeAfter`). */
  get lastSequence(): number {
    return this.reader.lastSequence;
  }

  /**
   * Listens to everything that arrives; returns a function that stops listening. The first
   * listener also gets what arrived before it (consuming starts in `connect`).
   */
  on(listener: (m: RoomMessage) => void): () => void {
    return this.listeners.add(listener);
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
    return this.sender.request(event, data, timeoutMs);
  }

  /** Sends a chat message to the room (stored in the room stream). */
  async chat(text: string, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<void> {
    await this.sender.chat(text, timeoutMs);
  }

  /** Sends a whiteboard message to the room (stored in the room stream, so late joiners see it). */
  async whiteboard(data: unknown, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<void> {
    await this.sender.whiteboard(data, timeoutMs);
  }

  /** Publishes a live (not stored) update such as a cursor position. */
  live(data: unknown): void {
    this.liveFeed.publish(data);
  }

  /**
   * Listens to the room's live updates from other members; returns a function that stops
   * listening. Anything on the live subjects that is not a live message is dropped (see
   * `parseLive`).
   */
  onLive(listener: (m: LiveMessage) => void): () => void {
    return this.liveFeed.on(listener);
  }

  /** Live updates dropped for coming faster than their sender's bound (`liveRate`). */
  get liveDropped(): number {
    return this.liveFeed.dropped;
  }

  /** Renews the token now; the next reconnect uses the new one. */
  renew(): Promise<RenewedToken> {
    return this.renewal.renew();
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
    this.renewal.stop();
    this.publisher.close();
    this.pending.clear();
    if (this.nc.isClosed()) return;
    // drain, not close: acks still buffered are flushed before the socket ends
    if (this.status.online) await this.nc.drain().catch(() => this.nc.close());
    else await this.nc.close();
  }
}
