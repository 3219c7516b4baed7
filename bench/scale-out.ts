/**
 * Scale-out: the same users and rooms on one nats-server and on a cluster of three routed
 * nats-servers with JetStream, in one run. Prints one JSON line.
 *
 *   npx tsx bench/scale-out.ts [--users 3000] [--rooms 30] [--replicas 1] [--procs 3]
 *                              [--concurrency 20] [--topology cluster,single] [--settle 10]
 *                              [--chat-rate 2] [--chat-seconds 20] [--rejoin resume]
 *
 *   --users         students in all; student i connects to node i mod (number of nodes)
 *   --rooms         rooms; room r holds students r·n … r·n+n-1 (n = users / rooms), so every
 *                   room has members on every node, plus one teacher (on node r mod nodes)
 *   --replicas      room streams' `history.replicas` in the cluster: 1 (each room stream on one
 *                   node, JetStream spreading them over the nodes) or 3 (every room on every
 *                   node). The one-node run always uses 1.
 *   --procs         client processes holding the students (user i in process i mod procs); the
 *                   teachers are in one more process
 *   --concurrency   joins in flight per client process
 *   --topology      which runs, in order: `cluster` (three nodes), `single` (one node)
 *   --settle        seconds between the end of the joins and the memory reading
 *   --chat-rate     chat messages per second each room's teacher sends during the fan-out
 *   --chat-seconds  length of the fan-out
 *   --rejoin        how the students come back after the drop: `resume` (each from the last
 *                   sequence it handed on, as the SDK does when its connection comes back, or an
 *                   app that keeps it) or `reload` (a page reloaded without its history: catch-up
 *                   from where the consumer was last acked, which replays everything since the
 *                   previous catch-up)
 *
 * Each run, as deployed: the servers (key set, accounts, JetStream, routes: test/helpers/nats.ts),
 * the KV buckets and the worker queue at three replicas in the cluster, `torii auth-callout` and
 * `torii worker` as processes of their own connected to every node (the callout answers auth
 * requests of every node: they reach it through the routes). Rooms are published as the
 * controller does (compiled config in KV, room stream). Then, per run:
 *
 *   1. first-time joins: every student joins through the SDK (`RoomClient.connect`: connect
 *      through the callout, which creates the consumer, then catch-up), all processes at once;
 *   2. at rest: `--settle` s later, each server's RSS (/proc) against its RSS before the joins;
 *   3. fan-out: the teachers chat at a fixed rate; every student's listener counts deliveries and
 *      their latency (send time to the listener);
 *   4. reconnects: every student drops its connection (no leave) and joins again (consumer known,
 *      `--rejoin`).
 *
 * CPU seconds (user + system, /proc) of every server, the callout, the worker and the client
 * processes are taken around phases 1, 3 and 4. The machine the numbers in docs/performance.md
 * come from has 2 cores for everything: three servers on it measure what each node costs (memory,
 * CPU per connect or delivery), not what three machines would do in parallel.
 * Run it under the machine's benchmark lock: `flock /work/bench.lock npx tsx bench/scale-out.ts`.
 * Needs `npm run build` (the roles run from dist/). Every server, role and client process it
 * starts is stopped when it ends, fails, or gets SIGINT/SIGTERM (test/helpers/procs.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { openBucket } from '../src/infra/kv.js';
import { compileRoom } from '../src/domain/room-compile.js';
import { ensureRoomStream, ensureWorkerStream } from '../src/infra/streams.js';
import { Bucket, roomStreamName } from '../src/protocol/subjects.js';
import { CLI, cleanEnv } from '../test/helpers/cli.js';
import {
  startNats,
  TestCluster,
  testKeys,
  type TestKeys,
  type TestNats,
} from '../test/helpers/nats.js';
import { freePort, killFileChildren, track, waitFor } from '../test/helpers/procs.js';
import { cpuSeconds, nowMs, r2, report, rssKiB, summary } from './lib.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '3000' },
    rooms: { type: 'string', default: '30' },
    replicas: { type: 'string', default: '1' },
    procs: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '20' },
    topology: { type: 'string', default: 'cluster,single' },
    settle: { type: 'string', default: '10' },
    'chat-rate': { type: 'string', default: '2' },
    'chat-seconds': { type: 'string', default: '20' },
    rejoin: { type: 'string', default: 'resume' },
  },
});
const USERS = Number(values.users);
const ROOMS = Number(values.rooms);
const PER_ROOM = Math.ceil(USERS / ROOMS);
const REPLICAS = Number(values.replicas);
const PROCS = Number(values.procs);
const CONCURRENCY = Number(values.concurrency);
const SETTLE_MS = Number(values.settle) * 1000;
const CHAT_RATE = Number(values['chat-rate']);
const CHAT_SECONDS = Number(values['chat-seconds']);
const TOPOLOGIES = values.topology.split(',').map((t) => {
  if (t !== 'cluster' && t !== 'single') throw new Error(`--topology: unknown '${t}'`);
  return t;
});
if (values.rejoin !== 'resume' && values.rejoin !== 'reload')
  throw new Error('--rejoin: resume or reload');
const RESUME = values.rejoin === 'resume';
if (![1, 3].includes(REPLICAS)) throw new Error('--replicas: 1 or 3');
if (!(USERS > 0 && ROOMS > 0 && PROCS > 0 && CONCURRENCY > 0))
  throw new Error('--users, --rooms, --procs and --concurrency must be positive');
/**
 * Every server's JetStream file limit, in bytes: the same on every node, as the chart sets it (the
 * volume's size). JetStream places a one-replica stream on the node with the most storage left,
 * so servers left to size their store from the free disk (which differs by the moment each one
 * starts) would all put every room on one node.
 */
const JETSTREAM_MAX_FILE = 10 * 1024 ** 3;
/** Longest wait for the deliveries of the fan-out after the last message was sent. */
const DRAIN_TIMEOUT_MS = 30_000;
/** Longest wait for the servers to count the dropped connections as gone. */
const DROP_TIMEOUT_MS = 30_000;

const roomName = (r: number): string => `scale${r}`;

async function monitor<T>(node: TestNats, path: string): Promise<T> {
  const base = node.process.ports.monitoring?.[0];
  if (!base) throw new Error(`${node.name} has no monitoring port`);
  return (await (await fetch(new URL(path, base))).json()) as T;
}
const connections = async (n: TestNats): Promise<number> =>
  (await monitor<{ connections: number }>(n, '/varz')).connections;

/** A client process of bench/helpers/scale-client.ts: one JSON command, one JSON answer. */
interface ClientProc {
  child: ChildProcess;
  send(command: Record<string, unknown>): Promise<Record<string, unknown>>;
  stop(): void;
}

async function startClientProc(keys: TestKeys): Promise<ClientProc> {
  const child = track(
    spawn(
      process.execPath,
      ['--import', 'tsx', new URL('./helpers/scale-client.ts', import.meta.url).pathname],
      {
        env: { ...process.env, SCALE_KEYS_DIR: keys.dir },
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    ),
  );
  const stdin = child.stdin;
  const stdout = child.stdout;
  if (!stdin || !stdout) throw new Error('client process without pipes');
  const lines = createInterface({ input: stdout })[Symbol.asyncIterator]();
  // One command at a time per process: answers come back in order.
  let queue: Promise<unknown> = Promise.resolve();
  const next = async (): Promise<Record<string, unknown>> => {
    const l = await lines.next();
    if (l.done) throw new Error('a client process exited');
    const answer = JSON.parse(l.value) as Record<string, unknown>;
    if (typeof answer['error'] === 'string') throw new Error(`client process: ${answer['error']}`);
    return answer;
  };
  await next(); // ready
  return {
    child,
    send(command) {
      const p = queue.then(() => {
        stdin.write(JSON.stringify(command) + '\n');
        return next();
      });
      queue = p.catch(() => undefined);
      return p;
    },
    stop: () => {
      stdin.end();
      child.kill('SIGKILL');
    },
  };
}

/** `torii <role>` as its own process, connected to every node, ready once `/readyz` says so. */
async function startRole(
  name: 'auth-callout' | 'worker',
  urls: string[],
  keys: TestKeys,
  kvReplicas: number,
): Promise<ChildProcess> {
  const port = await freePort();
  const child = track(
    spawn(
      process.execPath,
      [
        CLI,
        name,
        '--nats-url',
        urls.join(','),
        '--keys-dir',
        keys.dir,
        '--kv-replicas',
        String(kvReplicas),
        '--http-port',
        String(port),
        '--log-level',
        'warn',
      ],
      { env: cleanEnv(), stdio: ['ignore', 'ignore', 'inherit'] },
    ),
  );
  await waitFor(
    `${name} ready`,
    async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200,
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  return child;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** CPU seconds the whole machine has spent busy (every process, this bench's or not). */
function machineBusySeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/) ?? [];
  // user nice system idle iowait irq softirq steal …: all but idle and iowait
  const ticks = cpu.slice(1, 9).map(Number);
  return (sum(ticks) - (ticks[3] ?? 0) - (ticks[4] ?? 0)) / 100; // USER_HZ is 100 on Linux
}

/**
 * CPU seconds of each named process while `fn` runs, the wall time in ms, and the cores the
 * machine as a whole kept busy meanwhile (`machine`: whether the phase saturated it).
 */
async function measured<T>(
  pids: Record<string, number | undefined>,
  fn: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number>; wallMs: number }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const busy0 = machineBusySeconds();
  const t0 = nowMs();
  const result = await fn();
  const wallMs = nowMs() - t0;
  const cpu = Object.fromEntries(
    Object.entries(pids).map(([k, p]) => [k, r2(cpuSeconds(p) - (before[k] as number))]),
  );
  cpu['machineCoresBusy'] = r2(((machineBusySeconds() - busy0) * 1000) / wallMs);
  return { result, cpu, wallMs };
}

async function runTopology(
  kind: 'cluster' | 'single',
  keys: TestKeys,
): Promise<Record<string, unknown>> {
  const config = { jetstreamMaxFile: JETSTREAM_MAX_FILE };
  const cluster = kind === 'cluster' ? await TestCluster.start(3, { keys, config }) : undefined;
  const nodes = cluster ? cluster.nodes : [await startNats({ keys, config })];
  const urls = nodes.map((n) => n.url);
  const kvReplicas = nodes.length === 1 ? 1 : 3;
  const replicas = nodes.length === 1 ? 1 : REPLICAS;
  const procs: ClientProc[] = [];
  const roles: ChildProcess[] = [];
  let svc: NatsConnection | undefined;
  try {
    // As deployed: buckets and the worker queue replicated in a cluster, rooms as the
    // controller publishes them.
    svc = await (nodes[0] as TestNats).connectService({ servers: urls });
    const jsm = await jetstreamManager(svc, { timeout: 20_000 });
    for (const b of Object.values(Bucket)) await openBucket(svc, b, kvReplicas);
    await ensureWorkerStream(jsm, kvReplicas);
    const roomsKv = await openBucket(svc, Bucket.Rooms, kvReplicas);
    for (let r = 0; r < ROOMS; r++) {
      const room = compileRoom(
        roomName(r),
        { maxParticipants: PER_ROOM + 10, history: { replicas } },
        `bench/${roomName(r)}`,
      );
      await ensureRoomStream(jsm, room);
      await roomsKv.put(room.roomId, JSON.stringify(room));
    }
    // Where JetStream put each room stream (its leader: with R1 the only copy).
    const leaders: Record<string, number> = Object.fromEntries(nodes.map((n) => [n.name, 0]));
    for (let r = 0; r < ROOMS; r++) {
      const si = await jsm.streams.info(roomStreamName(roomName(r)));
      const at = si.cluster?.leader ?? (nodes[0] as TestNats).name;
      leaders[at] = (leaders[at] ?? 0) + 1;
    }

    roles.push(await startRole('auth-callout', urls, keys, kvReplicas));
    roles.push(await startRole('worker', urls, keys, kvReplicas));
    const [callout, worker] = roles as [ChildProcess, ChildProcess];

    for (let p = 0; p < PROCS + 1; p++) procs.push(await startClientProc(keys));
    const teacherProc = procs[PROCS] as ClientProc;
    const studentProcs = procs.slice(0, PROCS);

    // Teachers first (not counted): one per room, room r's on node r mod nodes.
    await waitFor(
      'the callout admits on every node',
      async () => {
        const t = await teacherProc.send({
          op: 'join',
          concurrency: 10,
          users: Array.from({ length: ROOMS }, (_, r) => ({
            room: roomName(r),
            user: 'teacher',
            url: urls[r % urls.length],
            role: 'teacher',
          })),
        });
        if ((t['errors'] as number) === 0) return true;
        await teacherProc.send({ op: 'drop' });
        return false;
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );

    const shares: { room: string; user: string; url: string; role: string }[][] = studentProcs.map(
      () => [],
    );
    const usersOnNode = nodes.map(() => 0);
    for (let i = 0; i < USERS; i++) {
      const node = i % nodes.length;
      usersOnNode[node] = (usersOnNode[node] ?? 0) + 1;
      shares[i % PROCS]?.push({
        room: roomName(Math.floor(i / PER_ROOM)),
        user: `s${i}`,
        url: urls[node] as string,
        role: 'student',
      });
    }

    const pids: Record<string, number | undefined> = {
      ...Object.fromEntries(nodes.map((n) => [n.name, n.process.pid])),
      callout: callout.pid,
      worker: worker.pid,
      clients: undefined, // summed below from the client processes
    };
    const clientCpu = (): number => sum(procs.map((p) => cpuSeconds(p.child.pid)));
    const phase = async (fn: () => Promise<Record<string, unknown>[]>) => {
      const c0 = clientCpu();
      const m = await measured(pids, fn);
      m.cpu['clients'] = r2(clientCpu() - c0);
      // This bench's own processes, in cores: the rest of `machineCoresBusy` was someone else's.
      const own = sum(
        Object.entries(m.cpu).flatMap(([k, v]) => (k === 'machineCoresBusy' ? [] : [v])),
      );
      m.cpu['benchCoresBusy'] = r2((own * 1000) / m.wallMs);
      return m;
    };
    const joins = (answers: Record<string, unknown>[], wallMs: number) => {
      const latencies = answers.flatMap((a) => a['latencies'] as number[]);
      return {
        joined: latencies.length,
        errors: sum(answers.map((a) => a['errors'] as number)),
        connectsPerSec: r2((latencies.length * 1000) / wallMs),
        seconds: r2(wallMs / 1000),
        latencyMs: summary(latencies),
      };
    };

    // At rest before the joins: the baseline of each server's memory and connections.
    await new Promise((r) => setTimeout(r, 2_000));
    const rssBefore = nodes.map((n) => rssKiB(n.process.pid));
    const connsBefore = await Promise.all(nodes.map(connections));
    const rolesRssBefore = roles.map((c) => rssKiB(c.pid));

    // 1. First-time joins, every process at once.
    const cold = await phase(() =>
      Promise.all(
        studentProcs.map((p, k) =>
          p.send({ op: 'join', users: shares[k], concurrency: CONCURRENCY }),
        ),
      ),
    );

    // 2. At rest.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const rssAfter = nodes.map((n) => rssKiB(n.process.pid));
    const connsAfter = await Promise.all(nodes.map(connections));
    const jsz = await Promise.all(
      nodes.map((n) =>
        monitor<{ consumers?: number; meta_cluster?: { leader?: string } }>(n, '/jsz'),
      ),
    );
    // Subscriptions each server knows of, its clients' and those its routes told it of.
    const subsz = await Promise.all(
      nodes.map((n) => monitor<{ num_subscriptions?: number }>(n, '/subsz')),
    );
    const rolesRssAfter = roles.map((c) => rssKiB(c.pid));

    // 3. Fan-out at a fixed rate.
    await Promise.all(studentProcs.map((p) => p.send({ op: 'take' })));
    // Every student of the room gets each message; the teachers take turns, so each room gets
    // the same number of messages and the last room may have fewer students.
    const expectedPerMessage = USERS / ROOMS;
    const fan = await phase(async () => {
      const sent = await teacherProc.send({
        op: 'chat',
        rate: CHAT_RATE * ROOMS,
        seconds: CHAT_SECONDS,
      });
      const expected = Math.round((sent['sent'] as number) * expectedPerMessage);
      await waitFor(
        'every chat delivered',
        async () =>
          sum(
            (await Promise.all(studentProcs.map((p) => p.send({ op: 'count' })))).map(
              (a) => a['delivered'] as number,
            ),
          ) >= expected,
        { timeoutMs: DRAIN_TIMEOUT_MS, intervalMs: 100 },
      ).catch(() => undefined); // a shortfall is reported below
      return [sent];
    });
    const taken = await Promise.all(studentProcs.map((p) => p.send({ op: 'take' })));
    const fanLatencies = taken.flatMap((a) => a['latencies'] as number[]);
    const sent = fan.result[0] as { sent: number; errors: number };
    const delivered = sum(taken.map((a) => a['delivered'] as number));

    // 4. Reconnects: every student drops its connection and joins again.
    await Promise.all(studentProcs.map((p) => p.send({ op: 'drop' })));
    await waitFor(
      'the servers count the dropped connections as gone',
      async () =>
        (await Promise.all(nodes.map(connections))).every(
          (c, i) => c <= (connsBefore[i] as number),
        ),
      { timeoutMs: DROP_TIMEOUT_MS, intervalMs: 200 },
    );
    const warm = await phase(() =>
      Promise.all(
        studentProcs.map((p) => p.send({ op: 'rejoin', concurrency: CONCURRENCY, resume: RESUME })),
      ),
    );

    const perNode = nodes.map((n, i) => {
      const users = usersOnNode[i] as number;
      const grown = (rssAfter[i] as number) - (rssBefore[i] as number);
      return {
        node: n.name,
        users,
        clientConnections: (connsAfter[i] as number) - (connsBefore[i] as number),
        roomStreamLeaders: leaders[n.name] ?? 0,
        metaLeader: jsz[i]?.meta_cluster?.leader === n.name,
        consumers: jsz[i]?.consumers,
        subscriptions: subsz[i]?.num_subscriptions,
        rssBeforeMiB: r2((rssBefore[i] as number) / 1024),
        rssAtRestMiB: r2((rssAfter[i] as number) / 1024),
        kibPerUser: r2(grown / users),
        cpuSeconds: {
          coldJoins: cold.cpu[n.name],
          fanout: fan.cpu[n.name],
          reconnects: warm.cpu[n.name],
        },
      };
    });
    const totalRssGrowth = sum(rssAfter.map((a, i) => a - (rssBefore[i] as number)));
    return {
      nodes: nodes.length,
      roomStreamReplicas: replicas,
      kvReplicas,
      perNode,
      allNodes: {
        rssAtRestMiB: r2(sum(rssAfter) / 1024),
        kibPerUser: r2(totalRssGrowth / USERS),
      },
      roles: {
        calloutRssMiB: [
          r2((rolesRssBefore[0] as number) / 1024),
          r2((rolesRssAfter[0] as number) / 1024),
        ],
        workerRssMiB: [
          r2((rolesRssBefore[1] as number) / 1024),
          r2((rolesRssAfter[1] as number) / 1024),
        ],
      },
      coldJoins: { ...joins(cold.result, cold.wallMs), cpuSeconds: cold.cpu },
      reconnects: { ...joins(warm.result, warm.wallMs), cpuSeconds: warm.cpu },
      fanout: {
        messagesPerSec: CHAT_RATE * ROOMS,
        sent: sent.sent,
        sendErrors: sent.errors,
        expected: Math.round(sent.sent * expectedPerMessage),
        delivered,
        deliveriesPerSec: r2((delivered * 1000) / fan.wallMs),
        seconds: r2(fan.wallMs / 1000),
        latencyMs: summary(fanLatencies),
        cpuSeconds: fan.cpu,
        serverCpuUsPerDelivery: r2(
          (sum(nodes.map((n) => fan.cpu[n.name] ?? 0)) * 1e6) / Math.max(1, delivered),
        ),
      },
    };
  } finally {
    for (const p of procs) p.stop();
    for (const c of roles) c.kill('SIGTERM');
    await svc?.close().catch(() => undefined);
    if (cluster) await cluster.destroy();
    else await Promise.all(nodes.map((n) => n.destroy()));
    await killFileChildren();
  }
}

async function main(): Promise<void> {
  const keys = await testKeys();
  const runs: Record<string, unknown> = {};
  for (const t of TOPOLOGIES) runs[t] = await runTopology(t, keys);
  report({
    bench: 'scale-out',
    users: USERS,
    rooms: ROOMS,
    studentsPerRoom: PER_ROOM,
    clientProcesses: PROCS,
    concurrencyPerProcess: CONCURRENCY,
    settleSeconds: SETTLE_MS / 1000,
    chatPerRoomPerSec: CHAT_RATE,
    chatSeconds: CHAT_SECONDS,
    rejoin: values.rejoin,
    note: 'every process on the same machine: per-node memory and CPU are costs, not parallel speed',
    ...runs,
  });
}

// Interrupted (Ctrl-C, `timeout`): exit through the exit hooks of test/helpers/procs.ts, which
// kill every server and role this run started and remove their folders.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

try {
  await main();
} finally {
  await killFileChildren();
}
process.exit(0);
