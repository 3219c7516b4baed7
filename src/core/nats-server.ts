/**
 * Runs a nats-server child process: writes its config, starts it, waits until it is healthy
 * (JetStream included) and stops it. Used by `torii dev` and the test harness.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ToolError } from './errors.js';
import { findTool } from './tools.js';

/** How long to wait for a started server to report healthy, in milliseconds. */
export const DEFAULT_NATS_START_TIMEOUT_MS = 20_000;
/** How long a server may take to exit after SIGTERM before it is killed, in milliseconds. */
export const DEFAULT_NATS_STOP_TIMEOUT_MS = 10_000;
/** Poll interval while waiting for a condition, in milliseconds. */
const POLL_MS = 50;

/** Listen URLs a running server reported in its ports file. */
export interface NatsPorts {
  nats: string[];
  monitoring?: string[];
  cluster?: string[];
  websocket?: string[];
}

/** Options of {@link NatsServerProcess.start}. */
export interface StartNatsOptions {
  /** Folder for the config, ports file and log. */
  dir: string;
  /** Config text; must set `ports_file_dir` to `dir` (see {@link renderNatsConfig}). */
  config: string;
  /** nats-server binary; found with {@link findTool} when omitted. */
  binary?: string;
  startTimeoutMs?: number;
  /** Receives the server's log lines (stderr). */
  onLog?: (line: string) => void;
  /** Environment of the server (a config may reference `$VAR`s); this process's by default. */
  env?: NodeJS.ProcessEnv;
  /** Wait for `/healthz` (JetStream ready); needs a monitoring port. Default true. */
  waitHealthy?: boolean;
}

/** A nats-server child process. */
export class NatsServerProcess {
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  private constructor(
    readonly child: ChildProcess,
    readonly configFile: string,
    readonly ports: NatsPorts,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
    void this.exited.then((code) => (this.exitCode = code));
  }

  /** The first client URL, e.g. `nats://127.0.0.1:4222`. */
  get url(): string {
    const url = this.ports.nats[0];
    if (!url) throw new ToolError('nats-server reported no client port');
    return url;
  }

  /** The client port. */
  get port(): number {
    return Number(new URL(this.url).port);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Starts a server and waits until it accepts clients (and JetStream is ready). */
  static async start(o: StartNatsOptions): Promise<NatsServerProcess> {
    const binary = o.binary ?? findTool('nats-server');
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    const configFile = path.join(o.dir, 'nats-server.conf');
    await writeFile(configFile, o.config, { mode: 0o600 });
    const child = spawn(binary, ['-c', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(o.env ? { env: o.env } : {}),
    });
    const logTail: string[] = [];
    const onData = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        logTail.push(line);
        if (logTail.length > 30) logTail.shift();
        o.onLog?.(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const spawnError = new Promise<never>((_, reject) =>
      child.once('error', (e) =>
        reject(new ToolError(`cannot start ${binary}: ${e.message}`, { cause: e })),
      ),
    );
    spawnError.catch(() => undefined);

    const deadline = Date.now() + (o.startTimeoutMs ?? DEFAULT_NATS_START_TIMEOUT_MS);
    const failed = (why: string): ToolError =>
      new ToolError(`nats-server ${why}; last log lines:\n${logTail.join('\n')}`);
    let ports: NatsPorts | undefined;
    try {
      while (!ports) {
        if (child.exitCode !== null) throw failed(`exited with code ${child.exitCode}`);
        if (Date.now() > deadline) throw failed('did not report its ports in time');
        ports = await readPortsFile(o.dir, child.pid);
        if (!ports) await Promise.race([sleep(POLL_MS), spawnError]);
      }
      const monitoring = ports.monitoring?.[0];
      if (o.waitHealthy !== false && monitoring) {
        while (!(await isHealthy(monitoring))) {
          if (child.exitCode !== null) throw failed(`exited with code ${child.exitCode}`);
          if (Date.now() > deadline) throw failed('did not become healthy in time');
          await sleep(POLL_MS);
        }
      }
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    return new NatsServerProcess(child, configFile, ports);
  }

  /**
   * Stops the server: SIGTERM (lame-duck free, clean JetStream shutdown), then SIGKILL after
   * the timeout. Resolves when the process has exited.
   */
  async stop(timeoutMs = DEFAULT_NATS_STOP_TIMEOUT_MS): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the server at once (a crash, for fault tests). */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function readPortsFile(dir: string, pid: number | undefined): Promise<NatsPorts | undefined> {
  if (pid === undefined) return undefined;
  const name = (await readdir(dir)).find((f) => f.endsWith(`_${pid}.ports`));
  if (!name) return undefined;
  try {
    const parsed = JSON.parse(await readFile(path.join(dir, name), 'utf8')) as NatsPorts;
    return parsed.nats?.length ? parsed : undefined;
  } catch {
    return undefined; // written but not complete yet
  }
}

async function isHealthy(monitoringUrl: string): Promise<boolean> {
  try {
    const res = await fetch(new URL('/healthz', monitoringUrl), {
      signal: AbortSignal.timeout(1_000),
    });
    return res.ok;
  } catch {
    return false;
  }
}
