/**
 * The ordered reader of the room stream (docs/protocol.md, "Catching up, resuming, deduplicating"): republished
 * copies at core NATS speed, the device's consumer for what was missed, and each message handed
 * on once, in stream order.
 */
import { jetstream, type ConsumerInfo, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { PermissionViolationError, type NatsConnection } from '@nats-io/nats-core';
import { readCopy, roomCopies } from './republished.js';
import { CATCH_UP_STEP_MS } from '../protocol/jetstream.js';
import { backoffCeilingMs, jittered } from '../domain/retry.js';
import {
  JsApi,
  parseRoomSubject,
  republishedSubject,
  userConsumerFilters,
  type RoomSubjectKind,
} from '../protocol/subjects.js';

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
 * Republished messages held during a catch-up, at most: past it they are dropped, and the
 * catch-up pulls them from the consumer instead (they are in the stream).
 */
const MAX_HELD = 10_000;

/** The subject of a room stream message as read: its kind, and the user it names. */
type ParsedSubject = { kind: RoomSubjectKind; userId?: string } | undefined;

/** What a {@link CatchUp} needs of its connection. */
interface CatchUpDeps {
  nc: NatsConnection;
  roomId: string;
  userId: string;
  /** The consumer to catch up from (the device's, or the user's). */
  consumerName: string;
  /**
   * The last sequence handed on before (a restart); 0 replays everything the stream holds;
   * undefined starts where the consumer was last acked.
   */
  resumeAfter: number | undefined;
  /** False while the connection is between servers: the reconnect catches up again. */
  connected: () => boolean;
  /** True once the connection is closed: catching up stops. */
  closed: () => boolean;
  /** Called after a failed pull, before the next try (see `ConsumerRepair`). */
  repair: () => Promise<void>;
  /** Receives each message once, in stream order (`parsed` is its subject as read). */
  deliver: (subject: string, seq: number, data: Uint8Array, parsed: ParsedSubject) => void;
}

/**
 * Holds what arrives on the copies while a catch-up pulls what was missed, then hands it on in
 * order: the only place that knows the last sequence handed on.
 */
export class CatchUp {
  /** Highest stream sequence handed on. */
  private lastSeq: number;
  /** Republished messages are held, not handed on: from the start, and from a disconnect, until caught up. */
  private catching = true;
  private running = false;
  private again = false;
  /** Republished messages that arrived during a catch-up. */
  private held: { subject: string; seq: number; data: Uint8Array }[] = [];
  private readonly js: JetStreamClient;

  constructor(private readonly d: CatchUpDeps) {
    this.lastSeq = d.resumeAfter ?? 0;
    this.js = jetstream(d.nc);
  }

  /** The last stream sequence handed on (the application keeps it for `resumeAfter`). */
  get lastSequence(): number {
    return this.lastSeq;
  }

  /**
   * Subscribes to the republished copies of what the device's consumer would deliver: the room
   * at core NATS speed, on every device at once. What arrives while catching up waits in order.
   */
  subscribe(): void {
    const { nc, roomId, userId } = this.d;
    const copies = roomCopies(roomId);
    for (const filter of userConsumerFilters(roomId, userId)) {
      nc.subscribe(republishedSubject(filter), {
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

  /** What arrives after a reconnect may be newer than what was missed: hold it until caught up. */
  disconnected(): void {
    this.catching = true;
  }

  /**
   * Catches up from the device's consumer: moves it to just after the last sequence handed on,
   * pulls until nothing is pending, then hands on what arrived meanwhile. Runs at connect and
   * after every reconnect; a reconnect during a catch-up runs it once more. A catch-up that fails
   * while connected is tried again, and the consumer repaired first (`repair`): until then, what
   * arrives is held, not lost.
   */
  async run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
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
          if (this.d.closed() || !this.d.connected() || e instanceof PermissionViolationError)
            break;
          await this.d.repair();
          const wait = jittered(
            backoffCeilingMs(
              { firstMs: CATCH_UP_RETRY_FIRST_MS, maxMs: CATCH_UP_RETRY_MAX_MS },
              ++failures,
            ),
          );
          await new Promise((r) => setTimeout(r, wait));
          this.again = true;
        }
      } while (this.again && !this.d.closed());
    } finally {
      const held = this.held.sort((a, b) => a.seq - b.seq);
      this.held = [];
      this.catching = false;
      this.running = false;
      for (const h of held) this.deliver(h.subject, h.seq, h.data);
    }
  }

  /** Resets the consumer to just after the last sequence handed on, and pulls what it has. */
  private async pullMissed(): Promise<void> {
    const { nc, roomId, consumerName: name } = this.d;
    // resumeAfter 0: from the start of what the stream holds (a page that keeps no history).
    const fromSeq = this.lastSeq > 0 || this.d.resumeAfter === 0 ? this.lastSeq + 1 : undefined;
    const body = fromSeq !== undefined ? JSON.stringify({ seq: fromSeq }) : '';
    const reset = (
      await nc.request(JsApi.consumerReset(roomId, name), body, {
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
    while (pending > 0 && !this.d.closed()) {
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

  /** Hands a room stream message on once, in stream order: nothing at or below the last. */
  private deliver(
    subject: string,
    seq: number,
    data: Uint8Array,
    parsed: ParsedSubject = parseRoomSubject(subject),
  ): void {
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    this.d.deliver(subject, seq, data, parsed);
  }
}
