/**
 * What the official NATS chart makes of deploy/nats/values.yaml, for a local nats-server: the
 * chart itself cannot be fetched on these machines (no internet, not served by the Go module
 * proxy), so this renders the parts our values set — listeners, JetStream, websocket and
 * `config.merge` as JSON with the chart's `<< $VAR >>` written unquoted — and takes the
 * container's env from Secret entries.
 */
import { readFileSync } from 'node:fs';
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

/** The servers of the chart's StatefulSet, run locally. */
export interface ChartNats {
  servers: NatsServerProcess[];
  /** Client URL of the first server (what a port-forward to the Service reaches). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts the nats-server(s) the chart would run from `values`: one, or with `cluster` the
 * StatefulSet's replicas routed to each other (JetStream clustered, as R3 KV buckets need).
 * Ports are chosen here; `o.port` fixes the first server's client port.
 */
export async function startChartNats(
  values: NatsChartValues,
  env: Record<string, string>,
  dir: string,
  o: { port?: number; cluster?: boolean } = {},
): Promise<ChartNats> {
  const replicas = o.cluster && values.config.cluster.enabled ? values.config.cluster.replicas : 1;
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
  const clusterName = values.config.cluster.merge?.name ?? 'nats';
  const configOf = (n: (typeof nodes)[number]): string =>
    [
      `server_name: ${n.name}`,
      `listen: 127.0.0.1:${n.port}`,
      `http: 127.0.0.1:${n.http}`,
      `ports_file_dir: ${JSON.stringify(n.dir)}`,
      values.config.jetstream.enabled
        ? `jetstream { store_dir: ${JSON.stringify(path.join(n.dir, 'js'))} }`
        : '',
      values.config.websocket.enabled
        ? `websocket { listen: "127.0.0.1:${n.ws}", no_tls: ${!values.config.websocket.tls.enabled} }`
        : '',
      replicas > 1
        ? `cluster { name: ${clusterName}, listen: "127.0.0.1:${n.route}", routes: [${nodes
            .filter((x) => x !== n)
            .map((x) => `"nats-route://127.0.0.1:${x.route}"`)
            .join(', ')}] }`
        : '',
      // config.merge lands at the top level of nats.conf
      chartMerge(values.config.merge).slice(1, -1),
    ].join('\n');
  // All at once: a clustered JetStream is healthy only once a quorum is up.
  const servers = await Promise.all(
    nodes.map((n) =>
      NatsServerProcess.start({ dir: n.dir, config: configOf(n), env: { ...process.env, ...env } }),
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
