/**
 * JetStream publishes with their acknowledgements on one subscription of the client's own inbox.
 *
 * nats.js's `js.publish` is a request: per publish it makes a request object with its own timer
 * and, when the answer comes, rejects the settled promise with a new `Error` (a stack trace each
 * time). A sender chatting at 50 in flight spent about 60 µs of CPU per message there, 13 µs with
 * this (docs/performance.md, "Room fan-out"), and in a room of 25 the sender shares the machine
 * with the server and the receivers. The protocol is the same: a message with a reply subject,
 * which the stream answers with its PubAck (or an error) and the server with a 503 status when no
 * stream listens.
 */
import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import {
  createInbox,
  errors,
  headers,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/nats-core';

/** The status with which the server answers a request that no subscriber took. */
const STATUS_NO_RESPONDERS = 503;
/** The header JetStream de-duplicates on within its duplicate window. */
const MSG_ID_HEADER = 'Nats-Msg-Id';

/** A publish that no stream answered: none listens on the subject, or JetStream is not up. */
export class NoStreamError extends Error {
  constructor(readonly subject: string) {
    super(`no stream stores ${subject} (JetStream not enabled or starting)`);
    this.name = 'NoStreamError';
  }
}

/** The publish was not answered because the client closed. */
export class PublisherClosedError extends Error {
  constructor() {
    super('the client was closed before the publish was acknowledged');
    this.name = 'PublisherClosedError';
  }
}

interface Waiting {
  subject: string;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** What a stream answers a publish with. */
interface PubAckReply {
  stream?: string;
  seq?: number;
  error?: ApiError;
}

/** Publishes to JetStream and waits for the stream's acknowledgement. */
export class StoredPublisher {
  private readonly inbox: string;
  private readonly waiting = new Map<number, Waiting>();
  private readonly sub: Subscription;
  private next = 0;

  /** `inboxPrefix`: a prefix the client may subscribe under (its inbox). */
  constructor(
    private readonly nc: NatsConnection,
    inboxPrefix: string,
  ) {
    this.inbox = createInbox(inboxPrefix);
    this.sub = nc.subscribe(`${this.inbox}.*`, {
      callback: (err, m) => {
        if (!err) this.settle(m);
      },
    });
  }

  /**
   * Publishes `payload` to `subject` with `Nats-Msg-Id: msgID` and resolves once a stream stored
   * it (or had it already: a duplicate). Rejects with JetStream's error (`JetStreamApiError`),
   * {@link NoStreamError}, a `TimeoutError` after `timeoutMs`, or {@link PublisherClosedError}.
   */
  publish(subject: string, payload: string, msgID: string, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.sub.isClosed()) {
        reject(new PublisherClosedError());
        return;
      }
      const id = ++this.next;
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new errors.TimeoutError());
      }, timeoutMs);
      this.waiting.set(id, { subject, resolve, reject, timer });
      const h = headers();
      h.set(MSG_ID_HEADER, msgID);
      try {
        this.nc.publish(subject, payload, { reply: `${this.inbox}.${id}`, headers: h });
      } catch (e) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** Fails every publish still waiting and stops listening. */
  close(): void {
    this.sub.unsubscribe();
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new PublisherClosedError());
    }
    this.waiting.clear();
  }

  private settle(m: Msg): void {
    const id = Number(m.subject.slice(this.inbox.length + 1));
    const w = this.waiting.get(id);
    if (!w) return; // timed out already, or not ours
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if (m.headers?.code === STATUS_NO_RESPONDERS) {
      w.reject(new NoStreamError(w.subject));
      return;
    }
    let r: PubAckReply;
    try {
      r = m.json<PubAckReply>();
    } catch {
      w.reject(new Error(`the acknowledgement of a publish is not JSON (${m.data.length} bytes)`));
      return;
    }
    if (r.error) w.reject(new JetStreamApiError(r.error));
    else if (typeof r.stream !== 'string' || r.stream === '')
      w.reject(new Error('the acknowledgement of a publish names no stream'));
    else w.resolve();
  }
}
