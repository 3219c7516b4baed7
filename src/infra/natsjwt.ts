/**
 * NATS JWTs (`alg: ed25519-nkey`): encoding with a node:crypto signer and decoding with full
 * signature verification. `@nats-io/jwt`'s `decode()` checks signatures but not `exp` or `aud`;
 * callers here check those explicitly.
 */
import { ValidationError } from '../protocol/errors.js';
import {
  randomBytesPooled,
  verifyNKeySignature,
  type NKeyPrefix,
  type NKeySigner,
} from './nkeys.js';

const HEADER = Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' })).toString(
  'base64url',
);

/** `field` of the {@link ValidationError} for a signature that does not verify. */
export const SIGNATURE_FIELD = 'signature';

/** Claims common to every NATS JWT. */
export interface NatsClaims<T> {
  jti: string;
  iat: number;
  iss: string;
  sub: string;
  aud?: string;
  exp?: number;
  name?: string;
  nats: T;
}

/** Signs `claims` (jti and iat are filled in when absent). */
export function encodeNatsJwt<T>(
  claims: Omit<NatsClaims<T>, 'jti' | 'iat'> & { jti?: string; iat?: number },
  signer: NKeySigner,
): string {
  const full = {
    jti: claims.jti ?? Buffer.from(randomBytesPooled(16)).toString('hex').toUpperCase(),
    iat: claims.iat ?? Math.floor(Date.now() / 1000),
    ...claims,
  };
  const payload = Buffer.from(JSON.stringify(full)).toString('base64url');
  const signingInput = `${HEADER}.${payload}`;
  return `${signingInput}.${signer.sign(Buffer.from(signingInput)).toString('base64url')}`;
}

/**
 * Decodes a NATS JWT and verifies that `iss` signed it and is an nkey of the expected kind.
 * @throws ValidationError on any malformation or a bad signature
 */
export function decodeNatsJwt<T>(token: string, issuerPrefix: NKeyPrefix): NatsClaims<T> {
  const parts = token.split('.');
  if (parts.length !== 3) throw new ValidationError('not a JWT');
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: unknown };
  let claims: NatsClaims<T>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { alg?: unknown };
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as NatsClaims<T>;
  } catch (e) {
    throw new ValidationError('JWT is not base64url JSON', { cause: e });
  }
  if (header.alg !== 'ed25519-nkey' && header.alg !== 'ed25519')
    throw new ValidationError(`unsupported JWT alg ${String(header.alg)}`);
  if (typeof claims !== 'object' || claims === null || typeof claims.iss !== 'string') {
    throw new ValidationError('JWT has no issuer');
  }
  let ok = false;
  try {
    ok = verifyNKeySignature(
      claims.iss,
      issuerPrefix,
      Buffer.from(`${h}.${p}`),
      Buffer.from(s, 'base64url'),
    );
  } catch (e) {
    throw new ValidationError('JWT issuer is not a valid nkey', { cause: e });
  }
  if (!ok) throw new ValidationError('JWT signature does not verify', { field: SIGNATURE_FIELD });
  return claims;
}
