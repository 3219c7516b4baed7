/**
 * The CLI as the install guide gets it (docs/install.md, step 1): its commands, read from the
 * page, run as written in a copy of this checkout (what a clone holds: the files git tracks or
 * would track, no node_modules, no dist/), with npm's global prefix in a scratch folder. The
 * tarball `npm pack` writes must hold a built, working `torii`, installed from nothing else.
 */
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT, packageVersion } from '../../src/runtime/version.js';
import { cleanEnv } from '../helpers/cli.js';
import { blockStartingWith } from '../helpers/docs.js';
import { runAsync, tempDir } from '../helpers/procs.js';

const GUIDE = 'docs/install.md';
/** npm ci, a TypeScript build and an install from the registry (or npm's cache). */
const STEP_TIMEOUT_MS = 300_000;

/** A copy of the checkout as a clone would have it. */
async function cloneOfCheckout(dest: string): Promise<void> {
  const r = await runAsync('git', [
    '-C',
    PROJECT_ROOT,
    'ls-files',
    '-z',
    '--cached',
    '--others',
    '--exclude-standard',
  ]);
  if (r.status !== 0) throw new Error(`git ls-files: ${r.stderr}`);
  for (const file of r.stdout.split('\0').filter(Boolean)) {
    const from = path.join(PROJECT_ROOT, file);
    if (!existsSync(from) && !lstatSync(from, { throwIfNoEntry: false })) continue; // deleted
    mkdirSync(path.dirname(path.join(dest, file)), { recursive: true });
    cpSync(from, path.join(dest, file), { verbatimSymlinks: true, recursive: true });
  }
}

describe('the CLI from a clone, as docs/install.md says (npm pack, npm install -g)', () => {
  const root = tempDir('pack');
  const clone = path.join(root, 'torii');
  const prefix = path.join(root, 'prefix');
  const env = cleanEnv({
    // `npm install -g` installs here, and its bin/ comes first on the PATH, as a user's would
    NPM_CONFIG_PREFIX: prefix,
    PATH: `${path.join(prefix, 'bin')}:${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
  });
  const outputs: string[] = [];

  beforeAll(async () => {
    mkdirSync(prefix);
    await cloneOfCheckout(clone);
    expect(existsSync(path.join(clone, 'node_modules'))).toBe(false);
    expect(existsSync(path.join(clone, 'dist'))).toBe(false);
    for (const c of blockStartingWith(GUIDE, 'npm ci').commands) {
      const r = await runAsync('bash', ['-c', `set -euo pipefail\n${c.text}`], {
        cwd: clone,
        env,
        timeoutMs: STEP_TIMEOUT_MS,
      });
      if (r.status !== 0)
        throw new Error(`${GUIDE}:${c.line} ${c.text}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      outputs.push(r.stdout);
    }
  }, 4 * STEP_TIMEOUT_MS);

  test('the block packs, installs and runs torii from the global prefix', () => {
    expect(outputs.at(-1)?.trim()).toBe(packageVersion());
  });

  test('the tarball holds the built CLI and the classroom page, no sources', async () => {
    const tarball = `torii-${packageVersion()}.tgz`;
    expect(readdirSync(clone)).toContain(tarball);
    const list = await runAsync('tar', ['-tzf', path.join(clone, tarball)]);
    const files = list.stdout.split('\n').filter(Boolean);
    expect(files).toContain('package/dist/cli.js');
    expect(files).toContain('package/dist/client/index.d.ts');
    expect(files).toContain('package/dist/web/index.html');
    expect(files).toContain('package/charts/torii/crds/rooms.torii.io.yaml');
    expect(
      files.filter(
        (f) =>
          /^package\/(src|test|bench)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')),
      ),
    ).toEqual([]);
  });

  test('the installed torii works outside the clone: --help, keys generate', async () => {
    const which = await runAsync('bash', ['-c', 'command -v torii'], { env });
    expect(which.stdout.trim()).toBe(path.join(prefix, 'bin', 'torii'));
    const work = tempDir('pack-use');
    const help = await runAsync('torii', ['--help'], { env, cwd: work });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: torii/m);
    for (const cmd of ['controller', 'auth-callout', 'worker', 'keys', 'token', 'client'])
      expect([cmd, help.stdout.includes(`  ${cmd}`)]).toEqual([cmd, true]);
    const keys = await runAsync('torii', ['keys', 'generate', '--out', 'keys'], { env, cwd: work });
    expect([keys.status, keys.stderr]).toEqual([0, expect.any(String)]);
    expect(readFileSync(path.join(work, 'keys', 'issuer.pub'), 'utf8')).toMatch(
      /^A[A-Z2-7]{55}\n$/,
    );
  });
});
