/**
 * A server binary run as a child process (nats-server, livekit-server): its last log lines for
 * errors, start-up polled until the server says it serves, stop with a deadline. What differs per
 * server (its config, how it says it is ready, how it wants to be stopped) stays with its module.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { ToolError } from '../protocol/errors.js';

/** Log lines kept for the error of a start that fails. */
const LOG_TAIL_LINES = 30;

/** Options of {@link ServerChild.spawn}. */
interface SpawnServerOptions {
  /** Environment of the server; this process's by default. */
  env?: NodeJS.ProcessEnv;
  /** Receives the server's log lines (stdout and stderr). */
  onLog?: (line: string) => void;
}

/** A running server binary. */
export class ServerChild {
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  private readonly logTail: string[] = [];
  /** Rejects if the binary cannot be started at all (missing, not executable). */
  private readonly spawnError: Promise<never>;

  private constructor(
    /** What the errors call the server, e.g. `nats-server`. */
    readonly name: string,
    readonly child: ChildProcess,
    onLog: ((line: string) => void) | undefined,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
    void this.exited.then((code) => (this.exitCode = code));
    const onData = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        this.logTail.push(line);
        if (this.logTail.length > LOG_TAIL_LINES) this.logTail.shift();
        onLog?.(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.spawnError = new Promise<never>((_, reject) =>
      child.once('error', (e) =>
        reject(new ToolError(`cannot start ${name}: ${e.message}`, { cause: e })),
      ),
    );
    this.spawnError.catch(() => undefined);
  }

  /** Starts `binary args`, its output piped to {@link SpawnServerOptions.onLog}. */
  static spawn(
    name: string,
    binary: string,
    args: string[],
    o: SpawnServerOptions = {},
  ): ServerChild {
    const child = spawn(binary, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(o.env ? { env: o.env } : {}),
    });
    return new ServerChild(name, child, o.onLog);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.exitCode === undefined;
  }

  /**
   * Polls `ready` every `pollMs` until it returns a value; fails (and kills the process) when the
   * process exits, cannot be started, or `deadline` (ms since the epoch) passes first. `waiting`
   * names what did not happen, e.g. `did not answer in time`.
   */
  async until<T>(
    ready: () => Promise<T | undefined>,
    o: { deadline: number; pollMs: number; waiting: string },
  ): Promise<T> {
    try {
      for (;;) {
        if (this.child.exitCode !== null)
          throw this.failed(`exited with code ${this.child.exitCode}`);
        if (Date.now() > o.deadline) throw this.failed(o.waiting);
        const got = await Promise.race([ready(), this.spawnError]);
        if (got !== undefined) return got;
        await Promise.race([sleep(o.pollMs), this.spawnError]);
      }
    } catch (e) {
      this.child.kill('SIGKILL');
      throw e;
    }
  }

  /**
   * Sends SIGTERM (again every `repeatMs`, for servers whose first signal only starts a drain),
   * then SIGKILL after `timeoutMs`; resolves once the process has exited.
   */
  async stop(timeoutMs: number, repeatMs?: number): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const again =
      repeatMs === undefined ? undefined : setInterval(() => this.child.kill('SIGTERM'), repeatMs);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearInterval(again);
    clearTimeout(timer);
  }

  /** Kills the process at once (a crash, for fault tests). */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  private failed(why: string): ToolError {
    return new ToolError(`${this.name} ${why}; last log lines:\n${this.logTail.join('\n')}`);
  }
}
