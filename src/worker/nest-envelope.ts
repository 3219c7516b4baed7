/**
 * The NestJS NATS transport's request/reply framing (`@nestjs/microservices`), so that the
 * platform's NestJS services call the `torii.*` endpoints with `ClientProxy.send` (docs/platform.md).
 *
 * `send(pattern, data)` publishes `{"pattern", "data", "id"}` to the subject `pattern` and reads
 * the reply as `{id, response, err, isDisposed}`: `err` makes the caller's observable fail with
 * it, `response` with `isDisposed` is its one value. A reply with an empty body is reported as
 * "Empty response", which is what a micro error (headers only) looks like to it. A plain micro
 * request is the body itself and keeps the micro protocol's replies.
 */

import type { EndpointRefusal } from '../protocol/messages.js';

/** Who asked: a plain micro client, or a NestJS `ClientProxy` with its request id. */
export type Caller = { kind: 'micro' } | { kind: 'nest'; id: string };

/** A request as an endpoint reads it: the caller and the request body (not yet checked). */
interface EndpointRequest {
  caller: Caller;
  /** The micro request's body, or the NestJS envelope's `data`; undefined when there is none. */
  body: unknown;
}

/**
 * Reads a request on `subject`. A JSON object whose `pattern` is the subject and whose `id` is a
 * string is a NestJS envelope: its `data` is the request. Anything else is a micro request, body
 * and all (so a micro body that happened to carry both keys would have to name the subject to be
 * taken for an envelope).
 * @throws SyntaxError when the payload is not JSON
 */
export function readRequest(subject: string, payload: Uint8Array): EndpointRequest {
  if (payload.length === 0) return { caller: { kind: 'micro' }, body: undefined };
  const v: unknown = JSON.parse(new TextDecoder().decode(payload));
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const e = v as { pattern?: unknown; id?: unknown; data?: unknown };
    if (e.pattern === subject && typeof e.id === 'string')
      return { caller: { kind: 'nest', id: e.id }, body: e.data };
  }
  return { caller: { kind: 'micro' }, body: v };
}

/** A NestJS reply carrying the endpoint's answer. */
export const nestResponse = (id: string, response: unknown): string =>
  JSON.stringify({ id, response, isDisposed: true });

/** A NestJS reply carrying an error: the caller's observable fails with `err`. */
export const nestError = (id: string, err: EndpointRefusal): string =>
  JSON.stringify({ id, err, isDisposed: true });
