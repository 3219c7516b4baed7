/**
 * Why the callout refused a connection. Reasons are metric labels and log fields; they never
 * reach the client, which only sees "Authorization Violation".
 */
export const RejectReason = {
  /** Plaintext request to a callout configured with an xkey. */
  RequestNotEncrypted: 'request_not_encrypted',
  /** Sealed request to a callout configured without an xkey. */
  RequestEncrypted: 'request_encrypted',
  /** Sealed to another key, or not a valid box. */
  DecryptFailed: 'decrypt_failed',
  /** The `Nats-Server-Xkey` header differs from the `server_id.xkey` the server signed. */
  XkeyMismatch: 'xkey_mismatch',
  /** The request JWT's signature does not verify against its `iss`. */
  RequestBadSignature: 'request_bad_signature',
  /** Signed by a key other than the server it names (`iss` ≠ `server_id.id`). */
  RequestWrongServer: 'request_wrong_server',
  /** `aud` is not `nats-authorization-request`. */
  RequestWrongAudience: 'request_wrong_audience',
  /** `sub` is not this callout's issuer key. */
  RequestWrongSubject: 'request_wrong_subject',
  /** `exp` has passed. */
  RequestExpired: 'request_expired',
  /** Anything else malformed about the server's request. */
  BadRequest: 'bad_request',
  NoToken: 'no_token',
  TokenTooLarge: 'token_too_large',
  TokenMalformed: 'token_malformed',
  TokenExpired: 'token_expired',
  TokenNotYetValid: 'token_not_yet_valid',
  /** `iat` later than now plus the clock-skew leeway: a clock far off, or a token minted ahead. */
  TokenIssuedInFuture: 'token_issued_in_future',
  /** A display name (`name`) longer than `MAX_NAME_LENGTH`, which Torii could never renew. */
  TokenNameTooLong: 'token_name_too_long',
  TokenBadSignature: 'token_bad_signature',
  TokenWrongIssuer: 'token_wrong_issuer',
  TokenWrongAudience: 'token_wrong_audience',
  TokenBadAlgorithm: 'token_bad_algorithm',
  TokenMissingClaim: 'token_missing_claim',
  TokenKeyUnavailable: 'token_key_unavailable',
  InvalidId: 'invalid_id',
  /** The connection name has the device prefix but not a valid device id. */
  InvalidDevice: 'invalid_device',
  UnknownRoom: 'unknown_room',
  UnknownRole: 'unknown_role',
  Blocked: 'blocked',
  RoomFull: 'room_full',
  /** The user already has `--max-connections-per-user` live connections to the room. */
  TooManyConnections: 'too_many_connections',
  /** The room's seat ledger holds its most claims that presence has not confirmed yet. */
  SeatClaimsFull: 'seat_claims_full',
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
