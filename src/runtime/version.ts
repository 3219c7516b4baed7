/**
 * Where the running code lives and which version it is: what `--version` prints, what the
 * workers announce, and where the commands find the page and the charts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the project checkout (two levels above `src/runtime` or `dist/runtime`). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The version in package.json (what `--version` prints and the workers announce). */
export function packageVersion(): string {
  return (
    JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
  ).version;
}
