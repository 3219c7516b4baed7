/**
 * Runs a nats-server child process: writes its config, starts it, waits until it is healthy
 * (JetStream included) and stops it. Used by `torii dev` and the test harness.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ToolError } from '../protocol/errors.js';
import { ServerChild } from './server-process.js';
import { findTool } from './tools.js';

/** How long to wait for a started server to report healthy, in milliseconds. */
const DEFAULT_NATS_START_TIMEOUT_MS = 20_000;
/** How long a server may take to exit after SIGTERM before it is killed, in milliseconds. */
const DEFAULT_NATS_STOP_TIMEOUT_MS = 10_000;
/** Poll interval while waiting for a condition, in milliseconds. */
const POLL_MS = 50;

/** Listen URLs a running server reported in its ports file. */
interface NatsPorts {
  nats: string[];
  monitoring?: string[];
  cluster?: string[];
  websocket?: string[];
}

/** Options of {@link NatsServerProcess.start}. */
interface StartNatsOptions {
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
  private constructor(
    private readonly proc: ServerChild,
    readonly configFile: string,
    readonly ports: NatsPorts,
  ) {}

  get child(): ChildProcess {
    return this.proc.child;
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
    return this.proc.pid;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.proc.running;
  }

  /** Starts a server and waits until it accepts clients (and JetStream is ready). */
  static async start(o: StartNatsOptions): Promise<NatsServerProcess> {
    const binary = o.binary ?? findTool('nats-server');
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    const configFile = path.join(o.dir, 'nats-server.conf');
    await writeFile(configFile, o.config, { mode: 0o600 });
    const proc = ServerChild.spawn('nats-server', binary, ['-c', configFile], {
      ...(o.env ? { env: o.env } : {}),
      ...(o.onLog ? { onLog: o.onLog } : {}),
    });
    const deadline = Date.now() + (o.startTimeoutMs ?? DEFAULT_NATS_START_TIMEOUT_MS);
    const ports = await proc.until(() => readPortsFile(o.dir, proc.pid), {
      deadline,
      pollMs: POLL_MS,
      waiting: 'did not report its ports in time',
    });
    const monitoring = ports.monitoring?.[0];
    if (o.waitHealthy !== false && monitoring) {
      await proc.until(async () => ((await isHealthy(monitoring)) ? true : undefined), {
        deadline,
        pollMs: POLL_MS,
        waiting: 'did not become healthy in time',
      });
    }
    return new NatsServerProcess(proc, configFile, ports);
  }

  /**
   * Stops the server: SIGTERM (lame-duck free, clean JetStream shutdown), then SIGKILL after
   * the timeout. Resolves when the process has exited.
   */
  stop(timeoutMs = DEFAULT_NATS_STOP_TIMEOUT_MS): Promise<void> {
    return this.proc.stop(timeoutMs);
  }

  /** Kills the server at once (a crash, for fault tests). */
  kill(): Promise<void> {
    return this.proc.kill();
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
