/**
 * Room events end to end: client → sysJsWorker → `torii worker` (a separate process) → answer in
 * the room stream → the user's consumer, against the raw JetStream round trip (client → work
 * queue → a minimal consumer that republishes → room stream → user consumer) in the same run.
 * Prints one JSON line.
 *
 *   npx tsx bench/room-events.ts [--events 4000] [--clients 20] [--window 10] [--rate 1000]
 */
import { connect as nodeConnect } from '@nats-io/transport-node';
import { parseArgs } from 'node:util';
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import { RoomClient } from '../src/client/index.js';
import { RequestEvent } from '../src/protocol/events.js';
import { startCallout, token } from '../test/helpers/callout.js';
import { spawnRole } from '../test/helpers/cli.js';
import { startNats } from '../test/helpers/nats.js';
import { publishRoom } from '../test/helpers/room.js';
import { paced, pool, r2, report, summary, withCpu } from './lib.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '4000' },
    clients: { type: 'string', default: '20' },
    window: { type: 'string', default: '10' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
  },
});
const N = Number(values.events);
const K = Number(values.clients);
const W = Number(values.window);
const RATE = Number(values.rate);

async function main(): Promise<void> {
  const server = await startNats();
  const svc = await server.connectService();
  await publishRoom(svc, 'bench', { maxParticipants: 1000 });
  const callout = await startCallout(server.keys, [server.url]);
  const { proc: worker } = await spawnRole([
    'worker',
    '--nats-url',
    server.url,
    '--keys-dir',
    server.keys.dir,
  ]);

  // Raw path: the same shape with nothing of ours in it.
  const jsm = await jetstreamManager(svc);
  await jsm.streams.add({
    name: 'rawWork',
    subjects: ['rawWork.*'],
    retention: RetentionPolicy.Workqueue,
  });
  await jsm.streams.add({ name: 'rawRoom', subjects: ['rawRoom.>'] });
  await jsm.consumers.add('rawWork', { durable_name: 'w', ack_policy: AckPolicy.Explicit });
  const js = jetstream(svc);
  const rawWorker = await (await js.consumers.get('rawWork', 'w')).consume({ max_messages: 50 });
  void (async () => {
    for await (const m of rawWorker) {
      const user = m.subject.split('.')[1] as string;
      await js.publish(`rawRoom.user.${user}`, m.data);
      m.ack();
    }
  })();
  const raw = await Promise.all(
    Array.from({ length: K }, async (_, i) => {
      const user = `r${i}`;
      await jsm.consumers.add('rawRoom', {
        durable_name: user,
        filter_subject: `rawRoom.user.${user}`,
        ack_policy: AckPolicy.Explicit,
        mem_storage: true,
      });
      const pending = new Map<string, () => void>();
      const msgs = await (await js.consumers.get('rawRoom', user)).consume({ max_messages: 100 });
      void (async () => {
        for await (const m of msgs) {
          pending.get(m.string())?.();
          m.ack();
        }
      })();
      let n = 0;
      return {
        msgs,
        send: async () => {
          const id = `${user}-${n++}`;
          const answered = new Promise<void>((r) => pending.set(id, r));
          await js.publish(`rawWork.${user}`, id, { msgID: id });
          await answered;
          pending.delete(id);
        },
      };
    }),
  );

  const clients = await Promise.all(
    Array.from({ length: K }, async (_, i) =>
      RoomClient.connect({
        connect: nodeConnect,
        servers: server.url,
        roomId: 'bench',
        userId: `u${i}`,
        token: await token(server.keys, { room: 'bench', sub: `u${i}`, role: 'student' }),
        autoRenew: false,
      }),
    ),
  );
  const ours = (i: number) => (clients[i % K] as RoomClient).request(RequestEvent.LowerHand);
  await pool(K * 5, K, (i) => ours(i).then(() => undefined)); // warm up: member caches, consumers

  const pids = { benchProcess: undefined, nats: server.process.pid, worker: worker.pid };
  const { result: rawRun, cpu: rawCpu } = await withCpu(pids, () =>
    pool(N, K * W, (i) => (raw[i % K] as { send: () => Promise<void> }).send()),
  );
  const { result: ourRun, cpu: ourCpu } = await withCpu(pids, () =>
    pool(N, K * W, (i) => ours(i).then(() => undefined)),
  );
  const steady = await paced(RATE * Number(values.seconds), RATE, (i) =>
    ours(i).then(() => undefined),
  );

  const rate = (r: { latencies: number[]; elapsedMs: number }): number =>
    r2((r.latencies.length / r.elapsedMs) * 1000);
  report({
    bench: 'room-events',
    events: N,
    clients: K,
    inFlightPerClient: W,
    event: `${RequestEvent.LowerHand} (compare-and-set on the hand, answer, no broadcast)`,
    raw: {
      eventsPerSec: rate(rawRun),
      latencyMs: summary(rawRun.latencies),
      errors: rawRun.errors,
      cpuSeconds: rawCpu,
    },
    torii: {
      eventsPerSec: rate(ourRun),
      latencyMs: summary(ourRun.latencies),
      errors: ourRun.errors,
      cpuSeconds: ourCpu,
    },
    ratio: r2(rate(ourRun) / rate(rawRun)),
    paced: {
      perSec: RATE,
      events: steady.latencies.length,
      latencyMs: summary(steady.latencies),
      errors: steady.errors,
      achievedPerSec: r2((steady.latencies.length / steady.elapsedMs) * 1000),
    },
    targets: { ratio: 0.6, pacedP99Ms: 25 },
  });

  await Promise.all(clients.map((c) => c.close()));
  for (const r of raw) await r.msgs.close();
  await rawWorker.close();
  worker.kill('SIGTERM');
  await callout.stop();
  await svc.close();
  await server.destroy();
}

await main();
process.exit(0);
