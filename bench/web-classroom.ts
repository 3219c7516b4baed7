/**
 * The web classroom's weight and speed: gzip sizes of the SDK alone (`src/client`, bundled and
 * minified for browsers as an app would bundle it) and of the page (`dist/web`: script, HTML,
 * CSS), and the time from navigation to a joined page (status `connected`: connected over the
 * websocket through the callout, history caught up, `REQ_INITIAL_DATA` answered and rendered) in
 * real Chromium against `torii dev`, over fresh browser contexts. Prints one JSON line.
 *
 *   npx tsx bench/web-classroom.ts [--loads 10]
 */
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { PROJECT_ROOT } from '../src/runtime/version.js';
import { WEB_DIST_DIR } from '../src/devtools/web-server.js';
import { launchChromium } from '../test/helpers/browser.js';
import { devPorts, toriiSpawn, waitForDev } from '../test/helpers/cli.js';
import { processGroupMembers, tempDir } from '../test/helpers/procs.js';
import { nowMs, r2, report, summary } from './lib.js';

const { values } = parseArgs({ options: { loads: { type: 'string', default: '10' } } });
const LOADS = Number(values.loads);
/** The page's files a browser downloads first (source map aside), less the chunks app.js imports. */
const PAGE_FILES = ['app.js', 'index.html', 'style.css'];

const kib = (bytes: number): number => r2(bytes / 1024);

async function sdkBytes(): Promise<{ minified: number; gzip: number }> {
  const r = await build({
    entryPoints: [path.join(PROJECT_ROOT, 'src', 'client', 'index.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    minify: true,
    write: false,
    logLevel: 'silent',
  });
  const code = r.outputFiles[0]?.contents ?? new Uint8Array();
  return { minified: code.length, gzip: gzipSync(code, { level: 9 }).length };
}

function bytesOf(files: string[]): { minified: number; gzip: number } {
  let minified = 0;
  let gzip = 0;
  for (const f of files) {
    const b = readFileSync(path.join(WEB_DIST_DIR, f));
    minified += b.length;
    gzip += gzipSync(b, { level: 9 }).length;
  }
  return { minified, gzip };
}

/**
 * The initial load (the page's files and the chunks app.js imports statically) and the media
 * chunk it imports once a media answer arrives (LiveKit's client).
 */
function pageBytes(): {
  initial: { minified: number; gzip: number };
  media: { minified: number; gzip: number };
} {
  const app = readFileSync(path.join(WEB_DIST_DIR, 'app.js'), 'utf8');
  const chunks = (re: RegExp): string[] => [...app.matchAll(re)].map((m) => m[1] as string);
  return {
    initial: bytesOf([...PAGE_FILES, ...chunks(/from"\.\/(chunks\/[\w-]+\.js)"/g)]),
    media: bytesOf(chunks(/import\("\.\/(chunks\/[\w-]+\.js)"\)/g)),
  };
}

async function loadToJoined(): Promise<number[]> {
  const state = tempDir('bench-web');
  const ports = await devPorts();
  const dev = toriiSpawn(['dev', '--log-level', 'warn', '--state-dir', state], {
    group: true,
    // the time to a joined page, as before media: LiveKit is not on that path
    env: { ...ports.env, TORII_MEDIA: 'off' },
  });
  const { stdout } = await waitForDev(dev);
  const link = /^ {2}as hana \(student\):\s+(\S+)$/m.exec(stdout)?.[1];
  if (!link) throw new Error(`no link for hana in the banner:\n${stdout}`);
  const browser = await launchChromium();
  const times: number[] = [];
  try {
    for (let i = 0; i < LOADS; i++) {
      // a fresh context: nothing cached, no earlier connection
      const context = await browser.newContext({ bypassCSP: true });
      const page = await context.newPage();
      const t0 = nowMs();
      await page.goto(link);
      await page.waitForFunction(
        "document.querySelector('[data-testid=status]').dataset.state === 'connected'",
        undefined,
        { timeout: 30_000, polling: 'raf' },
      );
      times.push(nowMs() - t0);
      await context.close();
    }
  } finally {
    await browser.close();
    for (const pid of dev.pid ? processGroupMembers(dev.pid) : []) process.kill(pid, 'SIGKILL');
  }
  return times;
}

const sdk = await sdkBytes();
const page = pageBytes();
const joined = summary(await loadToJoined());
report({
  bench: 'web-classroom',
  sdkKiB: { minified: kib(sdk.minified), gzip: kib(sdk.gzip) },
  pageKiB: { minified: kib(page.initial.minified), gzip: kib(page.initial.gzip) },
  mediaChunkKiB: { minified: kib(page.media.minified), gzip: kib(page.media.gzip) },
  loads: LOADS,
  loadToJoinedMs: joined,
});
process.exit(0);
