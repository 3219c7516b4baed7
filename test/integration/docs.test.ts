/**
 * Every command in the docs runs (`make docs-check`; also part of `make test`):
 * - docs/cli.md is what the CLI's --help says today;
 * - the install guide and the operations page run command by command, in order, in a scratch
 *   cluster of their own (a real kube-apiserver and etcd; stand-ins only for nodes and the
 *   internet, listed in docs/install.md), with a few outputs checked against what the text
 *   promises; a block of theirs with a marker (building the CLI and the image) is left to the
 *   test it names;
 * - every other shell block names the test that runs it, and that test reads it from the doc.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { KeyFile } from '../../src/infra/keys.js';
import { ServiceUser } from '../../src/infra/natsconf.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { CLI_DOCS, renderCliDocs } from '../helpers/cli-docs.js';
import { DocsSandbox } from '../helpers/docs-sandbox.js';
import { codeBlocks, shellBlocks, type DocBlock } from '../helpers/docs.js';

/** Pages run here, in this order, in one sandbox (operations continues the install). */
const RUN_HERE = ['docs/install.md', 'docs/operations.md'];
const ALL_DOCS = [
  'README.md',
  ...readdirSync(path.join(PROJECT_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** What some commands must print: the promises the text around them makes. */
const EXPECT: [RegExp, RegExp[]][] = [
  [/^torii keys generate/, [/issuer/]],
  // the chart's NOTES.txt tells the user what to do next
  [
    /^helm install torii charts\/torii/,
    [/Torii \S+ is installed in namespace torii/, /Create a classroom/],
  ],
  [/^kubectl -n classes get rooms/, [/n5-lecture\s+n5-lecture\s+True\s+0/]],
  [
    /^torii client .*--user hana/,
    [/^joined "JLPT N5 — weekly lecture" \(n5-lecture\) as hana \(student\)$/m, /^left the room$/m],
  ],
  [/^torii client .*--user kenji/, [/^joined .* as kenji \(student\)$/m]],
  [/^kubectl -n torii get deployment torii-worker/, [/torii-worker\s+\S+\s+\S+\s+\S+/]],
];

/**
 * The Room the chart's NOTES.txt tells the user to apply is one the API server accepts (server-side
 * dry run, so the guide's own Room stays the only one).
 */
async function notesRoomIsValid(notes: string): Promise<void> {
  const m = /kubectl apply -f - <<'YAML'\n([\s\S]*?)\n\s*YAML\n/.exec(notes);
  expect(m).not.toBeNull();
  const lines = (m?.[1] ?? '').split('\n');
  const indent = Math.min(
    ...lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)?.[0].length ?? 0),
  );
  const yaml = lines.map((l) => l.slice(indent)).join('\n');
  const r = await sandbox.run(`kubectl apply --dry-run=server -f - <<'YAML'\n${yaml}\nYAML`);
  expect(r.stderr).toBe('');
  expect(r.stdout).toMatch(/room\.torii\.io\/n5-evening created \(server dry run\)/);
}

let sandbox: DocsSandbox;

describe('docs', () => {
  test('docs/cli.md is generated from the CLI help and up to date (make docs)', () => {
    expect(readFileSync(CLI_DOCS, 'utf8')).toBe(renderCliDocs());
  });

  test('every shell block is run here, or names the test that runs it', () => {
    const problems: string[] = [];
    for (const file of ALL_DOCS) {
      for (const b of shellBlocks(file)) {
        const where = `${b.file}:${b.line}`;
        // On a page run here, a block with a marker is left to the test it names.
        if (RUN_HERE.includes(file) && !b.marker) continue;
        if (!b.marker) {
          problems.push(
            `${where}: not run by anything (add the page to RUN_HERE or a docs-check marker)`,
          );
        } else if (b.marker.kind === 'ci') {
          const ci = readFileSync(path.join(PROJECT_ROOT, '.ci', 'run'), 'utf8');
          for (const c of b.commands)
            if (!ci.includes(c.text.replace(/\s+#.*$/, '')))
              problems.push(`${where}: .ci/run does not run ${c.text}`);
        } else {
          const test = path.join(PROJECT_ROOT, b.marker.arg);
          if (!existsSync(test)) problems.push(`${where}: ${b.marker.arg} does not exist`);
          else if (!readFileSync(test, 'utf8').includes(`'${b.file}'`))
            problems.push(`${where}: ${b.marker.arg} does not read '${b.file}'`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  test("docs/platform.md's recipe is run: each of its code blocks names the test that reads it", () => {
    const page = 'docs/platform.md';
    const blocks = codeBlocks(page, ['ts', 'json']);
    expect(blocks.length).toBeGreaterThan(0);
    for (const b of blocks) {
      const where = `${b.file}:${b.line}`;
      expect({ where, kind: b.marker?.kind }).toEqual({ where, kind: 'run-by' });
      const test = path.join(PROJECT_ROOT, b.marker?.arg ?? '');
      expect({
        where,
        reads: existsSync(test) && readFileSync(test, 'utf8').includes(`'${page}'`),
      }).toEqual({
        where,
        reads: true,
      });
    }
  });

  describe('install guide, then operations, command by command', () => {
    beforeAll(async () => {
      sandbox = await DocsSandbox.create();
    }, 120_000);
    afterAll(async () => {
      await sandbox?.close();
    });

    const blocks: DocBlock[] = RUN_HERE.flatMap((f) => shellBlocks(f)).filter((b) => !b.marker);
    const commands = blocks.flatMap((b) => b.commands.map((c) => ({ file: b.file, ...c })));
    test('the pages have commands', () => {
      expect(commands.length).toBeGreaterThan(10);
    });
    for (const c of commands) {
      test(`${c.file}:${c.line} ${c.text.slice(0, 90)}`, async () => {
        const r = await sandbox.run(c.text);
        if (r.status !== 0)
          throw new Error(`exit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
        for (const [cmd, outputs] of EXPECT)
          if (cmd.test(c.text)) for (const o of outputs) expect(r.stdout + r.stderr).toMatch(o);
        if (/^helm install torii charts\/torii/.test(c.text)) await notesRoomIsValid(r.stdout);
      });
    }

    test("the roles ran as the chart's non-root user, with a read-only folder and no home", () => {
      const uids = sandbox.podUids();
      expect(Object.keys(uids).sort()).toEqual([
        'torii-auth-callout-0',
        'torii-controller-0',
        'torii-worker-0',
      ]);
      // switching users needs root; elsewhere the roles run as whoever runs the tests
      const expected = process.getuid?.() === 0 ? 10001 : process.getuid?.();
      for (const uid of Object.values(uids)) expect(uid).toBe(expected);
    });

    test('the key rotation took effect: NATS refuses the old service password, takes the new', async () => {
      const pass = (dir: string): string =>
        readFileSync(path.join(sandbox.dir, dir, KeyFile.ServicePassword), 'utf8').trim();
      const servers = sandbox.localUrl(4222); // the port-forward of the guide
      const user = ServiceUser.Service;
      await expect(
        connect({ servers, user, pass: pass('keys'), maxReconnectAttempts: 0 }),
      ).rejects.toThrow(/Authorization Violation/);
      const nc = await connect({ servers, user, pass: pass('keys-next') });
      await nc.close();
    });
  });
});
