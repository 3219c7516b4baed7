/**
 * Connect storm: N room clients connecting through the auth callout (a separate `torii
 * auth-callout` process, as deployed) against the same clients on a server without a callout
 * (plain token auth), in one run. Prints one JSON line.
 *
 *   npx tsx bench/connect-storm.ts [--clients 2000] [--concurrency 50] [--paced-rate 200]
 *                                  [--worker]
 *
 * `--worker` also runs a `torii worker` (presence), as every deployment does: the callout's seat
 * claims are then confirmed by presence and its room ledger stays small. Without it no claim is
 * ever confirmed, the ledger of the one room grows to every user (presence down: the worst case).
 *
 * Phases: raw (no callout); callout-cold (new users: each needs its consumer created);
 * callout-warm (the same users reconnecting: consumers known); paced (a steady rate, latency).
 *
 * Profiling: `BENCH_CALLOUT_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR'` profiles the callout
 * process (written when it exits); `BENCH_NATS_PROF_DIR=DIR` opens nats-server's profiling port
 * and saves a CPU profile of the first `BENCH_NATS_PROF_SECONDS` (default 2) of the cold and the
 * warm phase as `DIR/cold.pb.gz` and `DIR/warm.pb.gz` (read them with `go tool pprof -top`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { PROJECT_ROOT } from '../src/runtime/version.js';
import { connectClient, token } from '../test/helpers/callout.js';
import { startNats, testKeys } from '../test/helpers/nats.js';
import { freePort, track, waitFor } from '../test/helpers/procs.js';
import { publishRoom } from '../test/helpers/room.js';
import { startPlainServer } from './helpers/plain-server.js';
import { paced, pool, r2, report, summary, withCpu } from './lib.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
    'paced-rate': { type: 'string', default: '200' },
    'paced-seconds': { type: 'string', default: '5' },
    worker: { type: 'boolean', default: false },
  },
});
const N = Number(values.clients);
const C = Number(values.concurrency);
const RATE = Number(values['paced-rate']);
const PACED_N = RATE * Number(values['paced-seconds']);

async function closeAll(conns: NatsConnection[]): Promise<void> {
  await Promise.all(conns.splice(0).map((c) => c.close().catch(() => undefined)));
}

async function main(): Promise<void> {
  const keys = await testKeys();

  // Baseline: the same server build and JetStream, plain token auth, no callout.
  const rawToken = 'bench-raw-token-0123456789abcdef';
  const raw = await startPlainServer({ name: 'raw', token: rawToken, keys });

  const profDir = process.env.BENCH_NATS_PROF_DIR;
  const profPort = profDir ? await freePort() : undefined;
  const profSeconds = Number(process.env.BENCH_NATS_PROF_SECONDS ?? '2');
  /** Starts a CPU profile of nats-server; resolves once it is saved (or at once without one). */
  const profile = async (phase: string): Promise<void> => {
    if (!profDir || profPort === undefined) return;
    mkdirSync(profDir, { recursive: true });
    const res = await fetch(
      `http://127.0.0.1:${profPort}/debug/pprof/profile?seconds=${profSeconds}`,
    );
    writeFileSync(path.join(profDir, `${phase}.pb.gz`), Buffer.from(await res.arrayBuffer()));
  };
  const server = await startNats({
    keys,
    ...(profPort !== undefined ? { rewrite: (c) => `${c}\nprof_port: ${profPort}\n` } : {}),
  });
  const svc = await server.connectService();
  await publishRoom(svc, 'bench', { maxParticipants: 10_000 });
  /** A Torii role as its own process, as deployed, against the bench's server. */
  const role = (name: string, nodeArgs: string[] = []) =>
    track(
      spawn(
        process.execPath,
        [
          ...nodeArgs,
          path.join(PROJECT_ROOT, 'dist', 'cli.js'),
          name,
          '--nats-url',
          server.url,
          '--keys-dir',
          keys.dir,
          '--http-port',
          '0',
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      ),
    );
  const callout = role(
    'auth-callout',
    (process.env.BENCH_CALLOUT_NODE_ARGS ?? '').split(' ').filter(Boolean),
  );
  const worker = values.worker
    ? role('worker', (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean))
    : undefined;
  const tokens = await Promise.all(
    Array.from({ length: Math.max(N, PACED_N) }, (_, i) =>
      token(keys, { room: 'bench', sub: `u${i}`, role: 'student' }),
    ),
  );
  await waitFor(
    'callout ready',
    async () =>
      (await connectClient(server.url, 'bench', 'u0', tokens[0] as string))
        .close()
        .then(() => true),
    { timeoutMs: 30_000, intervalMs: 200 },
  );

  const conns: NatsConnection[] = [];
  const rawPids = { clients: undefined, server: raw.pid };
  const pids = {
    clients: undefined,
    server: server.process.pid,
    callout: callout.pid,
    ...(worker ? { worker: worker.pid } : {}),
  };
  const { result: rawRun, cpu: rawCpu } = await withCpu(rawPids, () =>
    pool(N, C, async (i) => {
      conns.push(
        await connect({
          servers: raw.url,
          token: rawToken,
          inboxPrefix: `_INBOX.bench.u${i}`,
          maxReconnectAttempts: 0,
        }),
      );
    }),
  );
  await closeAll(conns);

  const coldProfile = profile('cold');
  const { result: cold, cpu: coldCpu } = await withCpu(pids, () =>
    pool(N, C, async (i) => {
      conns.push(await connectClient(server.url, 'bench', `u${i}`, tokens[i] as string));
    }),
  );
  await coldProfile;
  await closeAll(conns);

  const warmProfile = profile('warm');
  const { result: warm, cpu: warmCpu } = await withCpu(pids, () =>
    pool(N, C, async (i) => {
      conns.push(await connectClient(server.url, 'bench', `u${i}`, tokens[i] as string));
    }),
  );
  await warmProfile;
  await closeAll(conns);

  const steady = await paced(PACED_N, RATE, async (i) => {
    conns.push(await connectClient(server.url, 'bench', `u${i}`, tokens[i] as string));
  });
  await closeAll(conns);

  const rate = (r: { latencies: number[]; elapsedMs: number }): number =>
    r2((r.latencies.length / r.elapsedMs) * 1000);
  report({
    bench: 'connect-storm',
    clients: N,
    concurrency: C,
    worker: values.worker,
    raw: {
      connectionsPerSec: rate(rawRun),
      latencyMs: summary(rawRun.latencies),
      errors: rawRun.errors,
      cpuSeconds: rawCpu,
    },
    calloutCold: {
      connectionsPerSec: rate(cold),
      latencyMs: summary(cold.latencies),
      errors: cold.errors,
      cpuSeconds: coldCpu,
    },
    calloutWarm: {
      connectionsPerSec: rate(warm),
      latencyMs: summary(warm.latencies),
      errors: warm.errors,
      cpuSeconds: warmCpu,
    },
    ratioCold: r2(rate(cold) / rate(rawRun)),
    ratioWarm: r2(rate(warm) / rate(rawRun)),
    paced: {
      perSec: RATE,
      clients: PACED_N,
      latencyMs: summary(steady.latencies),
      errors: steady.errors,
    },
    targets: { connectionsPerSec: 1000, ratio: 0.6, pacedP99Ms: 50 },
  });

  callout.kill('SIGTERM');
  worker?.kill('SIGTERM');
  await svc.close();
  await server.destroy();
  await raw.stop();
}

await main();
process.exit(0);
