/**
 * Room access tokens (the "WAJLC token", docs/auth-callout.md): JWTs that carry the user's room, role
 * and identity. `torii token`, the `torii.tokens.issue` endpoint and token renewal mint them here.
 */
import {
  MAX_NAME_LENGTH,
  MAX_TOKEN_TTL_MS,
  MIN_TOKEN_TTL_MS,
  type RoomTokenClaims,
} from '../protocol/claims.js';
import { importJWK, SignJWT, type CryptoKey, type JWK, type KeyObject } from 'jose';
import { ConfigError, ValidationError } from '../protocol/errors.js';
import { checkRoomId, checkUserId, ID_PATTERN } from '../protocol/ids.js';
import { KeyFile, readOptionalKeyFile } from './keys.js';

/** Default `iss` of room tokens. */
export const DEFAULT_TOKEN_ISSUER = 'torii';
/** Default `aud` of room tokens. */
export const DEFAULT_TOKEN_AUDIENCE = 'torii-nats';
/** Default token lifetime: 1 hour, in milliseconds. */
export const DEFAULT_TOKEN_TTL_MS = 3_600_000;

/** The reason a display name cannot be carried, or undefined when it can. */
export function displayNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'name: a string';
  if (name.length > MAX_NAME_LENGTH) return `name: at most ${MAX_NAME_LENGTH} characters`;
  return undefined;
}

/** Roles every Room defines unless it overrides them. */
export const DEFAULT_ROLES = ['teacher', 'student', 'observer'] as const;

/** A key that signs room tokens. */
export interface TokenSigner {
  alg: 'EdDSA' | 'HS256';
  key: CryptoKey | KeyObject | Uint8Array;
  kid?: string;
}

/** Options of {@link mintRoomToken}. */
export interface MintOptions {
  ttlMs?: number;
  issuer?: string;
  audience?: string;
  /** Clock, for tests. */
  now?: () => Date;
}

/** Checks the claims a token will carry; throws {@link ValidationError} naming the field. */
export function checkRoomTokenClaims(c: RoomTokenClaims): RoomTokenClaims {
  checkRoomId(c.room, 'room');
  checkUserId(c.sub, 'user');
  if (typeof c.role !== 'string' || !ID_PATTERN.test(c.role)) {
    throw new ValidationError(
      `role: invalid role ${JSON.stringify(c.role)}: use letters, digits, '_' or '-'`,
      {
        field: 'role',
      },
    );
  }
  const nameProblem = c.name === undefined ? undefined : displayNameProblem(c.name);
  if (nameProblem !== undefined) throw new ValidationError(nameProblem, { field: 'name' });
  return c;
}

/** Signs a room access token. */
export async function mintRoomToken(
  signer: TokenSigner,
  claims: RoomTokenClaims,
  o: MintOptions = {},
): Promise<string> {
  checkRoomTokenClaims(claims);
  const ttlMs = o.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
  if (ttlMs < MIN_TOKEN_TTL_MS || ttlMs > MAX_TOKEN_TTL_MS) {
    throw new ValidationError(`ttl: must be between 10s and 7d`, { field: 'ttl' });
  }
  const nowSec = Math.floor((o.now?.() ?? new Date()).getTime() / 1000);
  const payload: Record<string, string> = { room: claims.room, role: claims.role };
  if (claims.name !== undefined) payload.name = claims.name;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: signer.alg, typ: 'JWT', ...(signer.kid ? { kid: signer.kid } : {}) })
    .setIssuer(o.issuer ?? DEFAULT_TOKEN_ISSUER)
    .setAudience(o.audience ?? DEFAULT_TOKEN_AUDIENCE)
    .setSubject(claims.sub)
    .setIssuedAt(nowSec)
    .setExpirationTime(nowSec + Math.ceil(ttlMs / 1000))
    .sign(signer.key);
}

/**
 * Loads the token signing key from a keys folder: the Ed25519 JWK, or the HS256 secret.
 * @throws ConfigError naming `flag` when neither exists or the key is unusable
 */
export async function loadTokenSigner(dir: string, flag = '--keys-dir'): Promise<TokenSigner> {
  const jwkText = await readOptionalKeyFile(dir, KeyFile.TokenSigningJwk);
  if (jwkText !== undefined) {
    try {
      const jwk = JSON.parse(jwkText) as JWK;
      if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.d)
        throw new Error('not a private Ed25519 JWK');
      return {
        alg: 'EdDSA',
        key: await importJWK(jwk, 'EdDSA'),
        ...(jwk.kid ? { kid: jwk.kid } : {}),
      };
    } catch (e) {
      throw new ConfigError(
        `${flag}: ${KeyFile.TokenSigningJwk} is unusable: ${(e as Error).message}`,
        {
          flag,
          cause: e,
        },
      );
    }
  }
  const secret = await readOptionalKeyFile(dir, KeyFile.TokenSecret);
  if (secret !== undefined) {
    if (secret.length < 32) {
      throw new ConfigError(`${flag}: ${KeyFile.TokenSecret} is shorter than 32 characters`, {
        flag,
      });
    }
    return { alg: 'HS256', key: new TextEncoder().encode(secret) };
  }
  throw new ConfigError(
    `${flag}: no token signing key in ${dir} (${KeyFile.TokenSigningJwk} or ${KeyFile.TokenSecret}); create one with 'torii keys generate --out ${dir}'`,
    { flag },
  );
}
