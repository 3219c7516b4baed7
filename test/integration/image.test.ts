/**
 * The container image, without Docker (this machine has none): the runtime stage of the
 * Dockerfile is replayed into a folder — its COPY lines, its `npm ci --omit=dev` and its `ln`,
 * with absolute paths moved under the folder — and the result is run as the image would run it:
 * `torii` from the PATH, NODE_ENV=production, production dependencies only. A runtime import of a
 * dev dependency, a file the image forgets, or a broken entrypoint fails here. The install guide's
 * build and push commands (docs/install.md, step 2) cannot run without a container runtime: they
 * are checked to build this Dockerfile under the tag the chart then pulls.
 */
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT, packageVersion } from '../../src/runtime/version.js';
import { cleanEnv } from '../helpers/cli.js';
import { blockStartingWith, shellBlocks } from '../helpers/docs.js';
import { TestNats } from '../helpers/nats.js';
import { freePort, runAsync, tempDir, track, waitFor } from '../helpers/procs.js';

interface Instruction {
  op: string;
  args: string;
}

/** Instructions of a Dockerfile, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op = '', ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

const dockerfile = instructions(readFileSync(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8'));
const stages: Instruction[][] = [];
for (const i of dockerfile) {
  if (i.op === 'FROM') stages.push([]);
  stages.at(-1)?.push(i);
}
const build = stages[0] ?? [];
const runtime = stages.at(-1) ?? [];

/** Context paths the .dockerignore allow-list lets through. */
const allowed = readFileSync(path.join(PROJECT_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('!'))
  .map((l) => l.slice(1).replace(/\/$/, ''));

describe('container image (Dockerfile replayed without Docker)', () => {
  const root = tempDir('image');
  const under = (p: string): string => path.join(root, p);
  const bin = under('/usr/local/bin');
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    mkdirSync(bin, { recursive: true });
    let workdir = '/';
    env = cleanEnv({ PATH: `${bin}:${process.env.PATH ?? ''}` });
    for (const { op, args } of runtime) {
      switch (op) {
        case 'WORKDIR':
          workdir = path.resolve(workdir, args);
          mkdirSync(under(workdir), { recursive: true });
          break;
        case 'ENV': {
          const [k, v] = args.split('=') as [string, string];
          env[k] = v;
          break;
        }
        case 'COPY': {
          const words = args.split(/\s+/);
          const fromBuild = words[0] === '--from=build';
          const paths = fromBuild ? words.slice(1) : words;
          const dest = path.resolve(workdir, paths.pop() as string);
          for (const src of paths) {
            // From the build stage: `make test` has already built dist/ in the checkout.
            const from = fromBuild
              ? path.join(PROJECT_ROOT, path.relative('/src', src))
              : path.join(PROJECT_ROOT, src);
            if (!fromBuild)
              expect([src, allowed.some((a) => src === a || src.startsWith(`${a}/`))]).toEqual([
                src,
                true,
              ]);
            const to =
              paths.length > 1 || dest.endsWith('/')
                ? path.join(under(dest), path.basename(src))
                : under(dest);
            cpSync(from, to, { recursive: true, dereference: true });
          }
          break;
        }
        case 'RUN': {
          // `npm cache clean` empties the image layer's cache; here it would empty the user's.
          const cmd = args
            .split('&&')
            .map((c) => c.trim())
            .filter((c) => !c.startsWith('npm cache clean'))
            .map((c) => c.replace(/(^|\s)\/(?=\S)/g, `$1${root}/`))
            .join(' && ');
          const r = await runAsync('sh', ['-c', cmd], {
            cwd: under(workdir),
            env,
            timeoutMs: 300_000,
          });
          if (r.status !== 0) throw new Error(`RUN ${cmd} failed:\n${r.stderr}`);
          break;
        }
      }
    }
    // The build stage makes the entrypoint executable.
    expect(build.some((i) => i.op === 'RUN' && /chmod 0755 dist\/cli\.js/.test(i.args))).toBe(true);
    chmodSync(under('/app/dist/cli.js'), 0o755);
  }, 300_000);

  test('runs as a numeric non-root user with torii as entrypoint on the Node 20 LTS base', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const user = runtime.find((i) => i.op === 'USER')?.args;
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(runtime.find((i) => i.op === 'ENTRYPOINT')?.args).toBe('["torii"]');
    const base = dockerfile.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_IMAGE='))?.args;
    expect(base).toMatch(/^NODE_IMAGE=node:20-/);
    expect(readlinkSync(path.join(bin, 'torii'))).toBe(under('/app/dist/cli.js'));
  });

  test('holds exactly the production dependencies of the lockfile', () => {
    type Lock = { packages: Record<string, { dev?: boolean; optional?: boolean }> };
    const read = (f: string): Lock => JSON.parse(readFileSync(f, 'utf8')) as Lock;
    const lock = read(path.join(PROJECT_ROOT, 'package-lock.json'));
    const image = read(under('/app/node_modules/.package-lock.json'));
    const installed = Object.keys(image.packages).sort();
    const production = Object.entries(lock.packages)
      .filter(([p, e]) => p.startsWith('node_modules/') && e.dev !== true)
      .map(([p]) => p);
    // Optional packages for other platforms are not installed; nothing else may be missing.
    const missing = production.filter(
      (p) => !installed.includes(p) && lock.packages[p]?.optional !== true,
    );
    expect(missing).toEqual([]);
    expect(installed.filter((p) => lock.packages[p]?.dev === true)).toEqual([]);
    for (const tool of ['typescript', 'jest', 'eslint', 'prettier', 'tsx'])
      expect([tool, existsSync(under(`/app/node_modules/${tool}`))]).toEqual([tool, false]);
    expect(existsSync(under('/app/src'))).toBe(false);
  });

  test('the image runs a role: torii controller on the bundled example Rooms, then torii rooms', async () => {
    const version = await runAsync('torii', ['--version'], { env, cwd: root });
    expect(version.stdout.trim()).toBe(
      (
        JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
          version: string;
        }
      ).version,
    );
    const nats = await TestNats.start();
    const port = await freePort();
    const controller = track(
      spawn(
        'torii',
        [
          'controller',
          '--rooms-dir',
          under('/app/examples/rooms'),
          '--nats-url',
          nats.url,
          '--keys-dir',
          nats.keys.dir,
          '--http-port',
          String(port),
        ],
        { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    let stderr = '';
    controller.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    try {
      await waitFor(
        'controller from the image ready',
        async () =>
          (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200,
        { timeoutMs: 30_000 },
      ).catch((e: Error) => {
        throw new Error(`${e.message}\n${stderr}`);
      });
      await waitFor('rooms published', async () => {
        const r = await runAsync(
          'torii',
          ['rooms', '--json', '--nats-url', nats.url, '--keys-dir', nats.keys.dir],
          { env, cwd: root },
        );
        return (
          r.status === 0 &&
          (JSON.parse(r.stdout) as { roomId: string }[]).some((x) => x.roomId === 'demo')
        );
      });
      // Logs are JSON lines, as in any role.
      const first = stderr.split('\n').find(Boolean) ?? '';
      expect(JSON.parse(first)).toMatchObject({ role: 'controller' });
    } finally {
      controller.kill('SIGTERM');
      await waitFor(
        'controller stopped',
        () => controller.exitCode !== null || controller.signalCode !== null,
      );
      await nats.stop();
    }
    expect(controller.exitCode).toBe(0);
  });
});

describe('the install guide builds and pushes this image under the tag the chart pulls', () => {
  const GUIDE = 'docs/install.md';

  test('docker and buildah: the root Dockerfile, tagged <repository of step 6>:<appVersion>, then pushed', async () => {
    const { appVersion } = parseYaml(
      readFileSync(path.join(PROJECT_ROOT, 'charts', 'torii', 'Chart.yaml'), 'utf8'),
    ) as { appVersion: string };
    expect(appVersion).toBe(packageVersion());
    const install = shellBlocks(GUIDE)
      .flatMap((b) => b.commands)
      .find((c) => c.text.startsWith('helm install torii charts/torii'));
    const repository = /--set image\.repository=(\S+)/.exec(install?.text ?? '')?.[1] ?? '';
    expect(repository).toMatch(/^[a-z0-9.-]+\/[a-z0-9/._-]+$/);
    const tag = `${repository}:${appVersion}`;
    // `.` is the root of the clone, and Dockerfile the default file there: the one replayed above.
    expect(blockStartingWith(GUIDE, 'docker build').commands.map((c) => c.text)).toEqual([
      `docker build -t ${tag} .`,
      `docker push ${tag}`,
    ]);
    expect(blockStartingWith(GUIDE, 'buildah bud').commands.map((c) => c.text)).toEqual([
      `buildah bud -t ${tag} .`,
      `buildah push ${tag}`,
    ]);
    // and the chart, installed as step 6 says, runs every role from that very tag
    const args = (install?.text ?? '').split(/\s+/).slice(1);
    const r = await runAsync(findTool('helm'), ['template', ...args.slice(1)], {
      cwd: PROJECT_ROOT,
    });
    expect(r.status).toBe(0);
    const images = [...r.stdout.matchAll(/^\s+image: (\S+)$/gm)].map((m) => m[1]);
    expect(images).toHaveLength(3);
    expect(new Set(images)).toEqual(new Set([tag]));
  });
});
