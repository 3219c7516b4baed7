/**
 * docs/protocol.schema.json and a validator of messages against it (Ajv, JSON Schema 2020-12,
 * strict), for the schema's unit test and the test that validates real traffic.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';

export const PROTOCOL_SCHEMA_FILE = path.join(PROJECT_ROOT, 'docs', 'protocol.schema.json');

/** The checked-in file, parsed. */
export const checkedInSchema = (): ProtocolSchema =>
  JSON.parse(readFileSync(PROTOCOL_SCHEMA_FILE, 'utf8')) as ProtocolSchema;

/** What the validator reads of the schema. */
export interface ProtocolSchema {
  $id: string;
  $defs: Record<string, object>;
}

/** One line per error: the field (JSON pointer) and what is wrong with it. */
export const describeErrors = (errors: readonly ErrorObject[]): string[] =>
  errors.map((e) => {
    const missing = (e.params as { missingProperty?: string }).missingProperty;
    const extra = (e.params as { additionalProperty?: string }).additionalProperty;
    const field = `${e.instancePath}${missing ? `/${missing}` : ''}${extra ? `/${extra}` : ''}`;
    return `${field || '/'}: ${e.message ?? e.keyword}`;
  });

/** Validates messages against the definitions of the checked-in schema. */
export class ProtocolValidator {
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true, validateFormats: false });
  private readonly compiled = new Map<string, ValidateFunction>();
  readonly definitions: readonly string[];

  private readonly id: string;

  constructor(schema: ProtocolSchema = checkedInSchema()) {
    this.ajv.addSchema(schema);
    this.id = schema.$id;
    this.definitions = Object.keys(schema.$defs);
  }

  /** The errors of `message` against definition `name`; empty when it is valid. */
  errors(name: string, message: unknown): string[] {
    let v = this.compiled.get(name);
    if (!v) {
      if (!this.definitions.includes(name)) return [`no definition ${name} in the schema`];
      v = this.ajv.getSchema(`${this.id}#/$defs/${name}`);
      if (!v) throw new Error(`cannot compile ${name}`);
      this.compiled.set(name, v);
    }
    return v(message) ? [] : describeErrors(v.errors ?? []);
  }
}
