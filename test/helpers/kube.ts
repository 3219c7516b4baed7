/**
 * An envtest-style Kubernetes control plane: a real etcd and a real kube-apiserver on random
 * ports, an admin identity (static token in `system:masters`) and a kubeconfig. Started once per
 * test run, by the first test that needs it; tests reach it through {@link kubeConfig}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import {
  ApiextensionsV1Api,
  KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { findTool } from '../../src/devtools/tools.js';
import { freePort, removeDir, runAsync, tempDir, track, waitFor } from './procs.js';

/** Details of a running control plane, shared as JSON. */
export interface ControlPlaneState {
  kubeconfig: string;
  server: string;
  adminToken: string;
  /** Static token of a user with no groups, for RBAC tests (permissions come from bindings). */
  unprivilegedToken: string;
  unprivilegedUser: string;
  /**
   * The API server's audit log (JSON lines, level Metadata) of requests made by service accounts:
   * what a ServiceAccount-backed process (the controller under the chart's RBAC) really called.
   */
  auditLog: string;
  dir: string;
  pids: number[];
}

/** A running etcd + kube-apiserver. */
export interface ControlPlane {
  state: ControlPlaneState;
  stop: () => Promise<void>;
}

const START_TIMEOUT_MS = 90_000;

function logTail(): { push: (b: Buffer) => void; text: () => string } {
  const lines: string[] = [];
  return {
    push: (b) => {
      lines.push(...b.toString('utf8').split('\n').filter(Boolean));
      lines.splice(0, Math.max(0, lines.length - 40));
    },
    text: () => lines.join('\n'),
  };
}

function startChild(bin: string, args: string[]): { child: ChildProcess; log: () => string } {
  const tail = logTail();
  const child = track(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }), 'run');
  // Shared by every test file of the run: must not hold this process's event loop open.
  child.unref();
  (child.stdout as { unref?: () => void } | null)?.unref?.();
  (child.stderr as { unref?: () => void } | null)?.unref?.();
  child.stdout?.on('data', tail.push);
  child.stderr?.on('data', tail.push);
  return { child, log: tail.text };
}

function stopChild(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function httpsGet(url: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      { headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: false, timeout: 2_000 },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** Starts etcd and kube-apiserver and waits until the API server is ready. */
export async function startControlPlane(): Promise<ControlPlane> {
  const dir = tempDir('kube');
  const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];

  const etcd = startChild(findTool('etcd'), [
    '--name=default',
    `--data-dir=${path.join(dir, 'etcd')}`,
    `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
    `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
    `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
    `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
    '--unsafe-no-fsync=true',
    '--log-level=warn',
  ]);

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const saKey = path.join(dir, 'sa.key');
  const saPub = path.join(dir, 'sa.pub');
  writeFileSync(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(saPub, publicKey.export({ type: 'spki', format: 'pem' }));
  const adminToken = randomBytes(24).toString('hex');
  const unprivilegedToken = randomBytes(24).toString('hex');
  const unprivilegedUser = 'torii-test-user';
  const tokens = path.join(dir, 'tokens.csv');
  writeFileSync(
    tokens,
    `${adminToken},admin,admin,"system:masters"\n${unprivilegedToken},${unprivilegedUser},${unprivilegedUser}\n`,
  );
  const certDir = path.join(dir, 'certs');
  const auditPolicy = path.join(dir, 'audit-policy.yaml');
  const auditLog = path.join(dir, 'audit.log');
  writeFileSync(
    auditPolicy,
    [
      'apiVersion: audit.k8s.io/v1',
      'kind: Policy',
      'omitStages: [RequestReceived]',
      'rules:',
      '  - level: Metadata',
      '    userGroups: ["system:serviceaccounts"]',
      '  - level: None',
      '',
    ].join('\n'),
  );

  const api = startChild(findTool('kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${etcdClient}`,
    `--cert-dir=${certDir}`,
    `--secure-port=${apiPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    '--service-cluster-ip-range=10.0.0.0/24',
    `--service-account-issuer=https://127.0.0.1:${apiPort}`,
    `--service-account-key-file=${saPub}`,
    `--service-account-signing-key-file=${saKey}`,
    `--token-auth-file=${tokens}`,
    '--authorization-mode=RBAC',
    '--allow-privileged=true',
    '--disable-admission-plugins=ServiceAccount',
    '--enable-priority-and-fairness=false',
    `--audit-policy-file=${auditPolicy}`,
    `--audit-log-path=${auditLog}`,
    '--audit-log-mode=blocking',
    '--v=0',
  ]);

  const server = `https://127.0.0.1:${apiPort}`;
  const stop = async (): Promise<void> => {
    await stopChild(api.child);
    await stopChild(etcd.child);
    removeDir(dir);
  };
  try {
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        for (const [name, p] of [
          ['etcd', etcd],
          ['kube-apiserver', api],
        ] as const) {
          if (p.child.exitCode !== null)
            throw new Error(`${name} exited (${p.child.exitCode}):\n${p.log()}`);
        }
        return (await httpsGet(`${server}/readyz`, adminToken)).status === 200;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 200 },
    );
  } catch (e) {
    const logs = `\n--- etcd ---\n${etcd.log()}\n--- kube-apiserver ---\n${api.log()}`;
    await stop();
    throw new Error(`${(e as Error).message}${logs}`);
  }

  const kubeconfig = path.join(dir, 'kubeconfig');
  const ca = readFileSync(path.join(certDir, 'apiserver.crt')).toString('base64');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'envtest', cluster: { server, 'certificate-authority-data': ca } }],
      users: [{ name: 'admin', user: { token: adminToken } }],
      contexts: [
        { name: 'envtest', context: { cluster: 'envtest', user: 'admin', namespace: 'default' } },
      ],
      'current-context': 'envtest',
    }),
    { mode: 0o600 },
  );
  const pids = [etcd.child.pid, api.child.pid].filter((p): p is number => p !== undefined);
  return {
    state: {
      kubeconfig,
      server,
      adminToken,
      unprivilegedToken,
      unprivilegedUser,
      auditLog,
      dir,
      pids,
    },
    stop,
  };
}

const STATE_FILE = 'control-plane.json';
let shared: Promise<ControlPlaneState> | undefined;

/**
 * The control plane of this test run: started by the first caller, reused by every later one
 * (across test files, through a state file in the run folder), stopped by the global teardown.
 */
export function sharedControlPlane(): Promise<ControlPlaneState> {
  shared ??= (async () => {
    const runDir = process.env.TORII_TEST_RUN_DIR;
    if (!runDir)
      throw new Error(
        'TORII_TEST_RUN_DIR is not set: run integration tests through jest (global setup)',
      );
    const stateFile = path.join(runDir, STATE_FILE);
    const lock = path.join(runDir, 'control-plane.lock');
    try {
      mkdirSync(lock); // atomic: exactly one caller starts the control plane
    } catch {
      return waitFor(
        'shared control plane',
        () =>
          existsSync(stateFile)
            ? (JSON.parse(readFileSync(stateFile, 'utf8')) as ControlPlaneState)
            : undefined,
        {
          timeoutMs: START_TIMEOUT_MS,
          intervalMs: 200,
        },
      );
    }
    const { state } = await startControlPlane();
    writeFileSync(stateFile + '.tmp', JSON.stringify(state));
    renameSync(stateFile + '.tmp', stateFile);
    return state;
  })();
  return shared;
}

/** A KubeConfig for the shared test control plane, as its admin. */
export async function kubeConfig(): Promise<KubeConfig> {
  const kc = new KubeConfig();
  kc.loadFromFile((await sharedControlPlane()).kubeconfig);
  return kc;
}

/** Applies (creates or replaces) a CRD and waits until it is Established. */
export async function applyCrd(
  kc: KubeConfig,
  crd: V1CustomResourceDefinition,
  timeoutMs = 30_000,
): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const name = crd.metadata?.name;
  if (!name) throw new Error('CRD has no metadata.name');
  try {
    const existing = await api.readCustomResourceDefinition({ name });
    await api.replaceCustomResourceDefinition({
      name,
      body: {
        ...crd,
        metadata: { ...crd.metadata, resourceVersion: existing.metadata?.resourceVersion },
      },
    });
  } catch (e) {
    if ((e as { code?: number }).code !== 404) throw e;
    await api.createCustomResourceDefinition({ body: crd });
  }
  await waitFor(
    `CRD ${name} established`,
    async () => {
      const got = await api.readCustomResourceDefinition({ name });
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    },
    { timeoutMs },
  );
}

/** Runs kubectl as the admin of the shared test control plane. */
export async function kubectl(
  args: string[],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const { kubeconfig } = await sharedControlPlane();
  return runAsync(findTool('kubectl'), ['--kubeconfig', kubeconfig, ...args]);
}

/**
 * Server-side apply of a manifest file as a dry run with strict validation: the API server checks
 * every object (schemas, CRDs, admission) and stores nothing.
 */
export function serverDryRun(
  file: string,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return kubectl([
    'apply',
    '--server-side',
    '--force-conflicts',
    '--dry-run=server',
    '--validate=strict',
    '-f',
    file,
  ]);
}
