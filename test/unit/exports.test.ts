/**
 * Every export of src/ is imported by another file, is part of the SDK's entry point, or says
 * with `@public` why it stays (docs/decisions.md, "One trusted-until cache, one publisher of what
 * Torii says").
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unusedExports } from '../../scripts/unused-exports.js';

test('no export of src/ is unused unless marked @public', () => {
  const unmarked = unusedExports()
    .filter((u) => !u.marked)
    .map((u) => `${u.file}:${u.line} ${u.name}`);
  expect(unmarked).toEqual([]);
});

describe('the scan', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'torii-exports-'));
    for (const d of ['src/client', 'src/a', 'test', 'bench', 'scripts'])
      mkdirSync(join(root, d), { recursive: true });
    writeFileSync(
      join(root, 'src/a/m.ts'),
      [
        'export const used = 1;',
        'export const onlyHere = 2;',
        '/** @public a documented default */',
        'export const marked = 3;',
        'export interface TestOnly { a: number }',
        'export const viaBarrel = 4;',
      ].join('\n'),
    );
    writeFileSync(join(root, 'src/a/user.ts'), "import { used } from './m.js';\nvoid used;\n");
    writeFileSync(join(root, 'test/t.ts'), "import type { TestOnly } from '../src/a/m.js';\n");
    writeFileSync(
      join(root, 'src/client/index.ts'),
      "export { viaBarrel } from '../a/m.js';\nexport const sdkOnly = 5;\n",
    );
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('finds what no other file imports, tells marked ones, counts tests and the SDK', () => {
    const found = unusedExports(root).map((u) => `${u.file} ${u.name} ${u.marked}`);
    expect(found).toEqual(['src/a/m.ts onlyHere false', 'src/a/m.ts marked true']);
  });
});
