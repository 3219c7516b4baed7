/**
 * The event pool's redelivery timing and fairness against a real server: the stored consumer
 * config is what the flags say, a handler slower than `ack_wait` is not redelivered while it runs,
 * and one user's burst does not hold the slots other users need.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import type { RoomClient } from '../../src/client/index.js';
import { silentLogger } from '../../src/runtime/logger.js';
import { SystemMsgIds } from '../../src/infra/msg-ids.js';
import { ensureWorkerStream, nanos } from '../../src/infra/streams.js';
import {
  roleWorkerSubject,
  userAnswerSubject,
  WORKER_CONSUMER,
  WORKER_STREAM,
} from '../../src/protocol/subjects.js';
import { CasConflictError } from '../../src/infra/kv.js';
import type { HandlerResult, Handlers } from '../../src/worker/handlers.js';
import { WorkerMetrics } from '../../src/worker/metrics.js';
import { EventPool, workerConsumerConfig } from '../../src/worker/pool.js';
import { joinRoom, startCallout, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom, readRoomStream } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  await ensureWorkerStream(jsm);
});
afterAll(async () => {
  await svc?.close();
  await server?.destroy();
});

/** A pool around handlers the test controls. */
function pool(handlers: Pick<Handlers, 'handle'>, ackWaitMs: number): EventPool {
  return new EventPool(
    svc,
    handlers as Handlers,
    { concurrency: 50, ackWaitMs, maxDeliver: 5 },
    new WorkerMetrics(new Registry(), () => 0),
    silentLogger(),
    new SystemMsgIds(server.keys.server.servicePassword),
  );
}

describe('redelivery timing', () => {
  afterEach(async () => {
    await jsm.consumers.delete(WORKER_STREAM, WORKER_CONSUMER).catch(() => undefined);
  });

  test('the stored consumer has the ack_wait and max_deliver of the flags, and no backoff that would replace ack_wait', async () => {
    // As an earlier version stored it: a backoff, whose first entry the server uses as ack_wait.
    await jsm.consumers.add(WORKER_STREAM, {
      ...workerConsumerConfig({ concurrency: 50, ackWaitMs: 30_000, maxDeliver: 5 }),
      backoff: [nanos(1_000), nanos(5_000)],
    });
    expect((await jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER)).config.ack_wait).toBe(
      nanos(1_000),
    );
    const p = pool({ handle: () => Promise.resolve({ data: {}, broadcasts: [] }) }, 7_000);
    await p.start(jsm);
    try {
      const info = await jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER);
      expect(info.config.ack_wait).toBe(nanos(7_000));
      expect(info.config.max_deliver).toBe(5);
      expect(info.config.backoff ?? []).toEqual([]);
    } finally {
      await p.stop();
    }
  });

  test('a handler slower than ack_wait reports progress and is not redelivered while it runs', async () => {
    const ACK_WAIT_MS = 1_000;
    let calls = 0;
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    const p = pool(
      {
        handle: async (): Promise<HandlerResult> => {
          calls++;
          await blocked;
          return { data: {}, broadcasts: [] };
        },
      },
      ACK_WAIT_MS,
    );
    await p.start(jsm);
    try {
      await jetstream(svc).publish(
        roleWorkerSubject('slow', 'hana', 'student'),
        JSON.stringify({ event: 'REQ_RAISE_HAND', id: 'slow-1' }),
      );
      await waitFor('handler started', () => calls === 1);
      const started = Date.now();
      // Three ack_waits pass with the handler still running: the server must not redeliver.
      await waitFor(
        'three ack_waits passed',
        async () => {
          const info = await jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER);
          expect(info.num_redelivered).toBe(0);
          expect(info.num_ack_pending).toBe(1);
          expect(calls).toBe(1);
          return Date.now() - started > 3 * ACK_WAIT_MS;
        },
        { timeoutMs: 10_000, intervalMs: 200 },
      );
    } finally {
      release();
      await p.stop();
    }
  });
});

describe('what the pool answers', () => {
  afterEach(async () => {
    await jsm.consumers.delete(WORKER_STREAM, WORKER_CONSUMER).catch(() => undefined);
  });

  test('a compare-and-set lost to other writers is tried again on redelivery, not refused', async () => {
    await publishRoom(svc, 'cas-lost');
    let calls = 0;
    const p = pool(
      {
        handle: (ctx): Promise<HandlerResult> => {
          // Events an earlier test left in the work queue are answered, not counted.
          if (ctx.roomId !== 'cas-lost') return Promise.resolve({ data: {}, broadcasts: [] });
          calls++;
          // The first delivery loses its compare-and-set ten times over; the redelivery wins.
          if (calls === 1) return Promise.reject(new CasConflictError('hands.cas-lost.hana'));
          return Promise.resolve({ data: {}, broadcasts: [] });
        },
      },
      30_000,
    );
    await p.start(jsm);
    try {
      await jetstream(svc).publish(
        roleWorkerSubject('cas-lost', 'hana', 'student'),
        JSON.stringify({ event: 'REQ_LOWER_HAND', id: 'cas-1' }),
      );
      const answers = async () =>
        (await readRoomStream(svc, 'cas-lost', [userAnswerSubject('cas-lost', 'hana')])).map((m) =>
          m.json<{ id: string; ok: boolean }>(),
        );
      await waitFor('answered', async () => (await answers()).length > 0, { timeoutMs: 15_000 });
      expect(await answers()).toEqual([expect.objectContaining({ id: 'cas-1', ok: true })]);
      expect(calls).toBe(2);
    } finally {
      await p.stop();
    }
  }, 30_000);
});

describe('fairness', () => {
  let callout: TestCallout;
  let worker: TestWorker;
  beforeAll(async () => {
    await publishRoom(svc, 'busy', { maxParticipants: 50 });
    callout = await startCallout(server.keys, [server.url]);
    worker = await startWorker(server.keys, [server.url]);
  });
  afterAll(async () => {
    await worker?.stop();
    await callout?.stop();
  });

  const join = (userId: string): Promise<RoomClient> =>
    joinRoom(server.url, server.keys, 'busy', userId);

  test("one user's 500 events do not hold the slots another user needs (its p90 ≤ 200 ms)", async () => {
    const [noisy, quiet] = [await join('noisy'), await join('quiet')];
    try {
      const burst = Promise.all(
        Array.from({ length: 500 }, () => noisy.request('REQ_LOWER_HAND', {}, 60_000)),
      );
      // The quiet user's events arrive behind the whole burst in the work queue.
      await waitFor(
        'burst queued',
        async () => (await jsm.streams.info(WORKER_STREAM)).state.messages >= 100,
      );
      const took = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const t0 = performance.now();
          await quiet.request('REQ_LOWER_HAND', {}, 30_000);
          return performance.now() - t0;
        }),
      );
      took.sort((a, b) => a - b);
      const p90 = took[8] as number;
      console.log(`fairness: quiet user's p90 ${p90.toFixed(1)} ms behind a burst of 500`);
      expect(p90).toBeLessThanOrEqual(200);
      await burst;
    } finally {
      await noisy.close();
      await quiet.close();
    }
  }, 90_000);
});
