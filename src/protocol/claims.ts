/**
 * The room access token's claims, as the callout verifies them and clients read them
 * (docs/auth-callout.md): one place for their names.
 */

/** The claims Torii defines on top of a JWT's own; `sub` is the user id. */
export interface RoomTokenClaims {
  room: string;
  sub: string;
  role: string;
  /** Display name, bounded (`displayNameProblem`). */
  name?: string;
}

/** Claims without which a room token is refused: the JWT's expiry and issue time, and Torii's. */
export const REQUIRED_ROOM_TOKEN_CLAIMS = ['exp', 'iat', 'sub', 'room', 'role'] as const;

/** Longest lifetime Torii mints: 7 days, in milliseconds. */
export const MAX_TOKEN_TTL_MS = 7 * 86_400_000;
/** Shortest lifetime Torii mints: 10 seconds, in milliseconds. */
export const MIN_TOKEN_TTL_MS = 10_000;

/**
 * Longest display name, in characters (UTF-16 code units, as JavaScript counts them). One bound
 * for what the callout admits and what the workers mint on renewal: a name admitted but
 * refused at minting would make the user's token impossible to renew.
 */
export const MAX_NAME_LENGTH = 128;
