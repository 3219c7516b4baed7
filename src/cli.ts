#!/usr/bin/env node
/**
 * The `torii` command. Thin: each command lives in `commands/`. Exit codes: 0 success,
 * 1 runtime failure, 2 bad usage or configuration (one line on stderr says what to fix).
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, ValidationError, describeError } from './protocol/errors.js';
import { packageVersion } from './runtime/version.js';
import { registerAuthCallout } from './commands/auth-callout.js';
import { registerClient } from './commands/client.js';
import { registerController } from './commands/controller.js';
import { registerDev } from './commands/dev.js';
import { registerKeys } from './commands/keys.js';
import { registerNatsConfig } from './commands/nats-config.js';
import { registerRooms } from './commands/rooms.js';
import { registerToken } from './commands/token.js';
import { registerWorker } from './commands/worker.js';

/** Exit code for bad usage or configuration. */
const EXIT_USAGE = 2;
/** Exit code for a runtime failure. */
const EXIT_FAILURE = 1;

/** Builds the command tree; exported for tests and the docs generator. */
function buildProgram(): Command {
  const program = new Command('torii')
    .description(
      'Torii: the real-time control plane of the Torii Nihongo online classroom (NATS auth callout, room controller, event workers)',
    )
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureHelp({ sortSubcommands: true, showGlobalOptions: true });
  registerAuthCallout(program);
  registerClient(program);
  registerController(program);
  registerDev(program);
  registerKeys(program);
  registerNatsConfig(program);
  registerRooms(program);
  registerToken(program);
  registerWorker(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed its one-line message
      return e.exitCode === 0 ||
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version'
        ? 0
        : EXIT_USAGE;
    }
    process.stderr.write(`torii: ${describeError(e)}\n`);
    return e instanceof ConfigError || e instanceof ValidationError ? EXIT_USAGE : EXIT_FAILURE;
  }
}

// `torii --help | head` closes stdout early: that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

// nats.js can reject a promise nobody awaits after a refused connect; log it instead of crashing.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`torii: unhandled rejection: ${describeError(reason)}\n`);
});

const code = await main(process.argv);
if (code !== 0) process.exit(code);
