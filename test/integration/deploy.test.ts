/**
 * deploy/: the values for the official NATS chart and the plain manifests.
 *
 * The NATS chart is vendored (deploy/nats/chart, 2.14.2), so the test renders it with helm as an
 * install would and runs what it rendered: the ConfigMap's nats.conf on one real nats-server per
 * pod of the StatefulSet (routed to each other), each with the environment the kubelet would
 * give that pod, its Secret entries taken from a key set made by `torii keys generate` as the
 * Secret `torii-keys` holds them. The Torii roles, as processes, and a room client then work
 * against those servers; a forged token does not.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { parse as parseYaml } from 'yaml';
import { RoomClient } from '../../src/client/index.js';
import { KeyFile } from '../../src/infra/keys.js';
import {
  CLIENT_RESPONSE_THRESHOLD_MS,
  DEFAULT_ACCOUNTS,
  DEFAULT_CLIENT_MAX_PAYLOAD,
  DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
} from '../../src/infra/natsconf.js';
import {
  CLIENT_SERVICE_IMPORTS,
  liveSubject,
  REPUBLISH_EXPORT,
} from '../../src/protocol/subjects.js';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { CLI, cleanEnv, spawnRole, torii } from '../helpers/cli.js';
import { websocketUpgrade } from '../helpers/assert-nats.js';
import { kubectl, serverDryRun } from '../helpers/kube.js';
import { testKeys, type TestKeys } from '../helpers/nats.js';
import { runAsync, tempDir, waitFor } from '../helpers/procs.js';
import {
  CHART_NATS_CONF,
  NATS_CHART,
  chartNatsServer,
  NATS_VALUES,
  natsChartVersion,
  natsRelease,
  parseChartNatsConf,
  podEnv,
  renderChartNatsConf,
  renderNatsChart,
  startChartNats,
  type ChartNats,
  type K8sObject,
  type NatsRelease,
  type SecretEntry,
} from '../helpers/nats-chart.js';

const MANIFESTS = path.join(PROJECT_ROOT, 'deploy', 'manifests', 'torii.yaml');
/** The placeholder image of the plain manifests (Makefile, MANIFESTS_IMAGE). */
const MANIFESTS_IMAGE = 'registry.invalid/torii';

type Tree = Record<string, unknown>;
const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Keys of `ours` the chart's defaults do not define. Under a default of `{}` (env, merge, …) any
 * key is the user's own; everywhere else a key the chart does not know is ignored by it.
 */
function unknownKeys(ours: Tree, defaults: Tree, at = ''): string[] {
  return Object.entries(ours).flatMap(([k, v]) => {
    const where = at ? `${at}.${k}` : k;
    if (!(k in defaults)) return [where];
    const d = defaults[k];
    if (!isTree(v) || !isTree(d) || Object.keys(d).length === 0) return [];
    return unknownKeys(v, d, where);
  });
}

describe('deploy/nats/values.yaml (official NATS chart 2.14.2, deploy/nats/chart)', () => {
  const values = parseYaml(readFileSync(NATS_VALUES, 'utf8')) as Tree & {
    config: { merge: Tree; cluster: { merge: { name: string }; replicas: number } };
  };
  let keys: TestKeys;
  let objects: K8sObject[];
  let release: NatsRelease;
  let secretEntry: SecretEntry;
  let server: ChartNats;

  beforeAll(async () => {
    keys = await testKeys();
    objects = await renderNatsChart();
    release = natsRelease(objects);
    // The Secret torii-keys holds the files of `torii keys generate`, byte for byte.
    secretEntry = (secret, key) =>
      secret === 'torii-keys' ? readFileSync(path.join(keys.dir, key), 'utf8') : undefined;
    // The chart's three servers, routed: R3 buckets as in production.
    server = await startChartNats(release, secretEntry, tempDir('deploy-nats'), { cluster: true });
  });

  afterAll(async () => {
    await server?.stop();
  });

  test('sets only keys the chart defines (it has no schema to refuse a misspelt one)', () => {
    const defaults = parseYaml(readFileSync(path.join(NATS_CHART, 'values.yaml'), 'utf8')) as Tree;
    expect(unknownKeys(values, defaults)).toEqual([]);
    // the check itself: a misspelt key is found
    expect(unknownKeys({ config: { jetstream: { fileStorage: {} } } }, defaults)).toEqual([
      'config.jetstream.fileStorage',
    ]);
  });

  test('test/fixtures/nats-chart.conf is what the chart renders from these values today (make nats-conf)', async () => {
    const fixture = readFileSync(CHART_NATS_CONF, 'utf8');
    expect(fixture).toBe(await renderChartNatsConf());
    expect(fixture).toContain(`NATS Helm chart ${natsChartVersion().version}`);
    expect(natsChartVersion().version).toBe('2.14.2');
  });

  test('renders a 3-node JetStream cluster with the accounts and the auth callout of the values', () => {
    const sts = release.statefulSet.spec;
    expect(sts.replicas).toBe(3);
    const rendered = parseChartNatsConf(release.conf);
    const merge = parseChartNatsConf(
      JSON.stringify(values.config.merge, null, 2).replace(/"<< (.+?) >>"/g, '$1'),
    );
    for (const key of Object.keys(merge)) expect([key, rendered[key]]).toEqual([key, merge[key]]);
    expect(rendered['cluster']).toEqual({
      name: values.config.cluster.merge.name,
      no_advertise: true,
      port: 6222,
      routes: [0, 1, 2].map((i) => `nats://nats-${i}.${sts.serviceName}:6222`),
    });
    expect(rendered['jetstream']).toMatchObject({ store_dir: '/data', max_memory_store: '1Gi' });
    expect(rendered['websocket']).toEqual({
      no_tls: true,
      port: 8080,
      allowed_origins: ['https://classroom.invalid'],
    });
    expect(rendered['authorization']).toMatchObject({
      auth_callout: {
        account: 'AUTH',
        issuer: '$TORII_CALLOUT_ISSUER',
        xkey: '$TORII_CALLOUT_XKEY',
      },
    });
    // Every $VAR the config references (unquoted; "$JS.…" subjects are strings) is set in the pod.
    const vars = [...release.conf.matchAll(/(?<!")\$([A-Z_]+)/g)].map((m) => m[1] as string);
    expect(vars.length).toBeGreaterThan(5);
    const env = podEnv(release, 'nats-0', secretEntry);
    for (const v of vars) expect([v, v in env]).toEqual([v, true]);
    expect(env['SERVER_NAME']).toBe('nats-0');
  });

  test("nats-server -t accepts the rendered config with each pod's environment, in the pods' version", async () => {
    const dir = tempDir('deploy-nats-t');
    const file = path.join(dir, 'nats.conf');
    writeFileSync(file, release.conf);
    const binary = chartNatsServer(release);
    const version = (await runAsync(binary, ['--version'])).stdout.trim();
    expect(release.container.image).toBe(`nats:${version.replace('nats-server: v', '')}-alpine`);
    for (const pod of ['nats-0', 'nats-1', 'nats-2']) {
      const r = await runAsync(binary, ['-t', '-c', file], {
        env: podEnv(release, pod, secretEntry),
      });
      expect([pod, r.status, r.stderr]).toEqual([
        pod,
        0,
        expect.stringMatching(/^nats-server: configuration file .* is valid/),
      ]);
    }
    // and refuses it when the pod lacks an entry of the Secret
    const missing: SecretEntry = (s, k) =>
      k === KeyFile.XkeyPublic ? undefined : secretEntry(s, k);
    expect(() => podEnv(release, 'nats-1', missing)).toThrow(
      /CreateContainerConfigError: env TORII_CALLOUT_XKEY: Secret torii-keys has no key xkey\.pub/,
    );
  });

  test('every object the chart renders is accepted by the API server (server-side dry run)', async () => {
    await kubectl(['create', 'namespace', 'torii']); // may exist already
    const file = path.join(tempDir('deploy-nats'), 'nats.yaml');
    const r0 = await runAsync(findTool('helm'), [
      'template',
      'nats',
      NATS_CHART,
      '-n',
      'torii',
      '-f',
      NATS_VALUES,
    ]);
    expect(r0.status).toBe(0);
    writeFileSync(file, r0.stdout);
    const r = await serverDryRun(file);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const applied = r.stdout.trim().split('\n');
    expect(applied).toHaveLength(objects.length);
    expect(applied).toContain('statefulset.apps/nats serverside-applied (server dry run)');
    expect(applied).toContain('configmap/nats-config serverside-applied (server dry run)');
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
      {
        service: '>',
        response_type: 'stream',
        response_threshold: `${CLIENT_RESPONSE_THRESHOLD_MS}ms`,
        accounts: [DEFAULT_ACCOUNTS.clients],
      },
      { stream: REPUBLISH_EXPORT, accounts: [DEFAULT_ACCOUNTS.clients] },
    ]);
  });

  test('limits room connections as `torii nats-config` does by default, in CLIENTS only', () => {
    const accounts = values.config.merge['accounts'] as Record<string, { limits?: unknown }>;
    expect(accounts[DEFAULT_ACCOUNTS.clients]?.limits).toEqual({
      max_subscriptions: DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
      max_payload: DEFAULT_CLIENT_MAX_PAYLOAD,
    });
    expect(Object.keys(accounts).filter((a) => accounts[a]?.limits !== undefined)).toEqual([
      DEFAULT_ACCOUNTS.clients,
    ]);
  });

  test('holds no secret: passwords and keys are env references only', () => {
    const text = readFileSync(NATS_VALUES, 'utf8');
    for (const file of [KeyFile.AuthPassword, KeyFile.ServicePassword, KeyFile.SystemPassword]) {
      const value = readFileSync(path.join(keys.dir, file), 'utf8').trim();
      expect(text).not.toContain(value);
    }
    expect(release.conf).not.toMatch(/password": "/);
    // the NATS pods never get a seed
    const refs = (release.container.env ?? []).flatMap((e) =>
      e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.key] : [],
    );
    expect(refs.sort()).toEqual(
      [
        KeyFile.AuthPassword,
        KeyFile.ServicePassword,
        KeyFile.SystemPassword,
        KeyFile.IssuerPublic,
        KeyFile.XkeyPublic,
      ].sort(),
    );
  });

  test("the Torii roles, a room client and `torii client` work against the chart's three servers", async () => {
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
      // The CLIENTS account's limits hold on the chart's servers as on what `torii nats-config`
      // renders: the server announces the payload bound, refuses the subscription past 100, and
      // refuses a websocket upgrade from a page the values do not list.
      expect(client.nc.info?.max_payload).toBe(DEFAULT_CLIENT_MAX_PAYLOAD);
      const errors: string[] = [];
      void (async () => {
        for await (const st of client.nc.status())
          if (st.type === 'error') errors.push(st.error.message);
      })();
      for (let i = 0; i < DEFAULT_CLIENT_MAX_SUBSCRIPTIONS; i++)
        client.nc.subscribe(liveSubject('demo', '*'));
      await client.nc.flush();
      await waitFor('the subscription past the bound refused', () =>
        errors.some((e) => /maximum subscriptions exceeded/i.test(e)),
      );
      const ws = `ws://127.0.0.1:${Object.values(server.ports)[0]?.ws}`;
      expect(await websocketUpgrade(ws, 'https://evil.example')).toEqual({ status: 403 });
      expect(await websocketUpgrade(ws, undefined)).toEqual({ status: 101, info: 'INFO' });
      await client.close();
      // and `torii client`, as the install guide runs it: joins, sees the room, leaves on EOF
      const cli = await runAsync(
        process.execPath,
        [CLI, 'client', '--nats-url', server.url, '--token', token],
        {
          env: cleanEnv(),
          timeoutMs: 60_000,
        },
      );
      expect([cli.status, cli.stdout]).toEqual([
        0,
        expect.stringMatching(/^joined .* \(demo\) as hana \(student\)$[\s\S]*^left the room$/m),
      ]);
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
        pass: readFileSync(path.join(keys.dir, KeyFile.SystemPassword), 'utf8').trim(),
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
  test('is what `make manifests` renders from the chart today, with an image name to replace', async () => {
    const r = await runAsync(findTool('helm'), [
      'template',
      'torii',
      path.join(PROJECT_ROOT, 'charts', 'torii'),
      '--namespace',
      'torii',
      '--include-crds',
      '--set',
      `image.repository=${MANIFESTS_IMAGE}`,
    ]);
    expect(r.status).toBe(0);
    const committed = readFileSync(MANIFESTS, 'utf8');
    const header = committed.slice(0, committed.indexOf('---\n'));
    expect(header).toContain(`The image is ${MANIFESTS_IMAGE} (a name that never resolves)`);
    expect(committed.slice(header.length)).toBe(r.stdout);
    // `.invalid` never resolves (RFC 2606): an unedited apply fails on the nodes at once, naming it.
    const images = [...committed.matchAll(/^\s+image: (\S+)$/gm)].map((m) => m[1]);
    expect(new Set(images)).toEqual(new Set([`${MANIFESTS_IMAGE}:0.1.0`]));
    expect(readFileSync(path.join(PROJECT_ROOT, 'Makefile'), 'utf8')).toContain(
      `MANIFESTS_IMAGE := ${MANIFESTS_IMAGE}`,
    );
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
