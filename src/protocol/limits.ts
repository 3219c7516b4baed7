/**
 * The contract's numeric bounds, apart from its schemas (messages.ts): the SDK and the page
 * import these values, and a value import of messages.ts would build and ship every schema.
 */

/** Largest hand-raise note, in characters. */
export const MAX_NOTE_LENGTH = 200;
/** Most participants one `REQ_PARTICIPANTS` page may ask for. */
export const MAX_PARTICIPANTS_PAGE = 500;
/** Longest `REQ_PARTICIPANTS` cursor, in characters (an ISO-8601 time, `|`, a user id). */
export const MAX_CURSOR_LENGTH = 100;

/** Longest reason of a kick (`torii.rooms.kick`), in characters. */
export const MAX_KICK_REASON_LENGTH = 200;
/**
 * Longest block a kick may set (`torii.rooms.kick` `durationSeconds`, the worker's
 * `--block-ttl`), in seconds: a year. Keeping someone out for good is the platform's to do, by
 * issuing no more room tokens; a bound keeps the block's expiry a real date.
 */
export const MAX_BLOCK_SECONDS = 365 * 86_400;
