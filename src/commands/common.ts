/** Flags and helpers shared by the CLI commands. */
import type { Command } from 'commander';
import path from 'node:path';
import { opt } from '../core/config.js';
import { DEFAULT_LOG_LEVEL, LOG_LEVELS, type LogLevel } from '../core/logger.js';

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

/** Appends an "Examples:" block to a command's help. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}
