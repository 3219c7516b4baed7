import { ValidationError } from './errors.js';

/**
 * `roomId` and `userId` pattern (docs/protocol.md). A `.`, `*`, `>` or space would inject into
 * subjects and permissions, so anything else is rejected, never sanitised.
 */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Maximum id length in characters. */
const ID_MAX_LENGTH = 64;

/** The work-queue stream's name; no room may take it. */
const RESERVED_STREAM_NAME = 'sysJsWorker';

/** Stream names with this prefix belong to Torii (KV buckets are `KV_torii_*`). */
const RESERVED_PREFIX = 'torii';

/** What kind of identifier is being checked; used in error messages. */
export const IdKind = { Room: 'roomId', User: 'userId' } as const;
export type IdKind = (typeof IdKind)[keyof typeof IdKind];

function describeBadId(value: string): string {
  if (value.length === 0) return 'is empty';
  if (value.length > ID_MAX_LENGTH)
    return `is ${value.length} characters long (at most ${ID_MAX_LENGTH})`;
  const bad = [...value].find((c) => !/[A-Za-z0-9_-]/.test(c));
  const shown = bad === ' ' ? 'a space' : JSON.stringify(bad);
  return `contains ${shown}; only letters, digits, '_' and '-' are allowed`;
}

/** True when `value` is a syntactically valid room or user id. */
export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/**
 * Checks a room or user id and returns it unchanged.
 * @param field what to name in the error (a flag like `--room`, or a claim like `sub`)
 * @throws ValidationError naming `field` when the id is invalid or reserved
 */
export function checkId(kind: IdKind, value: unknown, field: string = kind): string {
  if (typeof value !== 'string') {
    throw new ValidationError(`${field}: ${kind} must be a string`, { field });
  }
  if (!ID_PATTERN.test(value)) {
    throw new ValidationError(
      `${field}: invalid ${kind} ${JSON.stringify(value)}: ${describeBadId(value)}`,
      {
        field,
      },
    );
  }
  if (kind === IdKind.Room && isReservedRoomId(value)) {
    throw new ValidationError(
      `${field}: roomId ${JSON.stringify(value)} is reserved (names starting with '${RESERVED_PREFIX}' or equal to '${RESERVED_STREAM_NAME}')`,
      { field },
    );
  }
  return value;
}

/** Room ids name streams, so Torii's own stream names are off limits. */
export function isReservedRoomId(value: string): boolean {
  return value === RESERVED_STREAM_NAME || value.startsWith(RESERVED_PREFIX);
}

/** Shorthand for {@link checkId} with a room id. */
export const checkRoomId = (value: unknown, field?: string): string =>
  checkId(IdKind.Room, value, field);
/** Shorthand for {@link checkId} with a user id. */
export const checkUserId = (value: unknown, field?: string): string =>
  checkId(IdKind.User, value, field);
