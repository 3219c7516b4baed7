/**
 * Builds the classroom page into dist/web (`make web`): src/web/main.ts bundled by esbuild for
 * browsers (the SDK and the NATS websocket transport inside, minified, with a source map) as
 * `app.js`, the media part (LiveKit's client) as a chunk it loads when needed, and the page's
 * static files copied beside them. The folder is servable by any static host; `torii
 * dev` serves it on `--web-port`.
 *
 *   npx tsx scripts/build-web.ts [--out dist/web]
 */
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT } from '../src/runtime/version.js';

/** Files of src/web served as they are. */
const STATIC_FILES = ['index.html', 'style.css'];
/** Browsers the bundle targets: those with ES2022, websockets and Pointer Events. */
const TARGET = ['es2022', 'chrome109', 'firefox115', 'safari16'];

const { values } = parseArgs({ options: { out: { type: 'string' } } });
const src = path.join(PROJECT_ROOT, 'src', 'web');
const out = path.resolve(values.out ?? path.join(PROJECT_ROOT, 'dist', 'web'));

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  // app.js is what the page loads; LiveKit's client (src/web/media.ts, imported once a media
  // answer arrives) becomes a chunk of its own beside it.
  entryPoints: { app: path.join(src, 'main.ts') },
  outdir: out,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: TARGET,
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
for (const f of STATIC_FILES) await copyFile(path.join(src, f), path.join(out, f));
