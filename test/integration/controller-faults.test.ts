/**
 * The controller when the Kubernetes API misbehaves, against a real kube-apiserver behind a TCP
 * proxy the test breaks: (a) Lease calls that hang, (b) a first list of Rooms that fails.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { runController, type ControllerConfig } from '../../src/controller/index.js';
import { LeaderElector, type LeaseTiming } from '../../src/controller/leader.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { Ops } from '../../src/core/ops.js';
import { Shutdown } from '../../src/core/shutdown.js';
import { kubeConfig, sharedControlPlane } from '../helpers/kube.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { tempDir, waitFor } from '../helpers/procs.js';
import { applyRoomCrd, ensureNamespace, Rooms } from '../helpers/rooms-k8s.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const NS = 'ctl-faults';
let kc: KubeConfig;
let apiTarget: { host: string; port: number };
let server: TestNats;
let rooms: Rooms;
const proxies: TcpProxy[] = [];

/** A kubeconfig file like the shared one, with the API server reached through `port`. */
async function kubeconfigVia(port: number): Promise<string> {
  const { kubeconfig } = await sharedControlPlane();
  const doc = JSON.parse(readFileSync(kubeconfig, 'utf8')) as {
    clusters: { cluster: { server: string } }[];
  };
  for (const c of doc.clusters) c.cluster.server = `https://127.0.0.1:${port}`;
  const file = path.join(tempDir('kubeconfig'), 'kubeconfig');
  writeFileSync(file, JSON.stringify(doc), { mode: 0o600 });
  return file;
}

async function proxy(mode: 'forward' | 'stall' | 'reset' = 'forward'): Promise<TcpProxy> {
  const p = await startTcpProxy(apiTarget, mode);
  proxies.push(p);
  return p;
}

/** A logger that keeps every line (debug and up) for assertions. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'debug' },
    { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  return { log, lines };
}

beforeAll(async () => {
  kc = await kubeConfig();
  const url = new URL((await sharedControlPlane()).server);
  apiTarget = { host: url.hostname, port: Number(url.port) };
  await applyRoomCrd(kc);
  await ensureNamespace(kc, NS);
  rooms = new Rooms(kc, NS);
  server = await startNats();
});
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await server?.destroy();
});

test('(a) a leader whose Lease calls hang steps down at the renew deadline, before a standby takes over, and leads again once the API answers', async () => {
  const timing: LeaseTiming = {
    leaseDurationMs: 3_000,
    renewDeadlineMs: 2_000,
    retryPeriodMs: 250,
  };
  const lease = 'hung-calls';
  const p = await proxy();
  const kcA = new KubeConfig();
  kcA.loadFromFile(await kubeconfigVia(p.port));
  const a = new LeaderElector(kcA, NS, lease, 'a', timing, silentLogger());
  const b = new LeaderElector(kc, NS, lease, 'b', timing, silentLogger());
  const at = { aStarted: [] as number[], aStopped: [] as number[], bStarted: [] as number[] };
  try {
    a.start({
      onStartedLeading: () => at.aStarted.push(Date.now()),
      onStoppedLeading: () => at.aStopped.push(Date.now()),
    });
    await waitFor('a leads', () => a.isLeader, { timeoutMs: 10_000 });
    b.start({
      onStartedLeading: () => at.bStarted.push(Date.now()),
      onStoppedLeading: () => undefined,
    });
    // Let b watch a renew for a while: it must not take over a live leader.
    const acceptedBefore = p.accepted;
    await waitFor('a renews through the proxy', () => p.accepted >= acceptedBefore + 8);
    expect(b.isLeader).toBe(false);

    p.setMode('stall');
    const stalledAt = Date.now();
    await waitFor('a steps down', () => at.aStopped.length > 0, {
      timeoutMs: timing.leaseDurationMs + 5_000,
    });
    const stepDownMs = at.aStopped[0]! - stalledAt;
    // The last renew started at most a retry period before the stall.
    expect(stepDownMs).toBeLessThanOrEqual(timing.renewDeadlineMs + 500);
    expect(a.isLeader).toBe(false);
    // The hung request was abandoned (its socket closed by the client), not left to linger.
    await waitFor('a closed its stalled connection', () => p.stalledClosedByClient >= 1, {
      timeoutMs: 2_000,
    });

    await waitFor('b takes over', () => at.bStarted.length > 0, {
      timeoutMs: timing.leaseDurationMs + 5_000,
    });
    const takeoverMs = at.bStarted[0]! - stalledAt;
    // Never two leaders: a stepped down before b started.
    expect(at.aStopped[0]!).toBeLessThan(at.bStarted[0]!);
    process.stdout.write(
      `controller-faults (a): step-down ${stepDownMs} ms, takeover ${takeoverMs} ms after the stall\n`,
    );

    p.setMode('forward');
    await b.stop(); // releases the Lease
    await waitFor('a leads again', () => a.isLeader, { timeoutMs: 10_000 });
    expect(at.aStarted.length).toBe(2);
  } finally {
    p.setMode('forward');
    await Promise.all([a.stop(), b.stop()]);
  }
}, 60_000);

test('(b) a Room source whose first list fails is not ready, retries with backoff, and syncs and reconciles once the API answers', async () => {
  await rooms.create('listed-late', {});
  const p = await proxy('reset');
  const { log, lines } = capturingLogger();
  const ops = new Ops(log);
  const shutdown = new Shutdown(log);
  const opsPort = await ops.listen(0, '127.0.0.1');
  shutdown.add('ops', () => ops.close());
  const config: ControllerConfig = {
    servers: [server.url],
    servicePassword: server.keys.server.servicePassword,
    kvReplicas: 1,
    kubeconfig: await kubeconfigVia(p.port),
    namespace: NS,
    concurrency: 2,
    resyncMs: 1_000,
  };
  // As `runRole` does: ready only once the role has started and its checks pass.
  const running = runController(config, log, ops, shutdown).then(() => ops.markStarted());
  const readyz = async (): Promise<number> =>
    (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status;
  try {
    const seen: number[] = [];
    await waitFor(
      'four failed lists',
      async () => {
        seen.push(await readyz());
        return p.resets >= 4;
      },
      { timeoutMs: 20_000, intervalMs: 20 },
    );
    seen.push(await readyz());
    expect(seen.filter((s) => s === 200)).toEqual([]);
    const retries = lines
      .filter((l) => l.msg === 'cannot list Rooms; retrying')
      .map((l) => l.retryInMs);
    expect(retries.slice(0, 3)).toEqual([500, 1_000, 2_000]);

    p.setMode('forward');
    await waitFor('ready', async () => (await readyz()) === 200, { timeoutMs: 40_000 });
    const room = await rooms.waitReady('listed-late');
    expect(room.status?.roomId).toBe('listed-late');
    await rooms.delete('listed-late');
    await rooms.waitGone('listed-late');
  } finally {
    await shutdown.run('test');
    await running.catch(() => undefined);
  }
}, 90_000);
