/**
 * Builders of JSON Schema (2020-12) objects and the TypeScript type of what each accepts
 * ({@link Infer}): the wire contract (messages.ts) is written once, as schemas, and its types are
 * derived from them, so the TypeScript the workers and the SDK compile against and the JSON
 * Schema that native apps generate decoders from (docs/protocol.schema.json) cannot disagree.
 *
 * Only the subset the contract needs: objects (every one closed with `additionalProperties:
 * false`, so a field the code adds without the contract fails validation), arrays, strings,
 * integers, booleans, null, `const`, `enum` and `anyOf`. Annotations (`description`, `pattern`,
 * bounds) are kept in the schema and ignored by the types.
 */

/**
 * Keywords that constrain or describe a value without changing its TypeScript type.
 * @public named in the declared types of the contract's schemas
 */
export interface Annotations {
  description?: string;
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  maxItems?: number;
}

/**
 * Any schema a builder here makes.
 * @public named in the declared types of the contract's schemas
 */
export type Schema = object;

/**
 * The closed object schema with properties `P`, of which `R` are required.
 * @public named in the declared types of the contract's schemas
 */
export interface ObjectSchema<
  P extends Record<string, Schema>,
  R extends string,
> extends Annotations {
  type: 'object';
  properties: P;
  required: R[];
  additionalProperties: false;
}

type Flatten<T> = { [K in keyof T]: T[K] } & {};

type InferObject<P, R> = [keyof P] extends [never]
  ? Record<string, never>
  : Flatten<
      { -readonly [K in keyof P & R]: Infer<P[K]> } & {
        -readonly [K in Exclude<keyof P, R>]?: Infer<P[K]>;
      }
    >;

type InferEach<A> = A extends unknown ? Infer<A> : never;

/** The TypeScript type of the values schema `S` accepts. */
export type Infer<S> = S extends { const: infer C }
  ? C
  : S extends { enum: readonly (infer E)[] }
    ? E
    : S extends { anyOf: readonly (infer A)[] }
      ? InferEach<A>
      : S extends { type: 'string' }
        ? string
        : S extends { type: 'integer' | 'number' }
          ? number
          : S extends { type: 'boolean' }
            ? boolean
            : S extends { type: 'null' }
              ? null
              : S extends { type: 'array'; items: infer I }
                ? Infer<I>[]
                : S extends { type: 'object'; properties: infer P; required: (infer R)[] }
                  ? InferObject<P, R>
                  : unknown;

export const string = <const A extends Annotations>(a?: A): { type: 'string' } & A =>
  ({ type: 'string', ...a }) as { type: 'string' } & A;

export const integer = <const A extends Annotations>(a?: A): { type: 'integer' } & A =>
  ({ type: 'integer', ...a }) as { type: 'integer' } & A;

export const boolean = <const A extends Annotations>(a?: A): { type: 'boolean' } & A =>
  ({ type: 'boolean', ...a }) as { type: 'boolean' } & A;

export const nullValue = (): { type: 'null' } => ({ type: 'null' });

/** Exactly `value`. */
export const literal = <const C extends string | number | boolean>(
  value: C,
  a?: Annotations,
): { const: C } & Annotations => ({ const: value, ...a });

/** One of `values`. */
export const oneOfValues = <const E extends readonly (string | number)[]>(
  values: E,
  a?: Annotations,
): { enum: E } & Annotations => ({ enum: values, ...a });

/** Any of `schemas` (a nullable value: `anyOf(x, nullValue())`). */
export const anyOf = <const S extends readonly Schema[]>(
  ...schemas: S
): { anyOf: S } & Annotations => ({ anyOf: schemas });

export const array = <const I extends Schema, const A extends Annotations>(
  items: I,
  a?: A,
): { type: 'array'; items: I } & A =>
  ({ type: 'array', items, ...a }) as { type: 'array'; items: I } & A;

/**
 * A closed object: every property required except those `optional` names; no other property
 * allowed.
 */
export function object<
  const P extends Record<string, Schema>,
  const O extends keyof P & string = never,
>(
  properties: P,
  o: { optional?: readonly O[] } & Annotations = {},
): ObjectSchema<P, Exclude<keyof P & string, O>> {
  const { optional = [], ...annotations } = o;
  const skip = new Set<string>(optional);
  return {
    type: 'object',
    ...annotations,
    properties,
    required: Object.keys(properties).filter(
      (k): k is Exclude<keyof P & string, O> => !skip.has(k),
    ),
    additionalProperties: false,
  };
}

/** With a description (for the generated file and the decoders generated from it). */
export const described = <const S extends Schema>(description: string, s: S): S & Annotations => ({
  description,
  ...s,
});
