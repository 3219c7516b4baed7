/**
 * Writes docs/protocol.schema.json from the wire contract (src/protocol/messages.ts); the unit
 * test test/unit/protocol-schema.test.ts fails when the checked-in file is stale.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderProtocolSchema } from '../src/protocol/messages.js';
import { PROJECT_ROOT } from '../src/runtime/version.js';

const file = path.join(PROJECT_ROOT, 'docs', 'protocol.schema.json');
writeFileSync(file, renderProtocolSchema());
process.stderr.write(`wrote ${file}\n`);
