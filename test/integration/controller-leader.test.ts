/**
 * Two `torii controller` processes with leader election over a real Lease: only the leader
 * reconciles; when it dies, the standby takes over and reconciles what came after.
 */
import type { ChildProcess } from 'node:child_process';
import { CoordinationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { toriiSpawn } from '../helpers/cli.js';
import { kubeConfig, sharedControlPlane } from '../helpers/kube.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { freePort, waitFor } from '../helpers/procs.js';
import { applyRoomCrd, ensureNamespace, Rooms } from '../helpers/rooms-k8s.js';

const NS = 'ctl-leader';
let kc: KubeConfig;
let server: TestNats;
let rooms: Rooms;

interface Instance {
  name: string;
  proc: ChildProcess;
  port: number;
  logs: () => string;
}

async function startInstance(name: string): Promise<Instance> {
  const port = await freePort();
  const proc = toriiSpawn(
    [
      'controller',
      '--namespace',
      NS,
      '--leader-election-namespace',
      NS,
      '--lease-duration',
      '2s',
      '--renew-deadline',
      '1500ms',
      '--retry-period',
      '250ms',
      '--resync',
      '2s',
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
  let logs = '';
  proc.stderr?.on('data', (b: Buffer) => (logs += b.toString()));
  return { name, proc, port, logs: () => logs };
}

async function metric(i: Instance, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${i.port}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

const reconciles = (i: Instance): Promise<number> => metric(i, 'torii_controller_reconcile_total');

beforeAll(async () => {
  kc = await kubeConfig();
  await applyRoomCrd(kc);
  await ensureNamespace(kc, NS);
  rooms = new Rooms(kc, NS);
  server = await startNats();
});
afterAll(async () => {
  await server?.destroy();
});

test('only the leader reconciles; the standby takes over when the leader is killed', async () => {
  const a = await startInstance('ctl-a');
  const b = await startInstance('ctl-b');
  const both = [a, b];
  await waitFor(
    'both ready',
    async () => {
      for (const i of both)
        if (
          (await fetch(`http://127.0.0.1:${i.port}/readyz`).catch(() => undefined))?.status !== 200
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
      (await leases.readNamespacedLease({ name: 'torii-controller', namespace: NS })).spec
        ?.holderIdentity || undefined,
    { timeoutMs: 10_000 },
  );
  const leader = holder === 'ctl-a' ? a : b;
  const standby = leader === a ? b : a;
  expect(await metric(leader, 'torii_controller_leader')).toBe(1);
  expect(await metric(standby, 'torii_controller_leader')).toBe(0);

  await rooms.create('before-failover', {});
  await rooms.waitReady('before-failover');
  expect(await reconciles(leader)).toBeGreaterThan(0);
  expect(await reconciles(standby)).toBe(0);

  leader.proc.kill('SIGKILL');
  await waitFor(
    'standby leads',
    async () => (await metric(standby, 'torii_controller_leader')) === 1,
    { timeoutMs: 15_000 },
  );
  await rooms.create('after-failover', {});
  const r = await rooms.waitReady('after-failover');
  expect(r.status?.roomId).toBe('after-failover');
  const lease = await leases.readNamespacedLease({ name: 'torii-controller', namespace: NS });
  expect(lease.spec?.holderIdentity).toBe(standby.name);
  expect(lease.spec?.leaseTransitions).toBeGreaterThanOrEqual(1);

  // A graceful stop releases the Lease at once.
  standby.proc.kill('SIGTERM');
  await waitFor(
    'released',
    async () =>
      (await leases.readNamespacedLease({ name: 'torii-controller', namespace: NS })).spec
        ?.holderIdentity === '',
    { timeoutMs: 10_000 },
  );
  expect(standby.logs()).toContain('released the leader lease');
}, 120_000);
