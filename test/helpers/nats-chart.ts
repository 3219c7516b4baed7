/**
 * The official NATS chart's output for deploy/nats/values.yaml, run locally. The chart cannot be
 * fetched on these machines (no internet, not served by the Go module proxy), so the nats.conf it
 * rendered from our values is kept as a fixture (test/fixtures/nats-chart-1.3.16.conf) and run
 * with only the substitutions a laptop needs (loopback ports, local folders, local routes); the
 * container's env comes from Secret entries. {@link chartMerge} re-renders our `config.merge` the
 * way the chart does, to notice a fixture that no longer matches the values.
 */
import { readFileSync } from 'node:fs';
import { PROJECT_ROOT } from '../../src/core/tools.js';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { NatsServerProcess } from '../../src/core/nats-server.js';
import { freePort } from './procs.js';

/** deploy/nats/values.yaml, the parts Torii sets. */
export interface NatsChartValues {
  config: {
    cluster: { enabled: boolean; replicas: number; merge?: { name?: string } };
    jetstream: { enabled: boolean };
    websocket: { enabled: boolean; tls: { enabled: boolean } };
    merge: Record<string, unknown>;
  };
  container: {
    env: Record<string, { valueFrom: { secretKeyRef: { name: string; key: string } } }>;
  };
}

export function readNatsChartValues(file: string): NatsChartValues {
  return parseYaml(readFileSync(file, 'utf8')) as NatsChartValues;
}

/** The chart's rendering of a merge block: JSON, with "<< X >>" strings written unquoted. */
export function chartMerge(merge: Record<string, unknown>): string {
  return JSON.stringify(merge, null, 2).replace(/"<< (.+?) >>"/g, '$1');
}

/**
 * The container env of the values, each entry read from its Secret.
 * @param secretEntry returns the value of `key` in Secret `name` (undefined when missing)
 */
export function chartEnv(
  values: NatsChartValues,
  secretEntry: (name: string, key: string) => string | undefined,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, v] of Object.entries(values.container.env)) {
    const { name: secret, key } = v.valueFrom.secretKeyRef;
    const value = secretEntry(secret, key);
    // What the kubelet reports as CreateContainerConfigError.
    if (value === undefined) throw new Error(`env ${name}: Secret ${secret} has no key ${key}`);
    env[name] = value.trim();
  }
  return env;
}

/** nats.conf as the official chart rendered it from deploy/nats/values.yaml. */
export const CHART_NATS_CONF = path.join(
  PROJECT_ROOT,
  'test',
  'fixtures',
  'nats-chart-1.3.16.conf',
);

/** The fixture's text without its comment header. */
export function chartNatsConf(): string {
  return readFileSync(CHART_NATS_CONF, 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
}

/** The fixture as a plain object (`$VAR` references become the strings "$VAR"). */
export function parseChartNatsConf(text: string = chartNatsConf()): Record<string, unknown> {
  return JSON.parse(
    text.replace(
      /: (\$[A-Z_]+|[0-9]+[KMGT]i?)(,?)$/gm,
      (_m, v: string, comma: string) => `: "${v}"${comma}`,
    ),
  ) as Record<string, unknown>;
}

/** Replaces `from` (which must occur exactly once) in the fixture. */
function sub(text: string, from: RegExp, to: string): string {
  const hits = text.match(new RegExp(from.source, `${from.flags.replace('g', '')}g`))?.length ?? 0;
  if (hits !== 1) throw new Error(`${CHART_NATS_CONF}: expected one ${from}, found ${hits}`);
  return text.replace(from, to);
}

/** The servers of the chart's StatefulSet, run locally. */
export interface ChartNats {
  servers: NatsServerProcess[];
  /** Client URL of the first server (what a port-forward to the Service reaches). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts the nats-server(s) of the chart: with `cluster`, its three replicas routed to each other
 * (clustered JetStream, as R3 KV buckets need); otherwise one, without the cluster block.
 * `o.port` fixes the first server's client port.
 */
export async function startChartNats(
  env: Record<string, string>,
  dir: string,
  o: { port?: number; cluster?: boolean } = {},
): Promise<ChartNats> {
  const base = chartNatsConf();
  const routes = (parseChartNatsConf(base)['cluster'] as { routes: string[] }).routes;
  const replicas = o.cluster ? routes.length : 1;
  const nodes: {
    name: string;
    port: number;
    http: number;
    ws: number;
    route: number;
    dir: string;
  }[] = [];
  for (let i = 0; i < replicas; i++) {
    nodes.push({
      name: `nats-${i}`,
      port: i === 0 && o.port ? o.port : await freePort(),
      http: await freePort(),
      ws: await freePort(),
      route: await freePort(),
      dir: path.join(dir, `nats-${i}`),
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
  // All at once: a clustered JetStream is healthy only once a quorum is up.
  const servers = await Promise.all(
    nodes.map((n) =>
      NatsServerProcess.start({
        dir: n.dir,
        config: configOf(n),
        // SERVER_NAME is $(POD_NAME) in the chart's StatefulSet
        env: { ...process.env, ...env, SERVER_NAME: n.name },
      }),
    ),
  );
  const first = nodes[0] as (typeof nodes)[number];
  return {
    servers,
    url: `nats://127.0.0.1:${first.port}`,
    port: first.port,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
