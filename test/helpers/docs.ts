/**
 * Shell commands in the docs. Every fenced `sh` block of README.md and docs/*.md is either run by
 * docs-check in order (the default), or says which test runs it with a marker on the line before
 * the fence (blank lines between allowed): `<!-- docs-check: run-by test/integration/x.test.ts -->` (that test reads the block
 * and runs it) or `<!-- docs-check: ci -->` (`.ci/run` runs it).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/runtime/version.js';

/** One command of a block (continuation lines joined). */
export interface DocCommand {
  /** 1-based line in the file. */
  line: number;
  text: string;
}

export interface DocBlock {
  /** Path relative to the project root. */
  file: string;
  line: number;
  marker?: { kind: 'run-by' | 'ci'; arg: string };
  commands: DocCommand[];
}

const MARKER = /^<!--\s*docs-check:\s*(run-by|ci)\s*(.*?)\s*-->$/;

/** The `sh`/`bash` blocks of a Markdown file. */
export function shellBlocks(file: string): DocBlock[] {
  const lines = readFileSync(path.join(PROJECT_ROOT, file), 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i] ?? '')) continue;
    let back = i - 1;
    while (back > 0 && (lines[back] ?? '').trim() === '') back--; // formatters add a blank line
    const m = MARKER.exec((lines[back] ?? '').trim());
    const block: DocBlock = {
      file,
      line: i + 1,
      ...(m ? { marker: { kind: m[1] as 'run-by' | 'ci', arg: m[2] ?? '' } } : {}),
      commands: [],
    };
    let pending: DocCommand | undefined;
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) {
      const raw = lines[i] ?? '';
      if (!pending && (raw.trim() === '' || raw.trim().startsWith('#'))) continue;
      const part = raw.replace(/\\$/, '').trim();
      pending = pending
        ? { line: pending.line, text: `${pending.text} ${part}` }
        : { line: i + 1, text: part };
      if (!raw.endsWith('\\')) {
        block.commands.push(pending);
        pending = undefined;
      }
    }
    blocks.push(block);
  }
  return blocks;
}

/** The block of `file` that contains a command starting with `first`. */
export function blockStartingWith(file: string, first: string): DocBlock {
  const b = shellBlocks(file).find((x) => x.commands[0]?.text.startsWith(first));
  if (!b) throw new Error(`${file} has no sh block starting with ${first}`);
  return b;
}

/** A fenced block of any language, with the docs-check marker before it, if any. */
export interface DocCodeBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  marker?: { kind: 'run-by' | 'ci'; arg: string };
  /** The lines between the fences. */
  body: string;
}

/** The fenced blocks of a Markdown file in the given languages (`ts`, `json`, …). */
export function codeBlocks(file: string, langs: readonly string[]): DocCodeBlock[] {
  const lines = readFileSync(path.join(PROJECT_ROOT, file), 'utf8').split('\n');
  const out: DocCodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const lang = /^```(\S+)\s*$/.exec(lines[i] ?? '')?.[1];
    if (lang === undefined) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push(lines[i] ?? '');
    if (!langs.includes(lang)) continue;
    let back = start - 1;
    while (back > 0 && (lines[back] ?? '').trim() === '') back--;
    const m = MARKER.exec((lines[back] ?? '').trim());
    out.push({
      file,
      line: start + 1,
      lang,
      ...(m ? { marker: { kind: m[1] as 'run-by' | 'ci', arg: m[2] ?? '' } } : {}),
      body: body.join('\n') + '\n',
    });
  }
  return out;
}
