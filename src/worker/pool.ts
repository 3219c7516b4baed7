/**
 * The event pool: takes client events from `sysJsWorker` through the shared durable `torii_queue`,
 * runs at most `concurrency` handlers at once, one at a time per `{roomId}.{userId}` (a user's
 * later events wait in its own queue without a slot, so one user holds at most one slot), and acks
 * only after the answer and broadcasts are stored. Every event pulled and not yet settled reports
 * progress (`working()`) twice per `ack_wait`, so a slow handler or a long queue is not
 * redelivered while it is in hand. Answers and broadcasts carry `Nats-Msg-Id`s derived from the
 * event's stream sequence and time through {@link SystemMsgIds}, so a redelivery after a crash
 * cannot answer twice (the room stream drops the duplicate), and no member can compute them.
 */
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { CasConflictError } from '../infra/kv.js';
import { SystemPublisher } from '../infra/system-publisher.js';
import {
  answerEventName,
  isRequestEventName,
  isValidRequestId,
  MAX_REQUEST_BYTES,
  REQUEST_EVENT_RULE,
  REQUEST_ID_RULE,
  RequestEvent,
  type Answer,
} from '../protocol/events.js';
import {
  describeError,
  ErrorCode,
  isAnswerCode,
  ToriiError,
  type AnswerCode,
} from '../protocol/errors.js';
import { broadcast } from '../protocol/messages.js';
import { isValidId } from '../protocol/ids.js';
import type { Logger } from '../runtime/logger.js';
import { MsgId, type SystemMsgIds } from '../infra/msg-ids.js';
import { ensureConsumer, nanos } from '../infra/streams.js';
import { isJsError } from '../protocol/jetstream.js';
import { JS_MESSAGE_TOO_LARGE } from '../protocol/jetstream.js';
import {
  broadcastSubject,
  parseWorkerSubject,
  userAnswerSubject,
  WORKER_CONSUMER,
  WORKER_STREAM,
} from '../protocol/subjects.js';
import { KeyedQueue } from '../domain/keyed-queue.js';
import type { Handlers } from './handlers.js';
import type { WorkerMetrics } from './metrics.js';
import { JS_CONSUMER_NOT_FOUND, JS_STREAM_NOT_FOUND } from '../protocol/jetstream.js';

const UTF8 = new TextDecoder();
const KNOWN_EVENTS: ReadonlySet<string> = new Set(Object.values(RequestEvent));

/** Defaults of the pool (flags of `torii worker`). */
export const DEFAULT_WORKER_CONCURRENCY = 50;
export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_MAX_DELIVER = 5;
/**
 * Redelivery delays after a failure, in milliseconds: the delay of the `nak` for the n-th failed
 * delivery. Not the consumer's `backoff`, which the server would also use as the ack deadline of
 * every delivery (`ack_wait` = `backoff[0]`), whatever `--ack-wait` says.
 */
const REDELIVERY_BACKOFF_MS = [1_000, 5_000, 15_000, 30_000];
/** Events pulled and not yet settled, per configured handler slot (queued ones included). */
const HELD_PER_SLOT = 20;
/** Waits between attempts to create the durable consumer again, in milliseconds (last repeats). */
const RECREATE_BACKOFF_MS = [250, 1_000, 2_000, 5_000];
/**
 * Notices of the consume loop that mean the consumer (or its stream) is gone: nothing arrives
 * until it is created again, since nats.js only keeps pulling from a consumer by name.
 */
const CONSUMER_GONE: ReadonlySet<string> = new Set([
  'consumer_deleted',
  'consumer_not_found',
  'stream_not_found',
]);

export interface PoolSettings {
  concurrency: number;
  ackWaitMs: number;
  maxDeliver: number;
}

/** Events one replica may hold pulled and not yet settled: the consumer's `max_ack_pending`. */
const maxHeld = (s: PoolSettings): number => Math.max(1_000, s.concurrency * HELD_PER_SLOT);

/** The shared durable consumer of the work queue. */
/**
 * Lifetime of each pull request, in milliseconds. Pulls pending on a consumer leader that dies
 * are lost; the client notices from missed heartbeats (half of this, twice) and pulls again from
 * the new leader, so this bounds the stall after a node is killed (nats.js's default, 30 s,
 * stalled the pool for 30 s).
 */
const PULL_EXPIRES_MS = 5_000;

export function workerConsumerConfig(s: PoolSettings) {
  return {
    durable_name: WORKER_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(s.ackWaitMs),
    max_deliver: s.maxDeliver,
    // Explicitly none: an update must clear the backoff an earlier version stored.
    backoff: [],
    max_ack_pending: maxHeld(s),
  };
}

export class EventPool {
  private readonly js: JetStreamClient;
  private readonly out: SystemPublisher;
  private messages: ConsumerMessages | undefined;
  private running = 0;
  /** One user's events at a time, in order. */
  private readonly queue = new KeyedQueue();
  private waiters: (() => void)[] = [];
  /** Pulled and not yet settled: running or waiting behind the same user's events. */
  private readonly held = new Set<JsMsg>();
  private holdWaiters: (() => void)[] = [];
  private progress: ReturnType<typeof setInterval> | undefined;
  private idle: (() => void) | undefined;
  /** Consume loops not yet finished (one, or two while a recreated consumer takes over). */
  private readonly loops = new Set<Promise<void>>();
  private stopping = false;
  private jsm: JetStreamManager | undefined;
  private ensureStream: () => Promise<unknown> = () => Promise.resolve();
  /** True while a consume loop pulls from an existing consumer. */
  private consuming = false;
  private recovering: Promise<void> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly handlers: Handlers,
    private readonly s: PoolSettings,
    private readonly metrics: WorkerMetrics,
    private readonly log: Logger,
    msgIds: SystemMsgIds,
  ) {
    this.js = jetstream(nc);
    this.out = new SystemPublisher(nc, msgIds, log);
  }

  /** Handlers running now. */
  get inflight(): number {
    return this.running;
  }

  /**
   * Why the pool cannot take events now, or true while it consumes. False from the moment its
   * consumer is found gone until a new one is consuming.
   */
  get ready(): true | string {
    return this.consuming || `not consuming ${WORKER_STREAM} (${WORKER_CONSUMER} is being created)`;
  }

  /**
   * Ensures the durable consumer and starts consuming. `ensureStream` runs before the consumer is
   * created again after its stream was found gone.
   */
  async start(jsm: JetStreamManager, ensureStream?: () => Promise<unknown>): Promise<void> {
    this.jsm = jsm;
    if (ensureStream) this.ensureStream = ensureStream;
    await ensureConsumer(jsm, WORKER_STREAM, workerConsumerConfig(this.s));
    await this.consume();
    this.progress = setInterval(() => {
      for (const m of this.held) m.working();
    }, this.s.ackWaitMs / 2);
  }

  /** Starts a consume loop on the consumer as it is now, and watches its notices. */
  private async consume(): Promise<void> {
    const consumer: Consumer = await this.js.consumers.get(WORKER_STREAM, WORKER_CONSUMER);
    const messages = await consumer.consume({
      max_messages: this.s.concurrency,
      expires: PULL_EXPIRES_MS,
    });
    this.messages = messages;
    this.consuming = true;
    const loop = this.run(messages).finally(() => this.loops.delete(loop));
    this.loops.add(loop);
    void this.watch(messages);
  }

  /**
   * Reads the consume loop's notices: when the consumer or its stream is gone, creates it again
   * (with the same configuration) and consumes from the new one. Missed heartbeats only lead to
   * a check: the server may simply be away.
   */
  private async watch(messages: ConsumerMessages): Promise<void> {
    for await (const n of messages.status()) {
      if (this.stopping || messages !== this.messages) return;
      if (CONSUMER_GONE.has(n.type)) {
        this.log.warn({ notice: n }, `${WORKER_CONSUMER} is gone; creating it again`);
        void this.recover(messages, n.type === 'stream_not_found');
      } else if (n.type === 'heartbeats_missed') {
        const gone = await this.jsm?.consumers.info(WORKER_STREAM, WORKER_CONSUMER).then(
          () => false,
          (e: unknown) => isJsError(e, JS_CONSUMER_NOT_FOUND, JS_STREAM_NOT_FOUND),
        );
        if (gone && messages === this.messages) void this.recover(messages, true);
      }
    }
  }

  /** Creates the consumer again, retrying until it works or the pool stops. */
  private recover(old: ConsumerMessages, streamToo: boolean): Promise<void> {
    if (this.recovering) return this.recovering;
    this.consuming = false;
    this.recovering = (async () => {
      for (let attempt = 0; !this.stopping; attempt++) {
        try {
          if (streamToo || attempt > 0) await this.ensureStream();
          await ensureConsumer(
            this.jsm as JetStreamManager,
            WORKER_STREAM,
            workerConsumerConfig(this.s),
          );
          if (this.stopping) return;
          // The old loop ends; events it holds still finish (their acks reach the new consumer,
          // which has the same name, or are redelivered and deduplicated by their answers' ids).
          void old.close();
          await this.consume();
          this.log.info(`${WORKER_CONSUMER} created again; consuming`);
          return;
        } catch (e) {
          this.log.warn(
            { err: describeError(e), attempt: attempt + 1 },
            `cannot create ${WORKER_CONSUMER} again; retrying`,
          );
          const wait = RECREATE_BACKOFF_MS[Math.min(attempt, RECREATE_BACKOFF_MS.length - 1)];
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    })().finally(() => (this.recovering = undefined));
    return this.recovering;
  }

  private async hold(m: JsMsg): Promise<void> {
    while (this.held.size >= maxHeld(this.s))
      await new Promise<void>((r) => this.holdWaiters.push(r));
    this.held.add(m);
  }

  private unhold(m: JsMsg): void {
    this.held.delete(m);
    this.holdWaiters.shift()?.();
  }

  private async slot(): Promise<void> {
    while (this.running >= this.s.concurrency) await new Promise<void>((r) => this.waiters.push(r));
    this.running++;
  }

  private release(): void {
    this.running--;
    this.waiters.shift()?.();
  }

  private async run(messages: ConsumerMessages): Promise<void> {
    for await (const m of messages) {
      if (this.stopping) {
        m.nak(); // pulled but not started: offer it to another replica now
        continue;
      }
      await this.hold(m);
      const who = parseWorkerSubject(m.subject);
      const key = who ? `${who.roomId}.${who.userId}` : m.subject;
      // The slot is taken when the user's turn comes, not on arrival: a burst of one user waits
      // in its own queue while other users' events run.
      void this.queue
        .run(key, async () => {
          if (this.stopping) {
            m.nak(); // not started: offer it to another replica now
            return;
          }
          await this.slot();
          try {
            await this.process(m, who);
          } finally {
            this.release();
          }
        })
        .catch((e: unknown) =>
          this.log.error({ err: describeError(e), subject: m.subject }, 'event handling failed'),
        )
        .finally(() => {
          this.unhold(m);
          if (this.held.size === 0) this.idle?.();
        });
    }
  }

  private async process(m: JsMsg, who: ReturnType<typeof parseWorkerSubject>): Promise<void> {
    const end = this.metrics.latency.startTimer();
    if (m.info.deliveryCount > 1) this.metrics.redeliveries.inc();
    let request: { event?: unknown; id?: unknown; data?: unknown } | undefined;
    let event = 'unparsed';
    const answer = async (
      a: Answer,
      broadcasts: { subject: string; payload: string }[] = [],
    ): Promise<void> => {
      if (!who) return;
      // The same for every delivery of this stored event, and only for it: sequences start again
      // at 1 when sysJsWorker is created again, and the room stream would drop a new event's
      // answer as a duplicate of the old one with the same sequence. The stored time tells them
      // apart.
      const eventId = `${m.info.streamSequence}-${m.timestampNanos}`;
      // Broadcasts first: an answer means everything the event caused is visible.
      await Promise.all(
        broadcasts.map((b, i) =>
          this.out.store(b.subject, b.payload, MsgId.eventBroadcast(eventId, i)),
        ),
      );
      await this.out.store(
        userAnswerSubject(who.roomId, who.userId),
        JSON.stringify(a),
        MsgId.answer(eventId),
      );
    };
    /** The request's id once checked: only then is there an answer, and it names the id. */
    let id: string | undefined;
    /** Refuses the event; answers it when its id is known (an answer costs room history). */
    const fail = async (
      code: AnswerCode,
      message: string,
      settle: 'term' | 'keep' = 'term',
    ): Promise<void> => {
      if (id !== undefined)
        await answer({
          event: answerEventName(typeof request?.event === 'string' ? request.event : undefined),
          id,
          ok: false,
          error: { code, message },
        });
      this.metrics.events.inc({ event, outcome: code });
      // A refused event is done (term). One that exhausted its deliveries is left unacked: the
      // server stops offering it and it stays in sysJsWorker for inspection.
      if (settle === 'term') m.term(message);
    };
    try {
      if (!who || !isValidId(who.roomId) || !isValidId(who.userId) || !isValidId(who.role)) {
        this.metrics.events.inc({ event, outcome: ErrorCode.BadRequest });
        m.term('not a user subject');
        return;
      }
      // Without a well-formed id no client can match an answer, and answers are stored in the
      // room stream: such requests are dropped unanswered, so a flood of them stores nothing.
      if (m.data.length > MAX_REQUEST_BYTES)
        return await fail(ErrorCode.BadRequest, `payload larger than ${MAX_REQUEST_BYTES} bytes`);
      try {
        request = JSON.parse(UTF8.decode(m.data)) as typeof request;
      } catch {
        return await fail(ErrorCode.BadRequest, 'payload is not JSON');
      }
      if (typeof request !== 'object' || request === null || Array.isArray(request))
        return await fail(ErrorCode.BadRequest, 'payload must be a JSON object');
      if (!isValidRequestId(request.id))
        return await fail(ErrorCode.BadRequest, `id: ${REQUEST_ID_RULE}`);
      id = request.id;
      if (typeof request.event !== 'string' || !isRequestEventName(request.event))
        return await fail(ErrorCode.BadRequest, `event: ${REQUEST_EVENT_RULE}`);
      // A metric label: only known names, or any client could mint new time series.
      event = KNOWN_EVENTS.has(request.event) ? request.event : 'unknown';
      const data = request.data ?? {};
      if (typeof data !== 'object' || data === null || Array.isArray(data))
        return await fail(ErrorCode.BadRequest, 'data: an object');
      let result;
      try {
        result = await this.handlers.handle({
          roomId: who.roomId,
          userId: who.userId,
          role: who.role,
          event: request.event,
          data: data as Record<string, unknown>,
          seq: m.info.streamSequence,
        });
      } catch (e) {
        // A handler's refusal is answered. A compare-and-set the stores lost to other writers is
        // no refusal: the redelivery tries again (a handler that means CONFLICT says so itself).
        if (e instanceof ToriiError && isAnswerCode(e.code) && !(e instanceof CasConflictError))
          return await fail(e.code, e.message);
        throw e;
      }
      // Right after the handler stored the change: a redelivery (this one's answer failing)
      // finds it applied and tells the platform nothing again.
      for (const p of result.platform ?? []) this.out.platform(p);
      await answer(
        { event: answerEventName(request.event), id, ok: true, data: result.data },
        result.broadcasts.map((b) => ({
          // About the user its data names (every broadcast a handler makes names one).
          subject: broadcastSubject(who.roomId, (b.data as { userId?: unknown } | null)?.userId),
          payload: broadcast(b.event, b.data, new Date()),
        })),
      );
      m.ack();
      this.metrics.events.inc({ event, outcome: 'ok' });
    } catch (e) {
      // An answer larger than the room stream's max_msg_size fails the same way on every
      // delivery: refused at once with a short answer, which the stream takes.
      if (isJsError(e, JS_MESSAGE_TOO_LARGE) && id !== undefined) {
        await fail(
          ErrorCode.Internal,
          "the answer is larger than the room's history.maxMessageSize",
        ).catch(() => undefined);
        return;
      }
      // Transient (NATS, KV): try again later; the last attempt tells the client.
      if (m.info.deliveryCount >= this.s.maxDeliver) {
        this.metrics.exhausted.inc();
        this.log.error(
          { subject: m.subject, seq: m.info.streamSequence, err: describeError(e) },
          'event failed on its last delivery; kept in sysJsWorker',
        );
        await fail(ErrorCode.Internal, 'the event could not be handled', 'keep').catch(
          () => undefined,
        );
        return;
      }
      this.metrics.events.inc({ event, outcome: 'retry' });
      this.log.warn(
        {
          subject: m.subject,
          seq: m.info.streamSequence,
          delivery: m.info.deliveryCount,
          err: describeError(e),
        },
        'event failed; will be redelivered',
      );
      m.nak(
        REDELIVERY_BACKOFF_MS[Math.min(m.info.deliveryCount - 1, REDELIVERY_BACKOFF_MS.length - 1)],
      );
    } finally {
      end({ event });
    }
  }

  /** Stops pulling, finishes the events in flight (their acks included). */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.consuming = false;
    await this.recovering;
    const closed = this.messages?.close();
    if (this.held.size > 0) await new Promise<void>((r) => (this.idle = r));
    clearInterval(this.progress);
    await closed;
    await Promise.all([...this.loops]);
  }
}
