/**
 * The official NATS chart (vendored in deploy/nats/chart) with Torii's values
 * (deploy/nats/values.yaml), rendered by helm and run locally: its ConfigMap's nats.conf, with
 * only the substitutions a laptop needs (loopback ports, local folders, local routes), run by
 * one real nats-server per pod of its StatefulSet, each with the environment the kubelet would
 * give that pod (the StatefulSet's `env`: Secret entries as stored, `$(VAR)` expanded, the pod's
 * name). test/fixtures/nats-chart.conf is the reviewed copy of that nats.conf (`make nats-conf`).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { NatsServerProcess } from '../../src/devtools/nats-server.js';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { freePort, runAsync } from './procs.js';

/** The vendored chart (scripts/vendor-nats-chart.sh). */
export const NATS_CHART = path.join(PROJECT_ROOT, 'deploy', 'nats', 'chart');
/** Torii's values for it. */
export const NATS_VALUES = path.join(PROJECT_ROOT, 'deploy', 'nats', 'values.yaml');
/** The nats.conf the chart renders from {@link NATS_VALUES}, with a header naming both. */
export const CHART_NATS_CONF = path.join(PROJECT_ROOT, 'test', 'fixtures', 'nats-chart.conf');
/** Release and namespace of the install guide (`helm install nats … -n torii`). */
export const NATS_RELEASE = { name: 'nats', namespace: 'torii' } as const;

/** Version (and appVersion: the nats-server of its default image) of the vendored chart. */
export function natsChartVersion(): { version: string; appVersion: string } {
  return parseYaml(readFileSync(path.join(NATS_CHART, 'Chart.yaml'), 'utf8')) as {
    version: string;
    appVersion: string;
  };
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
  [k: string]: unknown;
}

/** One entry of a container's `env`, as the chart writes it. */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
  };
}

export interface NatsContainer {
  name: string;
  image: string;
  args: string[];
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
}

export interface NatsStatefulSet extends K8sObject {
  spec: {
    replicas: number;
    serviceName: string;
    template: {
      spec: {
        containers: NatsContainer[];
        volumes?: { name: string; configMap?: { name: string } }[];
      };
    };
  };
}

/** What a NATS release consists of for its servers: the StatefulSet and its nats.conf. */
export interface NatsRelease {
  statefulSet: NatsStatefulSet;
  /** The `nats` container of the StatefulSet's pods. */
  container: NatsContainer;
  /** nats.conf of the ConfigMap the pods mount. */
  conf: string;
}

export function k8sObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** `helm template` of the vendored chart with Torii's values (and `extra` flags). */
export async function renderNatsChart(
  o: { values?: string; extra?: string[] } = {},
): Promise<K8sObject[]> {
  const args = [
    'template',
    NATS_RELEASE.name,
    NATS_CHART,
    '--namespace',
    NATS_RELEASE.namespace,
    '-f',
    o.values ?? NATS_VALUES,
    ...(o.extra ?? []),
  ];
  const r = await runAsync(findTool('helm'), args);
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')} failed:\n${r.stderr}`);
  return k8sObjects(r.stdout);
}

/**
 * The StatefulSet named `release` and the nats.conf of the ConfigMap its pods mount at
 * /etc/nats-config (what the `--config` argument names), from rendered or stored objects.
 */
export function natsRelease(
  objects: K8sObject[],
  release: string = NATS_RELEASE.name,
): NatsRelease {
  const statefulSet = objects.find(
    (o): o is NatsStatefulSet => o.kind === 'StatefulSet' && o.metadata.name === release,
  );
  if (!statefulSet) throw new Error(`no StatefulSet ${release}`);
  const pod = statefulSet.spec.template.spec;
  const container = pod.containers.find((c) => c.name === 'nats');
  if (!container) throw new Error(`StatefulSet ${release} has no container "nats"`);
  const configFile = container.args[container.args.indexOf('--config') + 1];
  if (configFile !== '/etc/nats-config/nats.conf')
    throw new Error(`the nats container reads ${configFile ?? 'no --config'}`);
  const configMap = pod.volumes?.find((v) => v.name === 'config')?.configMap?.name;
  const conf = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === configMap)?.data?.[
    'nats.conf'
  ];
  if (conf === undefined) throw new Error(`no ConfigMap ${configMap ?? '?'} with nats.conf`);
  return { statefulSet, container, conf };
}

/** Returns the value of `key` in Secret `name`, undefined when there is none. */
export type SecretEntry = (name: string, key: string) => string | undefined;

/**
 * The environment the kubelet gives pod `podName` of the StatefulSet: literal values with
 * `$(VAR)` references to earlier entries expanded, the pod's name, and Secret entries exactly as
 * stored (with the trailing newline a `--from-file` Secret keeps). A missing Secret entry is what
 * the kubelet reports as CreateContainerConfigError.
 */
export function podEnv(
  release: NatsRelease,
  podName: string,
  secretEntry: SecretEntry,
): Record<string, string> {
  const env: Record<string, string> = {};
  const ns = release.statefulSet.metadata.namespace ?? NATS_RELEASE.namespace;
  for (const e of release.container.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) {
      const value = secretEntry(ref.name, ref.key);
      if (value !== undefined) env[e.name] = value;
      else if (!ref.optional)
        throw new Error(
          `CreateContainerConfigError: env ${e.name}: Secret ${ref.name} has no key ${ref.key}`,
        );
    } else if (field) {
      const fields: Record<string, string> = { 'metadata.name': podName, 'metadata.namespace': ns };
      const value = fields[field];
      if (value === undefined) throw new Error(`env ${e.name}: fieldRef ${field} not supported`);
      env[e.name] = value;
    } else {
      env[e.name] = (e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) =>
        v in env ? (env[v] as string) : m,
      );
    }
  }
  return env;
}

/**
 * The nats-server of the version the release's pods run (`nats:<version>-alpine`): the one of
 * scripts/tools.env, which every test runs. Throws when the image is another version.
 */
export function chartNatsServer(release: NatsRelease): string {
  const tools = readFileSync(path.join(PROJECT_ROOT, 'scripts', 'tools.env'), 'utf8');
  const version = /^NATS_SERVER_VERSION=v(\S+)$/m.exec(tools)?.[1];
  const m = /^(?:.*\/)?nats:(\d+\.\d+\.\d+)(?:-[a-z0-9]+)?$/.exec(release.container.image);
  if (!version || m?.[1] !== version)
    throw new Error(
      `the nats container runs ${release.container.image}; the tests run nats-server ${version ?? '?'} (scripts/tools.env)`,
    );
  return findTool('nats-server');
}

/** The nats.conf as a plain object (`$VAR` references become the strings "$VAR"). */
export function parseChartNatsConf(text: string): Record<string, unknown> {
  return JSON.parse(
    text.replace(
      /: (\$[A-Z_]+|[0-9]+[KMGT]i?)(,?)$/gm,
      (_m, v: string, comma: string) => `: "${v}"${comma}`,
    ),
  ) as Record<string, unknown>;
}

/** The header of test/fixtures/nats-chart.conf: which chart and values rendered it, and how. */
export function chartNatsConfHeader(): string {
  const { version } = natsChartVersion();
  const source = readFileSync(path.join(NATS_CHART, 'SOURCE'), 'utf8');
  const tag = /at tag (\S+) \(commit ([0-9a-f]{40})\)/.exec(source.replace(/\s+/g, ' '));
  return [
    `# nats.conf (ConfigMap ${NATS_RELEASE.name}-config) rendered by the official NATS Helm chart ${version}`,
    `# (deploy/nats/chart: nats-io/k8s tag ${tag?.[1] ?? '?'}, commit ${tag?.[2] ?? '?'})`,
    `# from deploy/nats/values.yaml: helm template ${NATS_RELEASE.name} deploy/nats/chart -n ${NATS_RELEASE.namespace} -f deploy/nats/values.yaml`,
    '# Generated by `make nats-conf`; do not edit. test/integration/deploy.test.ts fails when it is',
    '# not what the chart renders from the values today.',
    '',
  ].join('\n');
}

/** What `make nats-conf` writes: {@link chartNatsConfHeader} and the rendered nats.conf. */
export async function renderChartNatsConf(): Promise<string> {
  return chartNatsConfHeader() + natsRelease(await renderNatsChart()).conf;
}

/** Replaces `from` (which must occur exactly once) in the config. */
function sub(text: string, from: RegExp, to: string): string {
  const hits = text.match(new RegExp(from.source, `${from.flags.replace('g', '')}g`))?.length ?? 0;
  if (hits !== 1) throw new Error(`chart's nats.conf: expected one ${from}, found ${hits}`);
  return text.replace(from, to);
}

/** The servers of the chart's StatefulSet, run locally. */
export interface ChartNats {
  servers: NatsServerProcess[];
  /** Client URL of the first server (what a port-forward to the Service reaches). */
  url: string;
  port: number;
  /** The environment each pod got, by pod name. */
  env: Record<string, Record<string, string>>;
  /** Each pod's local ports, by pod name (a restart with `o.samePortsAs` keeps them). */
  ports: Record<string, { port: number; http: number; ws: number; route: number }>;
  stop(): Promise<void>;
}

/**
 * Starts the nats-server(s) of the release: with `cluster`, one per replica of its StatefulSet,
 * routed to each other (clustered JetStream, as R3 KV buckets need); otherwise one, without the
 * cluster block. `o.port` fixes the first server's client port. The servers are of the version
 * the pods run ({@link chartNatsServer}) unless `o.binary` says otherwise.
 */
export async function startChartNats(
  release: NatsRelease,
  secretEntry: SecretEntry,
  dir: string,
  o: { port?: number; cluster?: boolean; binary?: string; samePortsAs?: ChartNats } = {},
): Promise<ChartNats> {
  const binary = o.binary ?? chartNatsServer(release);
  const base = release.conf;
  const routes = (parseChartNatsConf(base)['cluster'] as { routes: string[] }).routes;
  const replicas = o.cluster ? release.statefulSet.spec.replicas : 1;
  if (o.cluster && routes.length !== replicas)
    throw new Error(`${routes.length} routes for ${replicas} replicas`);
  const nodes: {
    name: string;
    port: number;
    http: number;
    ws: number;
    route: number;
    dir: string;
  }[] = [];
  for (let i = 0; i < replicas; i++) {
    const name = `${release.statefulSet.metadata.name}-${i}`;
    // A restarted pod keeps its ports: new free ones could be taken by then.
    const same = o.samePortsAs?.ports[name];
    nodes.push({
      name,
      port: i === 0 && o.port ? o.port : (same?.port ?? (await freePort())),
      http: same?.http ?? (await freePort()),
      ws: same?.ws ?? (await freePort()),
      route: same?.route ?? (await freePort()),
      dir: path.join(dir, name),
    });
  }
  const configOf = (n: (typeof nodes)[number]): string => {
    let c = base;
    c = sub(c, /^\{/, `{\n  "ports_file_dir": ${JSON.stringify(n.dir)},`);
    c = sub(c, /^ {2}"port": 4222,$/m, `  "host": "127.0.0.1",\n  "port": ${n.port},`);
    c = sub(c, /^ {2}"http_port": 8222,$/m, `  "http": "127.0.0.1:${n.http}",`);
    c = sub(c, /"store_dir": "\/data"/, `"store_dir": ${JSON.stringify(path.join(n.dir, 'js'))}`);
    c = sub(
      c,
      /"pid_file": "[^"]+"/,
      `"pid_file": ${JSON.stringify(path.join(n.dir, 'nats.pid'))}`,
    );
    c = sub(c, /("websocket": \{[^}]*"port": )8080/, `$1${n.ws}, "host": "127.0.0.1"`);
    // 10Gi per server would not fit a test machine's disk many times over
    c = sub(c, /"max_file_store": [0-9]+[KMGT]i?/, '"max_file_store": 1Gi');
    const cluster = /\n {2}"cluster": \{[^}]*\},/;
    if (replicas === 1) return sub(c, cluster, '');
    const local = nodes.filter((x) => x !== n).map((x) => `"nats://127.0.0.1:${x.route}"`);
    return sub(
      c,
      /"port": 6222,\s*"routes": \[[^\]]*\]/,
      `"host": "127.0.0.1", "port": ${n.route}, "routes": [${local.join(', ')}]`,
    );
  };
  const env = Object.fromEntries(nodes.map((n) => [n.name, podEnv(release, n.name, secretEntry)]));
  // All at once: a clustered JetStream is healthy only once a quorum is up.
  const servers = await Promise.all(
    nodes.map((n) =>
      NatsServerProcess.start({
        dir: n.dir,
        binary,
        config: configOf(n),
        // the pod's environment only, as in the container
        env: env[n.name] ?? {},
      }),
    ),
  );
  const first = nodes[0] as (typeof nodes)[number];
  return {
    servers,
    url: `nats://127.0.0.1:${first.port}`,
    port: first.port,
    env,
    ports: Object.fromEntries(
      nodes.map((n) => [n.name, { port: n.port, http: n.http, ws: n.ws, route: n.route }]),
    ),
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
