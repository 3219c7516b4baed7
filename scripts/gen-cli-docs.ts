/** Writes docs/cli.md from the built CLI's help (`make docs`). */
import { writeFileSync } from 'node:fs';
import { CLI_DOCS, renderCliDocs } from '../test/helpers/cli-docs.js';

writeFileSync(CLI_DOCS, renderCliDocs());
process.stderr.write(`wrote ${CLI_DOCS}\n`);
