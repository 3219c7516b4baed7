/**
 * The SDK loads in a browser: bundling `src/client` for the browser (esbuild, `platform:
 * 'browser'`, as `make web` does) meets no Node built-in and no Node transport anywhere in its
 * import graph, the core modules it uses included. Also: `torii/client` is the package's entry
 * point for it, with types.
 */
import { build, type Plugin } from 'esbuild';
import { builtinModules } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/runtime/version.js';

const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
/** Packages that exist only for Node. */
const NODE_ONLY_PACKAGES = ['@nats-io/transport-node'];

/**
 * Records every import of a Node built-in or a Node-only package that esbuild would keep, and who
 * made it. A package may map a built-in to nothing for browsers (its `browser` field, as
 * tweetnacl does for `crypto`): esbuild honours that, and so does this check.
 */
function nodeImports(found: string[]): Plugin {
  return {
    name: 'node-imports',
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args) => {
        if ((args.pluginData as { inner?: boolean } | undefined)?.inner) return undefined;
        const bare = args.path
          .split('/')
          .slice(0, args.path.startsWith('@') ? 2 : 1)
          .join('/');
        const builtin = NODE_BUILTINS.has(args.path) || NODE_BUILTINS.has(bare);
        if (!builtin && !NODE_ONLY_PACKAGES.includes(bare)) return undefined;
        const r = await b.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: { inner: true },
        });
        // a browser mapping to nothing resolves to no file (esbuild's empty module)
        const disabled = builtin && r.errors.length === 0 && !r.external && r.namespace !== 'file';
        if (disabled) return undefined;
        found.push(`${path.relative(PROJECT_ROOT, args.importer)} imports ${args.path}`);
        return { path: args.path, external: true };
      });
    },
  };
}

describe('the SDK in a browser', () => {
  test('no Node built-in and no Node transport in the import graph of src/client', async () => {
    const found: string[] = [];
    const r = await build({
      entryPoints: [path.join(PROJECT_ROOT, 'src/client/index.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
      plugins: [nodeImports(found)],
    });
    expect(found).toEqual([]);
    const inputs = Object.keys(r.metafile.inputs);
    // the graph really was walked: the SDK, the core modules and the browser transport's core
    expect(inputs).toEqual(
      expect.arrayContaining([
        'src/client/index.ts',
        'src/client/classroom.ts',
        'src/protocol/subjects.ts',
        'src/protocol/events.ts',
      ]),
    );
    expect(inputs.some((i) => i.includes('@nats-io/nats-core'))).toBe(true);
  });

  test('the detector sees a Node import (so the test above can fail)', async () => {
    const found: string[] = [];
    await build({
      stdin: {
        contents: "import 'node:fs'; import '@nats-io/transport-node';",
        resolveDir: PROJECT_ROOT,
      },
      bundle: true,
      platform: 'browser',
      write: false,
      logLevel: 'silent',
      plugins: [nodeImports(found)],
    });
    expect(found).toHaveLength(2);
  });

  test('torii/client is a package entry point with types', () => {
    const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
      exports?: Record<string, { types?: string; import?: string }>;
    };
    expect(pkg.exports?.['./client']).toEqual({
      types: './dist/client/index.d.ts',
      import: './dist/client/index.js',
    });
  });
});
