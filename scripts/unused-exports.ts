/**
 * Lists the exports of src/ that no other file imports (src, test, bench, scripts): each one is
 * either dead weight or part of a public surface a reader must be told about. An export that is
 * public though unused here (a documented default, an option type of a public signature) says so
 * with `@public` in its TSDoc; everything the SDK's entry point (`torii/client`) re-exports is
 * public already. `test/unit/exports.test.ts` fails on any other.
 *
 * Usage: tsx scripts/unused-exports.ts   (prints one `file:line name` per unmarked export)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** One export of a src/ file that no other file imports. */
export interface UnusedExport {
  /** Path relative to the repository root. */
  file: string;
  name: string;
  /** 1-based line of its declaration. */
  line: number;
  /** Marked `@public` in its TSDoc. */
  marked: boolean;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Where importers are looked for. */
const SCANNED = ['src', 'test', 'bench', 'scripts'];
/** The package's public entry points (package.json `exports`): what they export is public. */
const ENTRY_POINTS = ['src/client/index.ts'];

function tsFiles(dir: string): string[] {
  let out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'node_modules') continue;
    if (statSync(p).isDirectory()) out = out.concat(tsFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** The file a relative specifier names, if it is one of ours. */
function resolveSpecifier(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(dirname(from), spec);
  for (const c of [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')])
    if (c.endsWith('.ts') && statSafe(c)) return c;
  return undefined;
}

function statSafe(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

const hasExport = (n: ts.Node): boolean =>
  ts.canHaveModifiers(n) &&
  (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

const isMarkedPublic = (n: ts.Node): boolean =>
  ts.getJSDocTags(n).some((t) => t.tagName.text === 'public');

/** Finds the unused exports of src/ (see the module's comment). */
export function unusedExports(root: string = ROOT): UnusedExport[] {
  const files = SCANNED.flatMap((d) => tsFiles(join(root, d)));
  /** file → names other files import from it; '*' for all. */
  const used = new Map<string, Set<string>>();
  const use = (file: string | undefined, name: string): void => {
    if (!file) return;
    let s = used.get(file);
    if (!s) used.set(file, (s = new Set()));
    s.add(name);
  };
  const declared: { file: string; name: string; node: ts.Node; sf: ts.SourceFile }[] = [];

  for (const file of files) {
    const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const inSrc = relative(root, file).startsWith('src/');
    const visit = (n: ts.Node): void => {
      if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const arg = n.arguments[0];
        if (arg && ts.isStringLiteral(arg)) use(resolveSpecifier(file, arg.text), '*');
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
    for (const st of sf.statements) {
      if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
        const target = resolveSpecifier(file, st.moduleSpecifier.text);
        const b = st.importClause?.namedBindings;
        if (st.importClause?.name) use(target, 'default');
        if (b && ts.isNamespaceImport(b)) use(target, '*');
        if (b && ts.isNamedImports(b))
          for (const e of b.elements) use(target, (e.propertyName ?? e.name).text);
      } else if (ts.isExportDeclaration(st)) {
        const target =
          st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)
            ? resolveSpecifier(file, st.moduleSpecifier.text)
            : undefined;
        if (st.moduleSpecifier && !st.exportClause) use(target, '*');
        if (st.exportClause && ts.isNamedExports(st.exportClause))
          for (const e of st.exportClause.elements) {
            if (target) use(target, (e.propertyName ?? e.name).text);
            if (inSrc) declared.push({ file, name: e.name.text, node: e, sf });
          }
      } else if (inSrc && hasExport(st)) {
        if (ts.isVariableStatement(st)) {
          for (const d of st.declarationList.declarations)
            if (ts.isIdentifier(d.name)) declared.push({ file, name: d.name.text, node: st, sf });
        } else {
          const name = (st as { name?: ts.Node }).name;
          if (name && ts.isIdentifier(name)) declared.push({ file, name: name.text, node: st, sf });
        }
      }
    }
  }

  const entries = new Set(ENTRY_POINTS.map((p) => join(root, p)));
  const out: UnusedExport[] = [];
  const seen = new Set<string>();
  for (const d of declared) {
    const key = `${d.file}\0${d.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const names = used.get(d.file);
    if (entries.has(d.file) || names?.has('*') || names?.has(d.name)) continue;
    out.push({
      file: relative(root, d.file),
      name: d.name,
      line: d.sf.getLineAndCharacterOfPosition(d.node.getStart(d.sf)).line + 1,
      marked: isMarkedPublic(d.node),
    });
  }
  return out.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const all = unusedExports();
  const unmarked = all.filter((u) => !u.marked);
  for (const u of unmarked) console.log(`${u.file}:${u.line} ${u.name}`);
  console.error(
    `${all.length} exports no other file imports; ${unmarked.length} not marked @public`,
  );
}
