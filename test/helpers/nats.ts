/**
 * Real nats-server instances for tests: random ports, a config rendered by the same code as
 * `torii nats-config`, JetStream in a temp folder, killed at teardown. A three-node cluster
 * variant can stop, kill and restart single nodes.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { openBucket } from '../../src/infra/kv.js';
import { Bucket } from '../../src/protocol/subjects.js';
import { generateKeys, loadServerKeys, type ServerKeys } from '../../src/infra/keys.js';
import { NatsServerProcess } from '../../src/devtools/nats-server.js';
import { renderNatsConfig, ServiceUser, type NatsConfigOptions } from '../../src/infra/natsconf.js';
import { freePort, removeDir, tempDir, track, waitFor } from './procs.js';

/** Keys shared by every server of one test file (generating them takes a few ms). */
export interface TestKeys {
  dir: string;
  server: ServerKeys;
}

/** Generates a fresh key set in a temp folder. */
export async function testKeys(): Promise<TestKeys> {
  const dir = path.join(tempDir('keys'), 'keys');
  await generateKeys(dir);
  return { dir, server: await loadServerKeys(dir) };
}

/** Options of {@link startNats}. */
export interface StartTestNatsOptions {
  keys?: TestKeys;
  websocket?: boolean;
  /** Extra renderer options (auth timeout, account names, …). */
  config?: Partial<NatsConfigOptions>;
  /** Changes the rendered text (tests that need a server Torii would never render). */
  rewrite?: (config: string) => string;
}

/** One running test server. */
export class TestNats {
  private constructor(
    readonly dir: string,
    readonly keys: TestKeys,
    private readonly configFor: () => string,
    public process: NatsServerProcess,
    readonly name: string,
    private readonly clustered: boolean,
  ) {}

  get url(): string {
    return this.process.url;
  }

  /** Starts one server. Ports are fixed at first start so a restart keeps them. */
  static async start(
    o: StartTestNatsOptions & {
      name?: string;
      cluster?: { name: string; port: number; routes: string[] };
    } = {},
  ): Promise<TestNats> {
    const keys = o.keys ?? (await testKeys());
    const name = o.name ?? 'n1';
    const dir = tempDir(`nats-${name}`);
    const ports = {
      port: await freePort(),
      httpPort: await freePort(),
      websocketPort: o.websocket ? await freePort() : 0,
    };
    const rewrite = o.rewrite ?? ((c: string) => c);
    const configFor = (): string =>
      rewrite(
        renderNatsConfig({
          serverName: name,
          ...ports,
          jetstreamDir: path.join(dir, 'js'),
          keys: keys.server,
          portsFileDir: dir,
          ...(o.cluster ? { cluster: o.cluster } : {}),
          ...o.config,
        }),
      );
    const proc = await startProcess(dir, configFor(), o.cluster !== undefined);
    return new TestNats(dir, keys, configFor, proc, name, o.cluster !== undefined);
  }

  /** Connects as the service user of the APP account (bypasses the callout). */
  connectService(opts: Partial<NodeConnectionOptions> = {}): Promise<NatsConnection> {
    return connect({
      servers: this.url,
      user: ServiceUser.Service,
      pass: this.keys.server.servicePassword,
      ...opts,
    });
  }

  /** Connects as the system-account user. */
  connectSystem(opts: Partial<NodeConnectionOptions> = {}): Promise<NatsConnection> {
    return connect({
      servers: this.url,
      user: ServiceUser.System,
      pass: this.keys.server.systemPassword,
      ...opts,
    });
  }

  /** Connects as the callout's user in the AUTH account. */
  connectAuth(opts: Partial<NodeConnectionOptions> = {}): Promise<NatsConnection> {
    return connect({
      servers: this.url,
      user: ServiceUser.Auth,
      pass: this.keys.server.authPassword,
      ...opts,
    });
  }

  /** Graceful stop (SIGTERM). */
  async stop(): Promise<void> {
    await this.process.stop();
  }

  /** Crash (SIGKILL). */
  async kill(): Promise<void> {
    await this.process.kill();
  }

  /**
   * Starts the server again with the same ports and config; with `wipe`, with an empty JetStream
   * store (a server that lost its disk).
   */
  async restart(o: { wipe?: boolean } = {}): Promise<void> {
    await this.process.stop();
    if (o.wipe) rmSync(path.join(this.dir, 'js'), { recursive: true, force: true });
    this.process = await startProcess(this.dir, this.configFor(), this.clustered);
  }

  /** Starts a stopped server again (same ports and store). */
  async start(): Promise<void> {
    if (this.process.running) return;
    this.process = await startProcess(this.dir, this.configFor(), this.clustered);
  }

  /** Stops the server and removes its folder. */
  async destroy(): Promise<void> {
    await this.process.stop();
    removeDir(this.dir);
  }
}

async function startProcess(
  dir: string,
  config: string,
  clustered: boolean,
): Promise<NatsServerProcess> {
  // A cluster node is healthy only once it sees a JetStream meta leader, which needs its peers;
  // readiness of the cluster as a whole is checked by the cluster helper.
  const proc = await NatsServerProcess.start({ dir, config, waitHealthy: !clustered });
  track(proc.child);
  return proc;
}

/** Starts one server with a fresh key set (or the given one). */
export function startNats(o: StartTestNatsOptions = {}): Promise<TestNats> {
  return TestNats.start(o);
}

/** A three-node (or N-node) cluster with full-mesh routes. */
export class TestCluster {
  private constructor(
    readonly keys: TestKeys,
    readonly nodes: TestNats[],
  ) {}

  /** Client URLs of every node. */
  get urls(): string[] {
    return this.nodes.filter((n) => n.process.running).map((n) => n.url);
  }

  static async start(size = 3, o: StartTestNatsOptions = {}): Promise<TestCluster> {
    const keys = o.keys ?? (await testKeys());
    const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`);
    const nodes = await Promise.all(
      routePorts.map((port, i) =>
        TestNats.start({
          ...o,
          keys,
          name: `n${i + 1}`,
          cluster: { name: 'torii-test', port, routes },
        }),
      ),
    );
    const cluster = new TestCluster(keys, nodes);
    await cluster.waitHealthy();
    return cluster;
  }

  /** Waits until every running node reports healthy (routes up, JetStream meta leader known). */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    await Promise.all(
      this.nodes
        .filter((n) => n.process.running)
        .map((n) =>
          waitFor(
            `${n.name} healthy`,
            async () => {
              const mon = n.process.ports.monitoring?.[0];
              if (!mon) return true;
              const res = await fetch(new URL('/healthz', mon));
              return res.ok;
            },
            { timeoutMs },
          ),
        ),
    );
  }

  /**
   * A service connection for a fault test: every node in its server list, reconnecting forever
   * every 250 ms, with every bucket at three replicas. Its JetStream API calls time out after
   * 3 s, so polls during a fault come back and try again instead of hanging.
   */
  async connectApp(): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
    const nc = await this.node(0).connectService({
      servers: this.urls,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    const jsm = await jetstreamManager(nc, { timeout: 3_000 });
    for (const b of Object.values(Bucket)) await openBucket(nc, b, this.nodes.length);
    return { nc, jsm };
  }

  node(i: number): TestNats {
    const n = this.nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  /** Stops every node and removes their folders. */
  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.destroy()));
  }
}
