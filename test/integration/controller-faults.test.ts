/**
 * The controller under faults, against a real kube-apiserver (behind a TCP proxy the test breaks)
 * and a real nats-server: (a) Lease calls that hang, (b) a first list of Rooms that fails, (c) the
 * leader of two replicas killed while Rooms are being created.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
} from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { runController, type ControllerConfig } from '../../src/controller/index.js';
import { LeaderElector, type LeaseTiming } from '../../src/controller/leader.js';
import { openBucket } from '../../src/infra/kv.js';
import { silentLogger, type Logger } from '../../src/runtime/logger.js';
import { Ops } from '../../src/runtime/ops.js';
import {
  ROOM_API_GROUP,
  ROOM_API_VERSION,
  ROOM_PLURAL,
  type RoomResource,
} from '../../src/domain/room-spec.js';
import { Shutdown } from '../../src/runtime/shutdown.js';
import { Bucket } from '../../src/protocol/subjects.js';
import { toriiSpawn } from '../helpers/cli.js';
import { kubeConfig, sharedControlPlane } from '../helpers/kube.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { freePort, tempDir, waitFor } from '../helpers/procs.js';
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

interface Replica {
  name: string;
  proc: ChildProcess;
  port: number;
  exited: Promise<void>;
}

async function startReplica(name: string, lease: string): Promise<Replica> {
  const port = await freePort();
  const proc = toriiSpawn(
    [
      'controller',
      '--namespace',
      NS,
      '--leader-election-namespace',
      NS,
      '--leader-election-id',
      lease,
      '--lease-duration',
      '2s',
      '--renew-deadline',
      '1500ms',
      '--retry-period',
      '250ms',
      '--resync',
      '5s',
      '--log-level',
      'warn',
    ],
    {
      env: {
        TORII_KUBECONFIG: (await sharedControlPlane()).kubeconfig,
        TORII_NATS_URL: server.url,
        TORII_KEYS_DIR: server.keys.dir,
        TORII_HTTP_PORT: String(port),
        POD_NAME: name,
      },
    },
  );
  proc.stderr?.resume();
  proc.stdout?.resume();
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return { name, proc, port, exited };
}

async function metric(r: Replica, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${r.port}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function listRooms(): Promise<RoomResource[]> {
  const list = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
    group: ROOM_API_GROUP,
    version: ROOM_API_VERSION,
    namespace: NS,
    plural: ROOM_PLURAL,
  })) as { items: RoomResource[] };
  return list.items;
}

const isReady = (r: RoomResource): boolean =>
  r.status?.observedGeneration === r.metadata.generation &&
  r.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

const ROOM_COUNT = 200;
/** Rooms created when the leader is killed. */
const KILL_AFTER = 50;
const CREATORS = 8;

test(`(c) the controller leader killed (SIGKILL) during ${ROOM_COUNT} Room creations: all Rooms become Ready, no duplicate writes`, async () => {
  const replicas = [
    await startReplica('faults-a', 'faults-kill'),
    await startReplica('faults-b', 'faults-kill'),
  ];
  const svc = await server.connectService();
  try {
    await waitFor(
      'both replicas ready',
      async () => {
        for (const r of replicas)
          if (
            (await fetch(`http://127.0.0.1:${r.port}/readyz`).catch(() => undefined))?.status !==
            200
          )
            return false;
        return true;
      },
      { timeoutMs: 30_000 },
    );
    const leases = kc.makeApiClient(CoordinationV1Api);
    const holder = await waitFor(
      'lease held',
      async () =>
        (await leases.readNamespacedLease({ name: 'faults-kill', namespace: NS })).spec
          ?.holderIdentity || undefined,
      { timeoutMs: 10_000 },
    );
    const leader = replicas.find((r) => r.name === holder) as Replica;
    const standby = replicas.find((r) => r !== leader) as Replica;
    const jsm = await jetstreamManager(svc);
    const kvStream = `KV_${Bucket.Rooms}`;
    const kvWritesBefore = (await jsm.streams.info(kvStream)).state.last_seq;

    const names = Array.from(
      { length: ROOM_COUNT },
      (_, i) => `load-${String(i).padStart(3, '0')}`,
    );
    const t0 = Date.now();
    let killedAt = 0;
    let reconciledByLeader = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: CREATORS }, async () => {
        while (next < names.length) {
          const name = names[next++] as string;
          await rooms.create(name, {});
          if (next >= KILL_AFTER && killedAt === 0) {
            killedAt = -1;
            // In the middle of the work, not before it began: on a loaded machine the leader
            // may not have reconciled a Room yet when the 50th is created.
            reconciledByLeader = await waitFor(
              'the leader reconciling',
              async () => (await metric(leader, 'torii_controller_reconcile_total')) || undefined,
              { timeoutMs: 30_000 },
            );
            killedAt = Date.now();
            leader.proc.kill('SIGKILL');
          }
        }
      }),
    );
    const createdMs = Date.now() - t0;
    await leader.exited;
    await waitFor(
      'standby leads',
      async () => (await metric(standby, 'torii_controller_leader')) === 1,
      {
        timeoutMs: 15_000,
      },
    );
    const takeoverMs = Date.now() - killedAt;
    // The leader was killed in the middle of the work, not before it began.
    expect(reconciledByLeader).toBeGreaterThan(0);
    const stored = await waitFor(
      `all ${ROOM_COUNT} Rooms Ready`,
      async () => {
        const items = (await listRooms()).filter((r) => r.metadata.name.startsWith('load-'));
        return items.length === ROOM_COUNT && items.every(isReady) ? items : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    const readyMs = Date.now() - t0;
    process.stdout.write(
      `controller-faults (c): ${ROOM_COUNT} Rooms created in ${createdMs} ms, leader killed after ${KILL_AFTER} (${reconciledByLeader} reconciles done), standby leads ${takeoverMs} ms after the kill, all Ready ${readyMs} ms after the first create\n`,
    );

    // What the servers stored: one stream and one config per Room, each written once.
    for (const r of stored) {
      const types = r.status?.conditions?.map((c) => `${c.type}=${c.status}`).sort();
      expect(types).toEqual(['ConfigPublished=True', 'Ready=True', 'StreamReady=True']);
      expect(r.status?.roomId).toBe(r.metadata.name);
    }
    const created = new Map<string, string>();
    for (const name of names) created.set(name, (await jsm.streams.info(name)).created);
    const kv = await openBucket(svc, Bucket.Rooms);
    for (const name of names) {
      const e = await kv.get(name);
      expect(e?.operation).toBe('PUT');
      expect((e?.json() as { source?: string }).source).toBe(`${NS}/${name}`);
    }
    const kvWrites = (await jsm.streams.info(kvStream)).state.last_seq - kvWritesBefore;
    expect(kvWrites).toBe(ROOM_COUNT);
    const events = await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: NS });
    const streamCreated = new Map<string, number>();
    for (const e of events.items)
      if (e.reason === 'StreamCreated' && e.involvedObject.name?.startsWith('load-'))
        streamCreated.set(
          e.involvedObject.name,
          (streamCreated.get(e.involvedObject.name) ?? 0) + 1,
        );
    expect([...streamCreated.values()].filter((n) => n > 1)).toEqual([]);
    expect(events.items.filter((e) => e.reason === 'StreamUpdated')).toEqual([]);

    // A full resync by the new leader rewrites nothing: no stream created again, no config put.
    const reconciled = await metric(standby, 'torii_controller_reconcile_total');
    await waitFor(
      'a full resync',
      async () =>
        (await metric(standby, 'torii_controller_reconcile_total')) >= reconciled + ROOM_COUNT,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    for (const name of names)
      expect((await jsm.streams.info(name)).created).toBe(created.get(name));
    expect((await jsm.streams.info(kvStream)).state.last_seq - kvWritesBefore).toBe(ROOM_COUNT);

    await kc.makeApiClient(CustomObjectsApi).deleteCollectionNamespacedCustomObject({
      group: ROOM_API_GROUP,
      version: ROOM_API_VERSION,
      namespace: NS,
      plural: ROOM_PLURAL,
    });
    await waitFor('Rooms deleted', async () => (await listRooms()).length === 0, {
      timeoutMs: 60_000,
      intervalMs: 250,
    });
  } finally {
    await svc.close();
    for (const r of replicas)
      if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGTERM');
    await Promise.all(replicas.map((r) => r.exited));
  }
}, 180_000);
