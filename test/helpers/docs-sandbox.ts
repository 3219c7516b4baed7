/**
 * A scratch "cluster" in which the install guide and the operations page run command by command:
 * a real etcd + kube-apiserver of its own, a scratch folder with the repository's charts, deploy
 * and examples, `torii` on the PATH (this checkout's build), and stand-ins for what a test
 * machine lacks (nodes, the internet) — each listed in docs/install.md. Everything else runs as
 * written, with bash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { CLI } from './cli.js';
import { startControlPlane, type ControlPlane } from './kube.js';
import {
  natsRelease,
  startChartNats,
  type ChartNats,
  type K8sObject,
  type NatsStatefulSet,
} from './nats-chart.js';
import { freePort, runAsync, tempDir, track, waitFor } from './procs.js';

/** What one command printed. */
export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Set when a stand-in replaced (part of) the command. */
  standIn?: string;
}

interface Pod {
  name: string;
  /** The pod's folder (read-only while it runs). */
  root: string;
  namespace: string;
  proc: ChildProcess;
  readyUrl: string;
  log: () => string;
}

interface K8sList<T> {
  items: T[];
}
interface Deployment {
  metadata: { name: string; namespace: string };
  spec: {
    template: {
      spec: {
        serviceAccountName?: string;
        automountServiceAccountToken?: boolean;
        securityContext?: { runAsUser?: number; runAsGroup?: number; fsGroup?: number };
        containers: {
          args: string[];
          env?: {
            name: string;
            value?: string;
            valueFrom?: { fieldRef?: { fieldPath: string } };
          }[];
          readinessProbe?: { httpGet: { path: string } };
          volumeMounts?: { name: string; mountPath: string }[];
        }[];
        volumes?: {
          name: string;
          secret?: {
            secretName: string;
            items?: { key: string; path: string }[];
            optional?: boolean;
          };
          projected?: {
            defaultMode?: number;
            sources: {
              secret: { name: string; items: { key: string; path: string }[]; optional?: boolean };
            }[];
          };
        }[];
      };
    };
  };
}

export class DocsSandbox {
  private nats: ChartNats | undefined;
  private natsSetup: { namespace: string; release: string; port: number } | undefined;
  private natsDir: string | undefined;
  private readonly forwards: net.Server[] = [];
  private readonly pods = new Map<string, Pod>();
  private releases: { release: string; namespace: string }[] = [];

  private constructor(
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
    private readonly cp: ControlPlane,
  ) {}

  static async create(): Promise<DocsSandbox> {
    const cp = await startControlPlane();
    const dir = tempDir('docs');
    // The role processes run as the pods' user (uid 10001) and must reach their folders.
    chmodSync(dir, 0o755);
    for (const d of ['charts', 'deploy', 'examples'])
      symlinkSync(path.join(PROJECT_ROOT, d), path.join(dir, d));
    const bin = path.join(dir, '.bin');
    mkdirSync(bin);
    writeFileSync(
      path.join(bin, 'torii'),
      `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`,
    );
    chmodSync(path.join(bin, 'torii'), 0o755);
    const toolDirs = ['kubectl', 'helm'].map((t) => path.dirname(findTool(t)));
    const env: NodeJS.ProcessEnv = {
      PATH: [bin, ...toolDirs, process.env.PATH ?? ''].join(':'),
      HOME: dir,
      KUBECONFIG: cp.state.kubeconfig,
      // helm keeps its repositories and cache under these
      HELM_CONFIG_HOME: path.join(dir, '.helm', 'config'),
      HELM_CACHE_HOME: path.join(dir, '.helm', 'cache'),
      HELM_DATA_HOME: path.join(dir, '.helm', 'data'),
    };
    return new DocsSandbox(dir, env, cp);
  }

  /**
   * Ports of the docs (`port-forward svc/nats 4222:4222`) mapped to free ones, so that a local
   * NATS or `make dev` on the same port does not get in the way.
   */
  private readonly ports = new Map<number, number>();

  /** `nats://127.0.0.1:<port>` where a documented local port really is. */
  localUrl(docPort: number): string {
    return `nats://127.0.0.1:${this.ports.get(docPort) ?? docPort}`;
  }

  /** Runs one documented command (bash), or its stand-in. */
  async run(documented: string): Promise<CommandResult> {
    let cmd = documented;
    for (const [doc, real] of this.ports)
      cmd = cmd.replace(
        new RegExp(`\\b(127\\.0\\.0\\.1|localhost):${doc}\\b`, 'g'),
        `127.0.0.1:${real}`,
      );
    let m: RegExpExecArray | null;
    if (/^helm repo (add|update)\b/.test(cmd))
      return { status: 0, stdout: '', stderr: '', standIn: 'skipped: no internet' };
    if ((m = /^kubectl (?:-n (\S+) )?port-forward svc\/nats (\d+):4222\s*&?$/.exec(cmd))) {
      await this.forward(Number(m[2]));
      return {
        status: 0,
        stdout: '',
        stderr: '',
        standIn: `TCP forward from a free local port (for ${m[2]}) to the local nats-server`,
      };
    }
    if (/^kubectl .*\brollout status\b/.test(cmd)) {
      // Syntax and names as kubectl sees them (it would then wait for pods this cluster cannot run).
      const probe = await this.bash(`${cmd} --timeout=1s`);
      if (!/timed out waiting/.test(probe.stderr)) return probe;
      await this.waitPodsReady();
      return {
        status: 0,
        stdout: '',
        stderr: '',
        standIn: 'waited for the role processes to be ready',
      };
    }
    const r = await this.bash(cmd);
    if (r.status !== 0) return r;
    if (
      (m = /^helm (?:install|upgrade) (\S+) charts\/torii\b.*?(?:-n|--namespace)[ =](\S+)/.exec(
        cmd,
      ))
    ) {
      this.releases = [
        ...this.releases.filter((x) => x.release !== m?.[1]),
        { release: m[1] as string, namespace: m[2] as string },
      ];
      if (cmd.startsWith('helm install')) await this.startReleasePods();
      return { ...r, standIn: 'release pods started as processes' };
    }
    if (
      (m =
        /^helm (?:install|upgrade) (\S+) deploy\/nats\/chart\b.*?(?:-n|--namespace)[ =](\S+)/.exec(
          cmd,
        ))
    ) {
      await this.startNats(m[2] as string, m[1] as string);
      return { ...r, standIn: "the StatefulSet's pods started as nats-server processes" };
    }
    if (/^kubectl .*\brollout restart (statefulset\/nats|sts\/nats)\b/.test(cmd)) {
      await this.startNats(this.natsSetup?.namespace ?? '', this.natsSetup?.release ?? '');
      return { ...r, standIn: 'nats-server processes restarted with the Secret read again' };
    }
    if (/^kubectl .*\brollout restart deployment\b/.test(cmd)) {
      await this.startReleasePods();
      return { ...r, standIn: 'release pods restarted as processes' };
    }
    return r;
  }

  private bash(cmd: string): Promise<CommandResult> {
    return runAsync('bash', ['-c', `set -euo pipefail\n${cmd}`], {
      cwd: this.dir,
      env: this.env,
      timeoutMs: 120_000,
    });
  }

  private async kubectlJson<T>(args: string[]): Promise<T> {
    const r = await runAsync(findTool('kubectl'), [...args, '-o', 'json'], { env: this.env });
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  private async secretData(
    namespace: string,
    name: string,
  ): Promise<Record<string, string> | undefined> {
    const r = await runAsync(
      findTool('kubectl'),
      ['-n', namespace, 'get', 'secret', name, '-o', 'json'],
      { env: this.env },
    );
    if (r.status !== 0) return undefined;
    const data = (JSON.parse(r.stdout) as { data?: Record<string, string> }).data ?? {};
    return Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    );
  }

  /**
   * The pods of the release's StatefulSet, as a kubelet would run them: the nats.conf of the
   * ConfigMap and the StatefulSet stored in the API server, the Secret entries read now.
   */
  private async startNats(namespace: string, release: string): Promise<void> {
    const port = this.natsSetup?.port ?? (await freePort());
    await this.nats?.stop();
    const sts = await this.kubectlJson<NatsStatefulSet>([
      '-n',
      namespace,
      'get',
      'statefulset',
      release,
    ]);
    const configMaps = await this.kubectlJson<K8sList<K8sObject>>([
      '-n',
      namespace,
      'get',
      'configmaps',
    ]);
    const nats = natsRelease([sts, ...configMaps.items], release);
    const secrets = new Map<string, Record<string, string> | undefined>();
    for (const e of nats.container.env ?? []) {
      const s = e.valueFrom?.secretKeyRef?.name;
      if (s && !secrets.has(s)) secrets.set(s, await this.secretData(namespace, s));
    }
    // The same folder again on a restart: JetStream keeps its data, as the PVCs would.
    this.natsDir ??= tempDir('docs-nats');
    this.nats = await startChartNats(
      nats,
      (secret, key) => secrets.get(secret)?.[key],
      this.natsDir,
      { port, cluster: true, ...(this.nats ? { samePortsAs: this.nats } : {}) },
    );
    this.natsSetup = { namespace, release, port };
  }

  private async forward(docPort: number): Promise<void> {
    const localPort = await freePort();
    this.ports.set(docPort, localPort);
    const target = (): number => this.natsSetup?.port ?? 0;
    const server = net.createServer((socket) => {
      const upstream = net.connect(target(), '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      const end = (): void => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', end);
      upstream.on('error', end);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(new Error(`port-forward stand-in: 127.0.0.1:${localPort}: ${e.message}`)),
      );
      server.listen(localPort, '127.0.0.1', resolve);
    });
    this.forwards.push(server);
  }

  /** One process per Deployment of each release, as a kubelet would run its pod. */
  private async startReleasePods(): Promise<void> {
    await this.stopPods();
    for (const { release, namespace } of this.releases) {
      const list = await this.kubectlJson<K8sList<Deployment>>([
        '-n',
        namespace,
        'get',
        'deployments',
        '-l',
        `app.kubernetes.io/instance=${release}`,
      ]);
      for (const d of list.items) this.pods.set(d.metadata.name, await this.startPod(d));
    }
  }

  private async startPod(d: Deployment): Promise<Pod> {
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    if (!c) throw new Error(`${d.metadata.name} has no container`);
    const name = `${d.metadata.name}-0`;
    const ns = d.metadata.namespace;
    const root = path.join(this.dir, '.pods', name);
    const mounts = new Map<string, string>();
    // Run as the pod's user when we can (as root): non-root, with only group access to the keys.
    const asRoot = process.getuid?.() === 0;
    const { runAsUser, runAsGroup, fsGroup } = pod.securityContext ?? {};
    for (const m of c.volumeMounts ?? []) {
      const local = path.join(root, m.mountPath);
      mkdirSync(local, { recursive: true });
      mounts.set(m.mountPath, local);
      const vol = pod.volumes?.find((v) => v.name === m.name);
      const sources =
        vol?.projected?.sources.map((s) => s.secret) ??
        (vol?.secret
          ? [
              {
                name: vol.secret.secretName,
                items: vol.secret.items ?? [],
                optional: vol.secret.optional,
              },
            ]
          : []);
      for (const s of sources) {
        const data = await this.secretData(ns, s.name);
        for (const item of s.items) {
          const value = data?.[item.key];
          if (value === undefined) {
            if (s.optional) continue;
            throw new Error(
              `pod ${name} cannot start: Secret ${ns}/${s.name} has no key ${item.key}`,
            );
          }
          const file = path.join(local, item.path);
          writeFileSync(file, value, { mode: vol?.projected?.defaultMode ?? 0o644 });
          // The kubelet gives volume files to the pod's fsGroup.
          if (asRoot && fsGroup !== undefined) chownSync(file, 0, fsGroup);
        }
      }
    }
    const local = (value: string): string => {
      for (const [mountPath, dir] of mounts)
        if (value === mountPath || value.startsWith(`${mountPath}/`))
          return dir + value.slice(mountPath.length);
      return value;
    };
    // As in the image: uid 10001 has no home, and the root filesystem is read-only.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: '/nonexistent' };
    for (const e of c.env ?? []) {
      const field = e.valueFrom?.fieldRef?.fieldPath;
      env[e.name] =
        field === 'metadata.name'
          ? name
          : field === 'metadata.namespace'
            ? ns
            : local(e.value ?? '');
    }
    // The Service name `nats` resolves inside the cluster only.
    env.TORII_NATS_URL = (env.TORII_NATS_URL ?? '').replace(
      /nats:\/\/nats(\.[a-z0-9.-]+)?:4222/g,
      `nats://127.0.0.1:${this.natsSetup?.port ?? 0}`,
    );
    // Every pod has its own network namespace; here they share one.
    const port = await freePort();
    env.TORII_HTTP_PORT = String(port);
    if (pod.automountServiceAccountToken !== false) {
      const token = await runAsync(
        findTool('kubectl'),
        ['-n', ns, 'create', 'token', pod.serviceAccountName ?? 'default', '--duration', '1h'],
        { env: this.env },
      );
      if (token.status !== 0) throw new Error(`token for ${name}: ${token.stderr}`);
      const kubeconfig = JSON.parse(readFileSync(this.cp.state.kubeconfig, 'utf8')) as {
        users: { name: string; user: { token: string } }[];
      };
      kubeconfig.users = [{ name: 'admin', user: { token: token.stdout.trim() } }];
      const file = path.join(root, 'kubeconfig');
      writeFileSync(file, JSON.stringify(kubeconfig), { mode: 0o640 });
      if (asRoot && fsGroup !== undefined) chownSync(file, 0, fsGroup);
      env.KUBECONFIG = file;
    }
    chmodSync(root, 0o555);
    const lines: string[] = [];
    const proc = track(
      spawn(process.execPath, [CLI, ...c.args], {
        cwd: root,
        env,
        ...(asRoot && runAsUser !== undefined
          ? { uid: runAsUser, gid: runAsGroup ?? runAsUser }
          : {}),
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    );
    proc.stderr?.on('data', (b: Buffer) => {
      lines.push(b.toString());
      lines.splice(0, Math.max(0, lines.length - 30));
    });
    return {
      name,
      root,
      namespace: ns,
      proc,
      readyUrl: `http://127.0.0.1:${port}${c.readinessProbe?.httpGet.path ?? '/readyz'}`,
      log: () => lines.join(''),
    };
  }

  /** The uid each running role process has, by pod name. */
  podUids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of this.pods.values()) {
      const status = readFileSync(`/proc/${p.proc.pid}/status`, 'utf8');
      out[p.name] = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    }
    return out;
  }

  private async waitPodsReady(): Promise<void> {
    for (const pod of this.pods.values()) {
      await waitFor(
        `${pod.name} ready`,
        async () => {
          if (pod.proc.exitCode !== null)
            throw new Error(`${pod.name} exited (${pod.proc.exitCode}):\n${pod.log()}`);
          return (await fetch(pod.readyUrl).catch(() => undefined))?.status === 200;
        },
        { timeoutMs: 60_000 },
      ).catch((e: Error) => {
        throw new Error(`${e.message}\n${pod.log()}`);
      });
    }
  }

  private async stopPods(): Promise<void> {
    const pods = [...this.pods.values()];
    this.pods.clear();
    for (const p of pods) if (p.proc.exitCode === null) p.proc.kill('SIGTERM');
    await Promise.all(
      pods.map((p) =>
        waitFor(`${p.name} stopped`, () => p.proc.exitCode !== null || p.proc.signalCode !== null, {
          timeoutMs: 30_000,
        }).then(() => chmodSync(p.root, 0o755)),
      ),
    );
  }

  async close(): Promise<void> {
    await this.stopPods();
    for (const f of this.forwards) f.close();
    await this.nats?.stop();
    await this.cp.stop();
  }
}
