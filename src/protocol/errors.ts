/**
 * Torii's error hierarchy. Every error carries a stable `code` that logs, metrics and NATS edges
 * use; `message` is for humans; `cause` keeps the underlying error for debugging.
 */

/** Stable error codes. At NATS edges they travel as `{code, message}` (docs/protocol.md). */
export const ErrorCode = {
  BadRequest: 'BAD_REQUEST',
  UnknownEvent: 'UNKNOWN_EVENT',
  Forbidden: 'FORBIDDEN',
  NotFound: 'NOT_FOUND',
  Conflict: 'CONFLICT',
  RateLimited: 'RATE_LIMITED',
  Internal: 'INTERNAL',
  /**
   * A platform endpoint's feature is not configured on the worker that answered (kicks without
   * the system user, tokens without a signing key); micro status 503.
   */
  Unavailable: 'UNAVAILABLE',
  /** Invalid or missing configuration: the process refuses to start. */
  Config: 'CONFIG',
  /** An external tool (nats-server, etcd, …) is missing or failed. */
  Tool: 'TOOL',
  /** No answer within the request's timeout: the SDK's own, never sent by a server. */
  Timeout: 'TIMEOUT',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * The codes an answer to a client's request may carry (docs/protocol.md); any other failure of a
 * handler is answered `INTERNAL`. Listed once: the wire contract's schema (messages.ts) reads it.
 */
export const ANSWER_CODES = [
  ErrorCode.BadRequest,
  ErrorCode.UnknownEvent,
  ErrorCode.Forbidden,
  ErrorCode.NotFound,
  ErrorCode.Conflict,
  ErrorCode.RateLimited,
  ErrorCode.Internal,
] as const;
export type AnswerCode = (typeof ANSWER_CODES)[number];

const ANSWER_CODE_SET: ReadonlySet<string> = new Set<AnswerCode>(ANSWER_CODES);

/** True for a code an answer may carry. */
export const isAnswerCode = (code: unknown): code is AnswerCode =>
  typeof code === 'string' && ANSWER_CODE_SET.has(code);

/**
 * The codes a platform endpoint (`torii.*`, docs/platform.md) refuses with, each with the micro
 * protocol's status (`Nats-Service-Error-Code`); any other failure is `INTERNAL`. Listed once: the
 * worker's service answers by it and the wire contract's schema (messages.ts) reads it.
 */
export const ENDPOINT_STATUS = {
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.Unavailable]: 503,
  [ErrorCode.Internal]: 500,
} as const;
export type EndpointCode = keyof typeof ENDPOINT_STATUS;

/** True for a code a platform endpoint refuses with. */
export const isEndpointCode = (code: unknown): code is EndpointCode =>
  typeof code === 'string' && Object.hasOwn(ENDPOINT_STATUS, code);

/**
 * Base class: `code` + `message` + optional `cause`. The one error type that crosses NATS: a
 * worker's handler or endpoint throws it to refuse a request with its code, and the SDK raises
 * it (as `RoomRequestError`) from an error answer.
 */
export class ToriiError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** The shape sent over NATS: never includes the cause or a stack. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Bad input from a caller: an invalid id, a malformed event, a bad flag value. */
export class ValidationError extends ToriiError {
  /** The field, flag or claim at fault, e.g. `--room` or `sub`. */
  readonly field: string | undefined;

  constructor(message: string, options?: { field?: string; cause?: unknown }) {
    super(ErrorCode.BadRequest, message, options);
    this.field = options?.field;
  }
}

/** Configuration that is missing, contradictory or insecure. The CLI exits with code 2. */
export class ConfigError extends ToriiError {
  /** The flag that needs fixing, e.g. `--keys-dir`. */
  readonly flag: string | undefined;

  constructor(message: string, options?: { flag?: string; cause?: unknown }) {
    super(ErrorCode.Config, message, options);
    this.flag = options?.flag;
  }
}

/** An external program Torii runs (nats-server, etcd, kube-apiserver) is missing or failed. */
export class ToolError extends ToriiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Tool, message, options);
  }
}

/** A one-line description of any thrown value, for logs and CLI output. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
