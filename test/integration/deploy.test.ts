/**
 * deploy/: the values for the official NATS chart and the plain manifests.
 *
 * The NATS chart itself cannot be fetched here (no internet; the Go module proxy does not serve
 * it), so the test does what the chart does with our values: it writes `config.merge` into the
 * server config as JSON, with the chart's `<< $VAR >>` turned into unquoted `$VAR` references,
 * sets the container's env from a key set made by `torii keys generate` (as the Secret
 * `torii-keys` holds it), and runs a real nats-server on it. The Torii roles, as processes, and a
 * room client then work against that server; a forged token does not.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { RoomClient } from '../../src/client/index.js';
import { KeyFile } from '../../src/core/keys.js';
import { DEFAULT_ACCOUNTS } from '../../src/core/natsconf.js';
import { CLIENT_SERVICE_IMPORTS, REPUBLISH_EXPORT } from '../../src/core/subjects.js';
import { PROJECT_ROOT, findTool } from '../../src/core/tools.js';
import { spawnRole, torii } from '../helpers/cli.js';
import { kubectl, serverDryRun } from '../helpers/kube.js';
import { testKeys, type TestKeys } from '../helpers/nats.js';
import { runAsync, tempDir, waitFor } from '../helpers/procs.js';
import {
  chartEnv,
  chartMerge,
  chartNatsConf,
  parseChartNatsConf,
  readNatsChartValues,
  startChartNats,
  type ChartNats,
} from '../helpers/nats-chart.js';

const VALUES = path.join(PROJECT_ROOT, 'deploy', 'nats', 'values.yaml');
const MANIFESTS = path.join(PROJECT_ROOT, 'deploy', 'manifests', 'torii.yaml');

describe('deploy/nats/values.yaml (official NATS chart)', () => {
  const values = readNatsChartValues(VALUES);
  let keys: TestKeys;
  let server: ChartNats;
  let env: Record<string, string>;

  beforeAll(async () => {
    keys = await testKeys();
    // The Secret torii-keys holds the files of `torii keys generate`.
    env = chartEnv(values, (secret, key) =>
      secret === 'torii-keys' ? readFileSync(path.join(keys.dir, key), 'utf8') : undefined,
    );
    // The chart's three servers, routed: R3 buckets as in production.
    server = await startChartNats(env, tempDir('deploy-nats'), { cluster: true });
  });

  afterAll(async () => {
    await server?.stop();
  });

  test("the chart's rendering (fixture) still matches these values", () => {
    const rendered = parseChartNatsConf();
    const merge = parseChartNatsConf(chartMerge(values.config.merge));
    for (const key of Object.keys(merge)) expect([key, rendered[key]]).toEqual([key, merge[key]]);
    expect(rendered['cluster']).toMatchObject({ name: values.config.cluster.merge?.name });
    expect((rendered['cluster'] as { routes: string[] }).routes).toHaveLength(
      values.config.cluster.replicas,
    );
    expect(rendered['websocket']).toMatchObject({ no_tls: !values.config.websocket.tls.enabled });
    expect(rendered['jetstream']).toBeDefined();
    // every $VAR reference (unquoted; "$JS.…" subjects are strings) of the config is set by the container's env (or the chart's SERVER_NAME)
    const vars = [...chartNatsConf().matchAll(/(?<!")\$([A-Z_]+)/g)].map((m) => m[1] as string);
    for (const v of vars)
      expect([v, v === 'SERVER_NAME' || v in values.container.env]).toEqual([v, true]);
  });

  test('isolates room clients as `torii nats-config` does: the same account layout', () => {
    type Ref = { account: string; subject: string };
    const accounts = values.config.merge['accounts'] as Record<
      string,
      { imports?: { service?: Ref; stream?: Ref }[]; exports?: unknown[] }
    >;
    const imports = accounts[DEFAULT_ACCOUNTS.clients]?.imports ?? [];
    const app = DEFAULT_ACCOUNTS.app;
    expect(imports.flatMap((i) => (i.service ? [i.service] : []))).toEqual(
      CLIENT_SERVICE_IMPORTS.map((subject) => ({ account: app, subject })),
    );
    expect(imports.flatMap((i) => (i.stream ? [i.stream] : []))).toEqual([
      { account: app, subject: REPUBLISH_EXPORT },
    ]);
    expect(accounts[app]?.exports).toEqual([
      { service: '>', response_type: 'stream', accounts: [DEFAULT_ACCOUNTS.clients] },
      { stream: REPUBLISH_EXPORT, accounts: [DEFAULT_ACCOUNTS.clients] },
    ]);
  });

  test('holds no secret: passwords and keys are env references only', () => {
    const text = readFileSync(VALUES, 'utf8');
    for (const file of [KeyFile.AuthPassword, KeyFile.ServicePassword, KeyFile.SystemPassword]) {
      const value = readFileSync(path.join(keys.dir, file), 'utf8').trim();
      expect(text).not.toContain(value);
    }
    expect(chartMerge(values.config.merge)).not.toMatch(/password": "/);
    // the NATS pods never get a seed
    for (const v of Object.values(values.container.env))
      expect(v.valueFrom.secretKeyRef.key).not.toMatch(/\.nk$|\.jwk$|token-secret/);
  });

  test('the Torii roles and a room client work against a server with this configuration', async () => {
    const servers = ['--nats-url', server.url, '--keys-dir', keys.dir, '--kv-replicas', '3'];
    const roles = [
      await spawnRole([
        'controller',
        ...servers,
        '--rooms-dir',
        path.join(PROJECT_ROOT, 'examples', 'rooms'),
      ]),
      await spawnRole(['auth-callout', ...servers]),
      await spawnRole(['worker', ...servers]),
    ];
    try {
      const token = torii([
        'token',
        '--room',
        'demo',
        '--user',
        'hana',
        '--role',
        'student',
        '--keys-dir',
        keys.dir,
      ]).stdout.trim();
      const client = await waitFor('demo room published', async () =>
        RoomClient.connect({
          connect,
          servers: server.url,
          token,
          roomId: 'demo',
          userId: 'hana',
          autoRenew: false,
        }).catch(() => undefined),
      );
      const initial = await client.request<{ me: { userId: string; role: string } }>(
        'REQ_INITIAL_DATA',
      );
      expect(initial.me).toMatchObject({ userId: 'hana', role: 'student' });
      await client.close();
      // The callout still decides: a forged token is refused.
      await expect(
        connect({
          servers: server.url,
          token: `${token.slice(0, -4)}AAAA`,
          maxReconnectAttempts: 0,
        }),
      ).rejects.toThrow(/Authorization Violation/);
      // And the system user sees the APP account's connection events (presence).
      const sys = await connect({
        servers: server.url,
        user: 'torii-system',
        pass: env['TORII_SYSTEM_PASSWORD'],
      });
      await sys.close();
    } finally {
      for (const r of roles) r.proc.kill('SIGTERM');
      await waitFor('roles stopped', () =>
        roles.every((r) => r.proc.exitCode !== null || r.proc.signalCode !== null),
      );
    }
  });
});

describe('deploy/manifests/torii.yaml (plain manifests)', () => {
  test('is what `make manifests` renders from the chart today', async () => {
    const r = await runAsync(findTool('helm'), [
      'template',
      'torii',
      path.join(PROJECT_ROOT, 'charts', 'torii'),
      '--namespace',
      'torii',
      '--include-crds',
    ]);
    expect(r.status).toBe(0);
    const committed = readFileSync(MANIFESTS, 'utf8');
    const body = committed
      .split('\n')
      .filter((l, i) => !(i < 2 && l.startsWith('#')))
      .join('\n');
    expect(body).toBe(r.stdout);
  });

  test('is accepted by the API server (server-side dry run, namespace torii)', async () => {
    await kubectl(['create', 'namespace', 'torii']); // may exist already
    const r = await serverDryRun(MANIFESTS);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(
      'customresourcedefinition.apiextensions.k8s.io/rooms.torii.io serverside-applied (server dry run)',
    );
    expect(r.stdout).toContain(
      'deployment.apps/torii-controller serverside-applied (server dry run)',
    );
  });
});
