/** Flags and helpers shared by the CLI commands. */
import { Command } from 'commander';
import path from 'node:path';
import { listParser, opt, portParser } from '../runtime/config.js';
import { DEFAULT_NATS_URL } from '../infra/nats.js';
import { DEFAULT_OPS_PORT, Ops } from '../runtime/ops.js';
import {
  createLogger,
  DEFAULT_LOG_LEVEL,
  LOG_LEVELS,
  type Logger,
  type LogLevel,
} from '../runtime/logger.js';
import { Shutdown } from '../runtime/shutdown.js';

/** Default state folder (keys, dev data), relative to the working directory. */
export const DEFAULT_STATE_DIR = '.torii';
/** Default keys folder, relative to the working directory. */
export const DEFAULT_KEYS_DIR = path.join(DEFAULT_STATE_DIR, 'keys');

/** `--log-level`, on every long-running command. */
export function addLogLevel(cmd: Command): Command {
  return cmd.addOption(
    opt<LogLevel>('--log-level <level>', 'log level', {
      default: DEFAULT_LOG_LEVEL,
      choices: LOG_LEVELS,
    }),
  );
}

/** `--keys-dir`, where `torii keys generate` wrote the keys. */
export function addKeysDir(cmd: Command): Command {
  return cmd.addOption(
    opt<string>('--keys-dir <dir>', 'folder holding the keys from `torii keys generate`', {
      default: DEFAULT_KEYS_DIR,
    }),
  );
}

/**
 * How the user ran this CLI, for commands printed back to them: `torii` when installed (npm bin,
 * container image), otherwise `node <path to cli.js>` relative to the working directory.
 */
export function cliInvocation(argv1: string | undefined = process.argv[1]): string {
  if (argv1 === undefined || !/\.[cm]?js$/.test(argv1)) return 'torii';
  const rel = path.relative(process.cwd(), argv1);
  return `node ${rel.startsWith('..') || path.isAbsolute(rel) ? argv1 : rel}`;
}

/**
 * The flags a command gets from its defaults alone (no environment, no arguments): `torii dev`
 * configures the roles it embeds through their own commands' definitions and validation, so a
 * default changes in one place.
 */
export function defaultFlags<T>(register: (program: Command) => void, name: string): T {
  const program = new Command();
  register(program);
  const cmd = program.commands.find((c) => c.name() === name);
  if (!cmd) throw new Error(`no command ${name}`);
  // commander records each option's default when the option is added, before any parsing
  return cmd.opts<Record<string, unknown>>() as T;
}

/** Appends an "Examples:" block to a command's help. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/** `--nats-url`: one or more comma-separated server URLs. */
export function addNatsUrl(cmd: Command): Command {
  return cmd.addOption(
    opt<string[]>('--nats-url <urls>', 'NATS server URLs, comma-separated', {
      default: [DEFAULT_NATS_URL],
      defaultDescription: DEFAULT_NATS_URL,
      parse: listParser,
    }),
  );
}

/** `--http-port`: the ops endpoint (/healthz /readyz /metrics). */
export function addOpsPort(cmd: Command): Command {
  return cmd.addOption(
    opt<number>('--http-port <port>', 'port of /healthz, /readyz and /metrics; 0 disables', {
      default: DEFAULT_OPS_PORT,
      parse: portParser(true),
    }),
  );
}

/**
 * The life of a role process: JSON logger, ops endpoint, signal handling, then `run`; `/readyz`
 * turns ready once `run` has returned. Shared by `controller`, `auth-callout` and `worker`.
 */
export async function runRole(
  role: string,
  f: { httpPort: number; logLevel: LogLevel },
  run: (log: Logger, ops: Ops, shutdown: Shutdown) => Promise<unknown>,
): Promise<void> {
  const log = createLogger(role, f.logLevel);
  const shutdown = new Shutdown(log);
  const ops = new Ops(log);
  if (f.httpPort !== 0) {
    await ops.listen(f.httpPort);
    shutdown.add('ops', () => ops.close());
  }
  shutdown.installSignalHandlers(() => process.exit(0));
  await run(log, ops, shutdown);
  ops.markStarted();
}
