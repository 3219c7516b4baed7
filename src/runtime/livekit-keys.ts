/**
 * What Torii accepts as LiveKit API credentials: the worker refuses LiveKit's public development
 * pair and short secrets at start; `torii dev` generates keys that pass.
 */
/**
 * Shortest API secret, in characters. LiveKit outside development mode logs an error for a
 * shorter one ("should be at least 32 characters for security"); Torii refuses it.
 */
export const MIN_LIVEKIT_SECRET_LENGTH = 32;
/** The pair LiveKit's `--dev` mode uses, which everyone knows: never accepted as real keys. */
export const WELL_KNOWN_LIVEKIT_KEYS = { apiKey: 'devkey', apiSecret: 'secret' } as const;
