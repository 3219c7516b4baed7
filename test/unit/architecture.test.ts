/**
 * The layout of `src/` (docs/architecture.md, "Layout"): each layer imports only the layers below
 * it, which ESLint enforces (eslint.config.js), and no module imports itself through others.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ESLint } from 'eslint';
import { PROJECT_ROOT } from '../../src/runtime/version.js';

const SRC = path.join(PROJECT_ROOT, 'src');

/** Every TypeScript module of src/ (the page's included), by path relative to the project. */
function modules(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return modules(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The modules of src/ that `file` imports (relative specifiers only), type-only imports too. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    const spec = m[1] as string;
    out.push(path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts'));
  }
  return out;
}

describe('layout', () => {
  test('no import circle among the modules of src/', () => {
    const graph = new Map(modules().map((f) => [f, importsOf(f)]));
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, trail: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        const from = trail.indexOf(f);
        circles.push([...trail.slice(from), f].map((x) => path.relative(SRC, x)).join(' → '));
        return;
      }
      state.set(f, 'open');
      for (const g of graph.get(f) ?? []) if (graph.has(g)) visit(g, [...trail, f]);
      state.set(f, 'done');
    };
    for (const f of graph.keys()) visit(f, []);
    expect(circles).toEqual([]);
  });

  /** What ESLint says about `file` with `line` added at its top. */
  async function lintWith(file: string, line: string): Promise<string[]> {
    const eslint = new ESLint({ cwd: PROJECT_ROOT });
    const abs = path.join(PROJECT_ROOT, file);
    const [result] = await eslint.lintText(`${line}\n${readFileSync(abs, 'utf8')}`, {
      filePath: abs,
    });
    return (result?.messages ?? [])
      .filter((m) => m.ruleId === 'no-restricted-imports')
      .map((m) => m.message);
  }

  test.each([
    ['src/domain/rate.ts', "import '../infra/kv.js';", /src\/domain may import only src\/protocol/],
    [
      'src/protocol/ids.ts',
      "import '../domain/room-spec.js';",
      /src\/protocol may import only itself/,
    ],
    ['src/worker/connz.ts', "import '../auth/index.js';", /src\/worker may import only/],
    ['src/client/live.ts', "import '../infra/streams.js';", /src\/client may import only/],
    ['src/client/live.ts', "import 'node:fs';", /runs in browsers/],
    ['src/commands/worker.ts', "import '../devtools/tools.js';", /only `torii dev`/],
  ])(
    'the lint rule refuses an import against the layers: %s with %s',
    async (file, line, why) => {
      const messages = await lintWith(file, line);
      expect(messages).toEqual([expect.stringMatching(why)]);
    },
    60_000,
  );

  test('and accepts the files as they are', async () => {
    expect(await lintWith('src/commands/dev.ts', '')).toEqual([]);
    expect(await lintWith('src/infra/kv.ts', '')).toEqual([]);
  }, 60_000);
});
