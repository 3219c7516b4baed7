/**
 * Repair of the device's consumer when a catch-up from it fails: JetStream is asked how the
 * consumer stands, and a worker restores or creates it, or the callout does at a new admission
 * (docs/protocol.md).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import {
  JS_CONSUMER_NOT_FOUND,
  JS_CONSUMER_OFFLINE,
  jsErrorCode,
  PROBE_TIMEOUT_MS,
} from '../protocol/jetstream.js';
import { JsApi } from '../protocol/subjects.js';

/**
 * Least time between two repairs of the consumer, in milliseconds: longer than a worker takes to
 * restore it, during which the consumer is missing for a moment.
 */
const REPAIR_INTERVAL_MS = 15_000;

/**
 * A consumer as JetStream serves it: `unserved` when no server answers for it, `missing` when it
 * is gone, `unknown` for any other failure (of the moment).
 */
type ConsumerState = 'ok' | 'unserved' | 'missing' | 'unknown';

/**
 * The consumer `name` of the room stream `roomId` as JetStream serves it: `unserved` when
 * JetStream counts its server as gone, or does not answer for it at all. A worker checks again
 * before it restores anything (with the stream's info, which clients may not read), so a
 * consumer that was only slow to answer costs one `REQ_RESTORE_CONSUMER` that changes nothing.
 */
async function consumerState(
  nc: NatsConnection,
  roomId: string,
  name: string,
): Promise<ConsumerState> {
  let code: number | 'ok';
  try {
    const r = await nc.request(JsApi.consumerInfo(roomId, name), '', {
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

/** What a {@link ConsumerRepair} needs of its connection. */
interface ConsumerRepairDeps {
  nc: NatsConnection;
  roomId: string;
  /** The consumer the connection catches up from. */
  consumerName: string;
  /**
   * Asks a worker to restore (or create) the consumer (`REQ_RESTORE_CONSUMER`); not awaited:
   * the answer is held with the room's copies until caught up.
   */
  askRestore: () => Promise<unknown>;
}

/**
 * Repairs the device's consumer after a failed catch-up. One that no server serves (its one
 * server died: it keeps its name, but nobody answers for it) is restored by a worker on a server
 * that is up. One that is gone (the server deletes a consumer its inactive threshold after its
 * last pull) is created by a worker the same way; still gone at the next repair, by the callout
 * at a new admission: the connection reconnects.
 */
export class ConsumerRepair {
  /** When the consumer was last asked to be restored, or reconnected for (ms since the epoch). */
  private lastRepair = 0;
  /** Whether the last repair asked a worker to create the missing consumer. */
  private askedToCreate = false;

  constructor(private readonly d: ConsumerRepairDeps) {}

  /**
   * At most once per {@link REPAIR_INTERVAL_MS}: the next try of the catch-up sees what it
   * changed.
   */
  async repair(): Promise<void> {
    if (Date.now() - this.lastRepair < REPAIR_INTERVAL_MS) return;
    const state = await consumerState(this.d.nc, this.d.roomId, this.d.consumerName);
    if (state === 'ok' || state === 'unknown') return; // a failure of the moment: try again
    this.lastRepair = Date.now();
    const askedToCreate = this.askedToCreate;
    this.askedToCreate = state === 'missing' && !askedToCreate;
    if (state === 'missing' && askedToCreate) {
      void this.d.nc.reconnect().catch(() => undefined);
    } else {
      void this.d.askRestore().catch(() => undefined);
    }
  }
}
