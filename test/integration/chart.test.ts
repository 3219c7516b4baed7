/**
 * The Helm chart: lint, render (default and every option), bad values refused, the rendered
 * manifests accepted by a real kube-apiserver (server-side dry run, CRD first), and RBAC proven
 * from both sides: the real controller, running under the chart's ServiceAccount with the
 * chart's environment, does its whole job, and the API server's audit log shows that it called
 * exactly what the chart's Roles grant: nothing denied, nothing granted but unused.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml';
import { KeyFile } from '../../src/infra/keys.js';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { spawnRole, torii } from '../helpers/cli.js';
import { kubectl, serverDryRun, sharedControlPlane } from '../helpers/kube.js';
import { testKeys, TestNats, type TestKeys } from '../helpers/nats.js';
import { runAsync, tempDir, waitFor } from '../helpers/procs.js';
import { applyRoomCrd, ensureNamespace, Rooms } from '../helpers/rooms-k8s.js';

const CHART = path.join(PROJECT_ROOT, 'charts', 'torii');
const FULL_VALUES = path.join(CHART, 'ci', 'full-values.yaml');
/** The one value the chart requires: where the image was pushed (no image is published). */
const IMAGE_REPOSITORY = 'registry.example.com/classroom/torii';
const IMAGE = ['--set', `image.repository=${IMAGE_REPOSITORY}`];

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}
interface Container {
  name: string;
  args: string[];
  image: string;
  env: { name: string; value?: string; valueFrom?: unknown }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: {
    name: string;
    projected?: { sources: { secret: { items: { key: string }[]; optional?: boolean } }[] };
    secret?: { secretName: string };
  }[];
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

async function helm(args: string[]): Promise<string> {
  const r = await runAsync(findTool('helm'), args);
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

/** `--set-file keys.…=file` for every key file `torii keys generate` wrote. */
function keyFlags(keys: TestKeys): string[] {
  const files: Record<string, KeyFile> = {
    issuerSeed: KeyFile.IssuerSeed,
    xkeySeed: KeyFile.XkeySeed,
    issuerPublicKey: KeyFile.IssuerPublic,
    xkeyPublicKey: KeyFile.XkeyPublic,
    authUserPassword: KeyFile.AuthPassword,
    serviceUserPassword: KeyFile.ServicePassword,
    systemUserPassword: KeyFile.SystemPassword,
    tokenSigningJwk: KeyFile.TokenSigningJwk,
    tokenJwks: KeyFile.TokenJwks,
  };
  return Object.entries(files).flatMap(([value, file]) => [
    '--set-file',
    `keys.${value}=${path.join(keys.dir, file)}`,
  ]);
}

function objects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o)
    throw new Error(
      `no ${kind} ${name} in ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`,
    );
  return o;
}

const podOf = (deployment: K8sObject): PodSpec =>
  (deployment as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;

/** Key files a role's pod can read. */
function mountedKeys(pod: PodSpec): string[] {
  const keys = pod.volumes.find((v) => v.name === 'keys');
  return (keys?.projected?.sources ?? []).flatMap((s) => s.secret.items.map((i) => i.key)).sort();
}

/** The TORII_* variables `torii <role> --help` documents. */
function documentedEnv(role: string): Set<string> {
  const help = torii([role, '--help']);
  return new Set([...help.stdout.matchAll(/env:\s+(TORII_[A-Z_]+)/g)].map((m) => m[1] as string));
}

describe('Helm chart charts/torii', () => {
  let keys: TestKeys;
  beforeAll(async () => {
    keys = await testKeys();
  });

  test('helm lint --strict passes with default values and with every option', async () => {
    expect(await helm(['lint', '--strict', CHART, ...IMAGE])).toContain('0 chart(s) failed');
    expect(await helm(['lint', '--strict', CHART, '-f', FULL_VALUES, ...keyFlags(keys)])).toContain(
      '0 chart(s) failed',
    );
  });

  test('default values: three roles, probes, non-root, and each role sees only its keys', async () => {
    const objs = objects(await helm(['template', 't', CHART, '-n', 'classes', ...IMAGE]));
    const { appVersion } = parseYaml(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')) as {
      appVersion: string;
    };
    const roles = {
      controller: 't-torii-controller',
      'auth-callout': 't-torii-auth-callout',
      worker: 't-torii-worker',
    };
    for (const [role, name] of Object.entries(roles)) {
      const pod = podOf(find(objs, 'Deployment', name));
      const [c] = pod.containers;
      expect(c?.args).toEqual([role]);
      expect(c?.image).toBe(`${IMAGE_REPOSITORY}:${appVersion}`);
      expect(c?.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(c?.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
      expect(c?.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
      });
      // Every variable the chart sets is a real flag of that role (a typo would be ignored).
      const documented = documentedEnv(role);
      for (const e of c?.env ?? [])
        if (e.name.startsWith('TORII_'))
          expect([role, e.name, documented.has(e.name)]).toEqual([role, e.name, true]);
      find(objs, 'PodDisruptionBudget', name);
      find(objs, 'Service', `${name}-metrics`);
    }
    const ctl = podOf(find(objs, 'Deployment', roles.controller));
    const callout = podOf(find(objs, 'Deployment', roles['auth-callout']));
    const worker = podOf(find(objs, 'Deployment', roles.worker));
    // Only the controller has a Kubernetes API token.
    expect(ctl.automountServiceAccountToken).toBe(true);
    for (const p of [callout, worker]) {
      expect(p.automountServiceAccountToken).toBe(false);
      expect(p.serviceAccountName).toBe('t-torii-data-plane');
    }
    const bindings = objs.filter((o) => o.kind.endsWith('Binding'));
    expect(JSON.stringify(bindings)).not.toContain('data-plane');
    // Least privilege on secrets too.
    expect(mountedKeys(ctl)).toEqual([KeyFile.ServicePassword]);
    expect(mountedKeys(callout)).toEqual(
      [
        KeyFile.AuthPassword,
        KeyFile.IssuerSeed,
        KeyFile.ServicePassword,
        KeyFile.TokenJwks,
        KeyFile.TokenSecret,
        KeyFile.XkeySeed,
      ].sort(),
    );
    expect(mountedKeys(worker)).toEqual(
      [
        KeyFile.ServicePassword,
        KeyFile.SystemPassword,
        KeyFile.TokenSecret,
        KeyFile.TokenSigningJwk,
      ].sort(),
    );
    // The user's Secret is used; the chart creates none and no ServiceMonitor by default.
    expect(objs.filter((o) => o.kind === 'Secret' || o.kind === 'ServiceMonitor')).toEqual([]);
    expect(JSON.stringify(ctl.volumes)).toContain('"name":"torii-keys"');
  });

  test('every option: chart-made Secrets, LiveKit, JWKS URL, namespaced Role, ServiceMonitor', async () => {
    const objs = objects(
      await helm(['template', 'torii', CHART, '-n', 'torii', '-f', FULL_VALUES, ...keyFlags(keys)]),
    );
    const secret = find(objs, 'Secret', 'torii-keys') as unknown as {
      stringData: Record<string, string>;
    };
    expect(secret.stringData[KeyFile.IssuerSeed]).toBe(
      readFileSync(path.join(keys.dir, KeyFile.IssuerSeed), 'utf8').trim(),
    );
    expect(Object.keys(secret.stringData).sort()).toEqual(
      [
        KeyFile.IssuerSeed,
        KeyFile.XkeySeed,
        KeyFile.IssuerPublic,
        KeyFile.XkeyPublic,
        KeyFile.AuthPassword,
        KeyFile.ServicePassword,
        KeyFile.SystemPassword,
        KeyFile.TokenSigningJwk,
        KeyFile.TokenJwks,
      ].sort(),
    );
    find(objs, 'Secret', 'torii-livekit');
    const worker = podOf(find(objs, 'Deployment', 'torii-worker'));
    const env = Object.fromEntries((worker.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      TORII_LIVEKIT_URL: 'wss://media.example.com',
      TORII_LIVEKIT_API_SECRET_FILE: '/etc/torii/livekit/api-secret',
      TORII_CONSUMER_RETENTION: '2h',
      TORII_CONCURRENCY: '100',
    });
    const callout = podOf(find(objs, 'Deployment', 'torii-auth-callout'));
    expect(callout.containers[0]?.env).toContainEqual({
      name: 'TORII_TOKEN_JWKS_URL',
      value: 'https://classroom.example.com/.well-known/jwks.json',
    });
    // With a JWKS URL the callout still reads Torii's own JWKS (renewed tokens), not the HS256 secret.
    expect(mountedKeys(callout)).toContain(KeyFile.TokenJwks);
    expect(mountedKeys(callout)).not.toContain(KeyFile.TokenSecret);
    expect(callout.containers[0]?.image).toMatch(/^registry\.example\.com\/torii@sha256:/);
    // watchNamespace: a Role in that namespace, no ClusterRole.
    expect(objs.filter((o) => o.kind.startsWith('Cluster'))).toEqual([]);
    expect(find(objs, 'Role', 'torii-controller').metadata.namespace).toBe('classes');
    expect(find(objs, 'ServiceMonitor', 'torii')).toMatchObject({
      metadata: { labels: { release: 'prometheus' } },
      spec: { endpoints: [{ port: 'http', path: '/metrics', interval: '15s' }] },
    });
  });

  test.each([
    [
      'no image repository (none is published)',
      ['--set', 'image.repository='],
      /image\.repository is required: the registry and path you pushed the Torii image to \(built from the Dockerfile, docs\/install\.md\)/,
    ],
    [
      'an image repository with a tag in it',
      ['--set', 'image.repository=registry.example.com/torii:0.1.0'],
      /\/image\/repository.*does not match pattern/,
    ],
    [
      'a misspelt key',
      ['--set', 'worker.replica=3'],
      /additional properties 'replica' not allowed/,
    ],
    ['negative replicas', ['--set', 'worker.replicas=-1'], /minimum: got -1/],
    ['a bad duration', ['--set', 'worker.presenceGrace=15 seconds'], /presenceGrace/],
    ['a non-TORII variable', ['--set', 'worker.env.NODE_OPTIONS=--inspect'], /NODE_OPTIONS/],
    ['no keys at all', ['--set', 'keys.existingSecret='], /keys: set keys.tokenJwks/],
    [
      'keys without the issuer seed',
      ['--set', 'keys.existingSecret=', '--set-string', 'keys.tokenJwks=jwks'],
      /keys.issuerSeed is required when keys.existingSecret is empty/,
    ],
    [
      'LiveKit without its secret',
      ['--set', 'livekit.url=wss://m', '--set', 'livekit.apiKey=k'],
      /livekit.apiSecret/,
    ],
    [
      'a plain-text LiveKit URL (the media token travels in it)',
      ['--set', 'livekit.url=ws://media.example.com'],
      /livekit\/url.*does not match/,
    ],
    [
      'a LiveKit secret LiveKit would call too short',
      [
        '--set',
        'livekit.url=wss://m',
        '--set',
        'livekit.apiKey=k',
        '--set',
        'livekit.apiSecret=short',
      ],
      /livekit\/apiSecret.*does not match/,
    ],
    [
      'LiveKit without a key',
      ['--set', 'livekit.url=wss://m', '--set', 'livekit.apiSecret=' + 'x'.repeat(32)],
      /livekit.apiKey is required with livekit.url/,
    ],
    ['an http JWKS URL', ['--set', 'tokens.jwksUrl=http://evil.example.com/jwks'], /jwksUrl/],
    [
      'an unknown setting of a role',
      ['--set', 'worker.env.TORII_CONCURENCY=9'],
      /TORII_CONCURENCY/,
    ],
    ['a wired setting of a role', ['--set', 'worker.env.TORII_KEYS_DIR=/tmp'], /TORII_KEYS_DIR/],
    [
      'inline keys that would be ignored',
      ['--set', 'keys.issuerSeed=SA…'],
      /keys.issuerSeed is set but keys.existingSecret \(torii-keys\) is used/,
    ],
  ])('refuses %s with a message naming the value', async (_what, flags, message) => {
    const r = await runAsync(findTool('helm'), ['template', 't', CHART, ...IMAGE, ...flags]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  test("LiveKit's key and secret both from the user's Secret", async () => {
    const objs = objects(
      await helm([
        'template',
        't',
        CHART,
        ...IMAGE,
        '--set',
        'livekit.url=wss://media.example.com',
        '--set',
        'livekit.existingSecret=media-keys',
      ]),
    );
    const worker = podOf(find(objs, 'Deployment', 't-torii-worker'));
    const env = worker.containers[0]?.env ?? [];
    expect(env).toContainEqual({
      name: 'TORII_LIVEKIT_API_KEY',
      valueFrom: { secretKeyRef: { name: 'media-keys', key: 'api-key' } },
    });
    expect(env).toContainEqual({
      name: 'TORII_LIVEKIT_API_SECRET_FILE',
      value: '/etc/torii/livekit/api-secret',
    });
    expect(JSON.stringify(worker.volumes)).toContain('"secretName":"media-keys"');
    // the user's Secret: the chart makes none for LiveKit
    expect(objs.filter((o) => o.kind === 'Secret' && o.metadata.name.includes('livekit'))).toEqual(
      [],
    );
  });

  test("a role's env: each variable once, the user's value winning", async () => {
    const objs = objects(
      await helm([
        'template',
        't',
        CHART,
        ...IMAGE,
        '--set',
        'worker.env.TORII_CONCURRENCY=7',
        '--set',
        'worker.env.TORII_BLOCK_TTL=2h',
      ]),
    );
    const env = podOf(find(objs, 'Deployment', 't-torii-worker')).containers[0]?.env ?? [];
    const names = env.map((e) => e.name);
    expect(names).toEqual([...new Set(names)]);
    expect(env).toContainEqual({ name: 'TORII_CONCURRENCY', value: '7' });
    expect(env).toContainEqual({ name: 'TORII_BLOCK_TTL', value: '2h' });
  });

  test("the schema allows exactly the roles' own TORII_* variables, minus those the chart wires", () => {
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as {
      properties: Record<string, { properties: { env: { propertyNames: { enum: string[] } } } }>;
    };
    const wired = [
      'TORII_KEYS_DIR',
      'TORII_HTTP_PORT',
      'TORII_NATS_URL',
      'TORII_KV_REPLICAS',
      'TORII_KUBECONFIG',
    ];
    for (const [key, role] of [
      ['controller', 'controller'],
      ['authCallout', 'auth-callout'],
      ['worker', 'worker'],
    ] as const) {
      const allowed = schema.properties[key]?.properties.env.propertyNames.enum ?? [];
      const documented = [...documentedEnv(role)].filter((e) => !wired.includes(e)).sort();
      expect([role, allowed]).toEqual([role, documented]);
    }
  });

  describe('against the real kube-apiserver', () => {
    let kc: KubeConfig;
    const ns = `chart-${randomBytes(3).toString('hex')}`;
    beforeAll(async () => {
      kc = new KubeConfig();
      kc.loadFromFile((await sharedControlPlane()).kubeconfig);
      // CRD first, as `helm install` does with crds/.
      await applyRoomCrd(kc);
      await ensureNamespace(kc, ns);
      await ensureNamespace(kc, 'classes');
    });

    test('the chart ships the CRD from crds/', async () => {
      const withCrds = objects(await helm(['template', 't', CHART, '--include-crds', ...IMAGE]));
      const crd = find(withCrds, 'CustomResourceDefinition', 'rooms.torii.io');
      expect(crd).toEqual(
        objects(readFileSync(path.join(PROJECT_ROOT, 'crds', 'rooms.torii.io.yaml'), 'utf8'))[0],
      );
    });

    test.each([
      ['default values', IMAGE, false],
      ['every option', ['-f', FULL_VALUES], true],
    ])(
      '%s: every rendered object is accepted by a server-side dry run',
      async (_what, flags, full) => {
        if (full) {
          // The Prometheus Operator's CRD, reduced to its name: the dry run checks the rest.
          const stub = path.join(tempDir('chart'), 'servicemonitor-crd.yaml');
          writeFileSync(stub, SERVICE_MONITOR_CRD);
          const r = await kubectl(['apply', '--server-side', '-f', stub]);
          expect(r.stderr).toBe('');
          await waitFor(
            'ServiceMonitor CRD served',
            async () => (await kubectl(['get', 'servicemonitors', '-A'])).status === 0,
          );
        }
        const file = path.join(tempDir('chart'), 'rendered.yaml');
        const rendered = await helm([
          'template',
          'torii',
          CHART,
          '-n',
          ns,
          ...flags,
          // the full values have the chart create the keys Secret
          ...(full ? keyFlags(keys) : []),
        ]);
        writeFileSync(file, rendered);
        const r = await serverDryRun(file);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        const applied = r.stdout.trim().split('\n');
        expect(applied).toHaveLength(objects(rendered).length);
        for (const line of applied) expect(line).toMatch(/serverside-applied \(server dry run\)$/);

        // The dry run validates: the same manifests with one wrong field are refused.
        writeFileSync(file, rendered.replace('containerPort: 9', 'containerPorts: 9'));
        const bad = await serverDryRun(file);
        expect(bad.status).not.toBe(0);
        expect(bad.stderr).toMatch(/containerPorts/);
      },
    );

    test("RBAC: the controller does its whole job under the chart's ServiceAccount, calling exactly what the Roles grant", async () => {
      const objs = objects(await helm(['template', 'torii', CHART, '-n', ns, ...IMAGE]));
      const sa = 'torii-controller';
      const rbac = objs.filter((o) =>
        ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(
          o.kind,
        ),
      );
      const rbacFile = path.join(tempDir('chart'), 'rbac.yaml');
      writeFileSync(rbacFile, rbac.map((o) => stringify(o)).join('---\n'));
      const applied = await kubectl(['apply', '-f', rbacFile]);
      expect(applied.stderr).toBe('');

      // The identity a pod of that ServiceAccount gets.
      const token = await kubectl(['create', 'token', sa, '-n', ns, '--duration', '1h']);
      expect(token.status).toBe(0);
      const cp = await sharedControlPlane();
      const saKubeconfig = path.join(tempDir('chart'), 'kubeconfig');
      const admin = JSON.parse(readFileSync(cp.kubeconfig, 'utf8')) as {
        users: { name: string; user: { token: string } }[];
      };
      admin.users = [{ name: 'admin', user: { token: token.stdout.trim() } }];
      writeFileSync(saKubeconfig, JSON.stringify(admin), { mode: 0o600 });

      // The controller with the chart's own environment (pointed at the test servers).
      const nats = await TestNats.start({ keys });
      const chartEnv: Record<string, string> = {};
      for (const e of podOf(find(objs, 'Deployment', 'torii-controller')).containers[0]?.env ?? [])
        if (e.value !== undefined) chartEnv[e.name] = e.value;
      const { proc } = await spawnRole(['controller'], {
        env: {
          ...chartEnv,
          TORII_NATS_URL: nats.url,
          TORII_KEYS_DIR: keys.dir,
          TORII_KV_REPLICAS: '1',
          TORII_KUBECONFIG: saKubeconfig,
          POD_NAMESPACE: ns,
          POD_NAME: 'torii-controller-0',
        },
      });
      try {
        // Its whole job: a Room becomes Ready (stream, KV, status, Event, finalizer), follows a
        // change, and is cleaned up on deletion.
        const rooms = new Rooms(kc, ns);
        await rooms.create('rbac-check', { title: 'RBAC check', maxParticipants: 5 });
        await rooms.waitReady('rbac-check');
        await rooms.update('rbac-check', (s) => ({ ...s, title: 'RBAC check, renamed' }));
        await rooms.waitReady('rbac-check');
        await rooms.delete('rbac-check');
        await rooms.waitGone('rbac-check');
      } finally {
        proc.kill('SIGTERM');
        await waitFor(
          'controller stopped',
          () => proc.exitCode !== null || proc.signalCode !== null,
        );
        await nats.stop();
      }
      expect(proc.exitCode).toBe(0);

      // What it called, from the API server's own audit log.
      const user = `system:serviceaccount:${ns}:${sa}`;
      const calls = readFileSync(cp.auditLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditEvent)
        .filter((e) => e.user.username === user);
      expect(calls.length).toBeGreaterThan(0);
      const denied = calls.filter((e) => e.responseStatus?.code === 403);
      expect(denied.map(describeCall)).toEqual([]);
      expect(calls.filter((e) => !e.objectRef).map((e) => e.requestURI)).toEqual([]);
      const used = new Set(calls.map(describeCall));

      const granted = new Set<string>();
      for (const o of rbac.filter((x) => x.kind === 'ClusterRole' || x.kind === 'Role'))
        for (const r of (o as unknown as { rules: Rule[] }).rules)
          for (const g of r.apiGroups)
            for (const res of r.resources) for (const v of r.verbs) granted.add(`${g}/${res} ${v}`);
      expect([...used].sort()).toEqual([...granted].sort());

      // And from the attacker's side: nothing beyond that.
      const can = async (as: string, ...what: string[]): Promise<boolean> =>
        (
          await kubectl([
            'auth',
            'can-i',
            '-n',
            ns,
            `--as=system:serviceaccount:${ns}:${as}`,
            ...what,
          ])
        ).stdout.trim() === 'yes';
      expect(await can(sa, 'update', 'leases/torii-controller')).toBe(true);
      expect(await can(sa, 'update', 'leases/kube-scheduler')).toBe(false);
      expect(await can(sa, 'delete', 'rooms.torii.io')).toBe(false);
      expect(await can(sa, 'get', 'secrets')).toBe(false);
      expect(await can(sa, 'create', 'pods')).toBe(false);
      for (const verb of ['list', 'get', 'watch'])
        expect(await can('torii-data-plane', verb, 'rooms.torii.io')).toBe(false);
      expect(await can('torii-data-plane', 'get', 'secrets')).toBe(false);
    });
  });
});

interface AuditEvent {
  verb: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { apiGroup?: string; resource: string; subresource?: string };
  responseStatus?: { code: number };
}

/** `torii.io/rooms/status update`: the form RBAC rules are compared in. */
function describeCall(e: AuditEvent): string {
  const r = e.objectRef;
  return r
    ? `${r.apiGroup ?? ''}/${r.resource}${r.subresource ? `/${r.subresource}` : ''} ${e.verb}`
    : e.requestURI;
}

const SERVICE_MONITOR_CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`;
