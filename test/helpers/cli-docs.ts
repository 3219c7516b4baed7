/**
 * docs/cli.md: the configuration reference, generated from the CLI's own `--help` (so flags,
 * defaults and TORII_* variables cannot drift from the code). `make docs` writes it; the docs
 * test fails when it is stale.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/runtime/version.js';

export const CLI_DOCS = path.join(PROJECT_ROOT, 'docs', 'cli.md');
const CLI_JS = path.join(PROJECT_ROOT, 'dist', 'cli.js');

function help(args: string[]): string {
  // A fixed width, whatever the terminal: the file must not depend on who generated it.
  const r = spawnSync(process.execPath, [CLI_JS, ...args, '--help'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, COLUMNS: '100' },
  });
  if (r.status !== 0) throw new Error(`torii ${args.join(' ')} --help: ${r.stderr}`);
  return r.stdout.trimEnd();
}

/** Subcommands listed under "Commands:" (without `help`). */
function subcommands(text: string): string[] {
  const section = text.split(/^Commands:$/m)[1]?.split(/^\S/m)[0] ?? '';
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)]
    .map((m) => m[1] as string)
    .filter((c) => c !== 'help');
}

/** The whole reference, as Markdown. */
export function renderCliDocs(): string {
  const out = [
    '# Command-line reference',
    '',
    '<!-- Generated from `torii --help` by `make docs`; do not edit. The docs test fails when it is stale. -->',
    '',
    'Every flag can also be set with the environment variable shown next to it (`env: TORII_…`).',
    'Precedence: built-in default, then the environment, then the flag. A bad value stops the',
    'command with one line naming the flag and its variable, and exit code 2.',
    '',
  ];
  const walk = (args: string[]): void => {
    const text = help(args);
    out.push(`## torii${args.length ? ` ${args.join(' ')}` : ''}`, '', '```text', text, '```', '');
    for (const sub of subcommands(text)) walk([...args, sub]);
  };
  walk([]);
  return out.join('\n');
}
