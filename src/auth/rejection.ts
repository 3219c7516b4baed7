/**
 * Why the callout refused a connection. Reasons are metric labels and log fields; they never
 * reach the client, which only sees "Authorization Violation".
 */
export const RejectReason = {
  /** The request could not be decrypted, or was (not) encrypted against our configuration. */
  EncryptionMismatch: 'encryption_mismatch',
  DecryptFailed: 'decrypt_failed',
  /** The server's request JWT is malformed, badly signed, stale or not for us. */
  BadRequest: 'bad_request',
  NoToken: 'no_token',
  TokenTooLarge: 'token_too_large',
  TokenMalformed: 'token_malformed',
  TokenExpired: 'token_expired',
  TokenNotYetValid: 'token_not_yet_valid',
  TokenBadSignature: 'token_bad_signature',
  TokenWrongIssuer: 'token_wrong_issuer',
  TokenWrongAudience: 'token_wrong_audience',
  TokenBadAlgorithm: 'token_bad_algorithm',
  TokenMissingClaim: 'token_missing_claim',
  TokenKeyUnavailable: 'token_key_unavailable',
  InvalidId: 'invalid_id',
  UnknownRoom: 'unknown_room',
  UnknownRole: 'unknown_role',
  Blocked: 'blocked',
  RoomFull: 'room_full',
  ConnectionType: 'connection_type',
  NotReady: 'not_ready',
  Internal: 'internal',
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

/** Thrown inside the callout to refuse a connection for a known reason. */
export class Rejection extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'Rejection';
  }
}
