/**
 * Graceful shutdown: hooks run in reverse order of registration (last started, first stopped)
 * on SIGINT/SIGTERM, each bounded by a timeout. A second signal exits at once.
 */
import type { Logger } from './logger.js';
import { describeError } from '../protocol/errors.js';

/** How long one hook may take before shutdown moves on, in milliseconds. */
const DEFAULT_SHUTDOWN_HOOK_TIMEOUT_MS = 10_000;

/** A named cleanup step. */
interface ShutdownHook {
  name: string;
  run: () => Promise<void> | void;
}

/** Collects cleanup hooks and runs them once. */
export class Shutdown {
  private readonly hooks: ShutdownHook[] = [];
  private running: Promise<void> | undefined;
  private readonly signalHandlers = new Map<NodeJS.Signals, () => void>();

  constructor(
    private readonly log: Logger,
    private readonly hookTimeoutMs = DEFAULT_SHUTDOWN_HOOK_TIMEOUT_MS,
  ) {}

  /** Registers a hook; hooks run last-in, first-out. */
  add(name: string, run: ShutdownHook['run']): void {
    this.hooks.push({ name, run });
  }

  /** True once shutdown has begun. */
  get started(): boolean {
    return this.running !== undefined;
  }

  /** Runs every hook once; later calls return the same promise. */
  run(reason: string): Promise<void> {
    this.running ??= this.runHooks(reason);
    return this.running;
  }

  private async runHooks(reason: string): Promise<void> {
    this.log.info({ reason }, 'shutting down');
    for (const hook of [...this.hooks].reverse()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(hook.run),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`timed out after ${this.hookTimeoutMs} ms`)),
              this.hookTimeoutMs,
            );
          }),
        ]);
        this.log.debug({ hook: hook.name }, 'stopped');
      } catch (e) {
        this.log.error({ hook: hook.name, err: describeError(e) }, 'shutdown step failed');
      } finally {
        clearTimeout(timer);
      }
    }
    this.log.info('shutdown complete');
  }

  /**
   * Runs the hooks on SIGINT/SIGTERM, then calls `onDone`. A second signal exits with code 130.
   * @returns a function that removes the signal handlers
   */
  installSignalHandlers(onDone: () => void): () => void {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const handler = (): void => {
        if (this.started) {
          this.log.warn({ signal }, 'second signal: exiting now');
          process.exit(130);
        }
        void this.run(signal).then(onDone);
      };
      this.signalHandlers.set(signal, handler);
      process.on(signal, handler);
    }
    return () => {
      for (const [signal, handler] of this.signalHandlers) process.off(signal, handler);
      this.signalHandlers.clear();
    };
  }
}
