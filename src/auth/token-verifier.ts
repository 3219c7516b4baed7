/**
 * Verifies room access tokens (docs/auth-callout.md) with jose. Key sources, in order: a JWKS URL (cached,
 * refetched on an unknown `kid`), a public key file (PEM, JWK or JWKS), an HS256 secret file, or
 * the keys folder of `torii keys generate`. Algorithms are pinned to the key source, so `alg: none`
 * and algorithm confusion (an HS256 token "signed" with a public key) are always refused.
 */
import { REQUIRED_ROOM_TOKEN_CLAIMS } from '../protocol/claims.js';
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors as joseErrors,
  importJWK,
  jwtVerify,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  type KeyObject,
} from 'jose';
import { TrustedCache } from '../domain/trusted-cache.js';
import { ConfigError } from '../protocol/errors.js';
import { KeyFile } from '../infra/keys.js';
import { displayNameProblem } from '../infra/tokens.js';
import { RejectReason, Rejection } from './rejection.js';

/** Longest accepted token, in bytes: a real token is well under 2 KiB. */
export const MAX_TOKEN_BYTES = 8 * 1024;
/** Largest clock skew the verifier tolerates, in milliseconds (docs/auth-callout.md). */
export const MAX_CLOCK_SKEW_MS = 30_000;
/** How long fetched JWKS are cached, in milliseconds. */
const JWKS_CACHE_MAX_AGE_MS = 10 * 60_000;
/** Least time between two JWKS fetches on unknown `kid`s, in milliseconds. */
const JWKS_COOLDOWN_MS = 30_000;
/**
 * How long a verified token is remembered, in milliseconds. A reconnect storm presents the same
 * tokens again; re-verifying each costs a signature check. Bounded so that a key removed from the
 * JWKS stops admitting its tokens soon after (the JWKS itself is cached longer).
 */
export const VERIFIED_TOKEN_CACHE_TTL_MS = 5 * 60_000;
/** Bound on remembered tokens. */
const VERIFIED_TOKEN_CACHE_SIZE = 20_000;

const ASYMMETRIC_ALGS = ['EdDSA', 'ES256', 'RS256'];
const SYMMETRIC_ALGS = ['HS256'];

/** Where the verification key comes from. Exactly one source is used. */
interface TokenKeySource {
  jwksUrl?: string;
  publicKeyFile?: string;
  secretFile?: string;
  /** Fallback: `token-jwks.json` or `token-secret` in this folder. */
  keysDir?: string;
}

export interface TokenVerifierOptions extends TokenKeySource {
  issuer: string;
  audience: string;
  clockSkewMs: number;
  /** Least time between JWKS fetches; default {@link JWKS_COOLDOWN_MS}. */
  jwksCooldownMs?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

/** The claims Torii uses from a verified room token. */
export interface RoomToken {
  userId: string;
  roomId: string;
  role: string;
  name: string | undefined;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

type Key = JWTVerifyGetKey | KeyObject | Uint8Array;

/** Verifies room tokens against one key source. */
export class TokenVerifier {
  /** Tokens verified, trusted until they expire or the TTL passes; ~0.7 KB each. */
  private readonly verified: TrustedCache<string, RoomToken>;

  private constructor(
    private readonly key: Key,
    private readonly algorithms: string[],
    private readonly o: TokenVerifierOptions,
    /** Human-readable description of the key source, for logs. */
    readonly source: string,
  ) {
    this.verified = new TrustedCache({
      maxEntries: VERIFIED_TOKEN_CACHE_SIZE,
      now: () => this.nowMs(),
    });
  }

  private nowMs(): number {
    return (this.o.now?.() ?? new Date()).getTime();
  }

  /**
   * Builds a verifier from the configured source.
   * @throws ConfigError naming the flag when no source is usable
   */
  static async create(o: TokenVerifierOptions): Promise<TokenVerifier> {
    if (o.clockSkewMs < 0 || o.clockSkewMs > MAX_CLOCK_SKEW_MS) {
      throw new ConfigError(`--clock-skew: at most 30s (got ${o.clockSkewMs} ms)`, {
        flag: '--clock-skew',
      });
    }
    const sources = [o.jwksUrl, o.publicKeyFile, o.secretFile].filter((s) => s !== undefined);
    if (sources.length > 1) {
      throw new ConfigError(
        '--token-jwks-url, --token-public-key-file and --token-secret-file exclude each other',
        {
          flag: '--token-jwks-url',
        },
      );
    }
    if (o.jwksUrl) {
      let url: URL;
      try {
        url = new URL(o.jwksUrl);
      } catch (e) {
        throw new ConfigError(`--token-jwks-url: not a URL: ${o.jwksUrl}`, {
          flag: '--token-jwks-url',
          cause: e,
        });
      }
      if (
        url.protocol !== 'https:' &&
        !['localhost', '127.0.0.1', '[::1]'].includes(url.hostname)
      ) {
        throw new ConfigError('--token-jwks-url: must be https (plain http only on localhost)', {
          flag: '--token-jwks-url',
        });
      }
      const remote = createRemoteJWKSet(url, {
        cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
        cooldownDuration: o.jwksCooldownMs ?? JWKS_COOLDOWN_MS,
      });
      // The workers sign renewed tokens (REQ_RENEW_WAJLC_TOKEN, torii.tokens.issue) with Torii's
      // own key: when its public JWKS is in the keys folder, those kids are accepted too.
      const ownFile = o.keysDir ? path.join(o.keysDir, KeyFile.TokenJwks) : undefined;
      const own = ownFile ? await TokenVerifier.readOwnJwks(ownFile) : undefined;
      if (!own || !ownFile)
        return new TokenVerifier(remote, ASYMMETRIC_ALGS, o, `jwks-url ${url.href}`);
      const ownKids = new Set(own.keys.map((k) => k.kid).filter((k) => k !== undefined));
      const local = createLocalJWKSet(own);
      const either: JWTVerifyGetKey = (header, token) =>
        header.kid !== undefined && ownKids.has(header.kid)
          ? local(header, token)
          : remote(header, token);
      return new TokenVerifier(
        either,
        ASYMMETRIC_ALGS,
        o,
        `jwks-url ${url.href} + jwks-file ${ownFile}`,
      );
    }
    if (o.publicKeyFile)
      return TokenVerifier.fromPublicKeyFile(o.publicKeyFile, '--token-public-key-file', o);
    if (o.secretFile) return TokenVerifier.fromSecretFile(o.secretFile, '--token-secret-file', o);
    if (o.keysDir) {
      const jwks = path.join(o.keysDir, KeyFile.TokenJwks);
      const secret = path.join(o.keysDir, KeyFile.TokenSecret);
      try {
        return await TokenVerifier.fromPublicKeyFile(jwks, '--keys-dir', o);
      } catch (e) {
        if ((e as { cause?: { code?: string } }).cause?.code !== 'ENOENT') throw e;
      }
      return TokenVerifier.fromSecretFile(secret, '--keys-dir', o);
    }
    throw new ConfigError(
      'no room-token verification key: set --token-jwks-url, --token-public-key-file, --token-secret-file or --keys-dir',
      {
        flag: '--token-jwks-url',
      },
    );
  }

  /** Torii's own public JWKS, if the keys folder has one (only keys with a kid count). */
  private static async readOwnJwks(file: string): Promise<JSONWebKeySet | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ConfigError(`--keys-dir: cannot read ${file}: ${(e as Error).message}`, {
        flag: '--keys-dir',
        cause: e,
      });
    }
    try {
      const jwks = JSON.parse(text) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error('no "keys" array');
      if (jwks.keys.some((k) => 'd' in k || k.kty === 'oct'))
        throw new Error('the JWKS holds private or symmetric keys');
      const keys = jwks.keys.filter((k) => typeof k.kid === 'string');
      return keys.length ? { keys } : undefined;
    } catch (e) {
      throw new ConfigError(`--keys-dir: ${file} is not a usable JWKS: ${(e as Error).message}`, {
        flag: '--keys-dir',
        cause: e,
      });
    }
  }

  private static async read(file: string, flag: string): Promise<string> {
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch (e) {
      throw new ConfigError(`${flag}: cannot read ${file}: ${(e as Error).message}`, {
        flag,
        cause: e,
      });
    }
  }

  private static async fromPublicKeyFile(
    file: string,
    flag: string,
    o: TokenVerifierOptions,
  ): Promise<TokenVerifier> {
    const text = await TokenVerifier.read(file, flag);
    try {
      if (text.startsWith('{')) {
        const parsed = JSON.parse(text) as JSONWebKeySet | JWK;
        if ('keys' in parsed) {
          if (parsed.keys.some((k) => 'd' in k || k.kty === 'oct'))
            throw new Error('the JWKS holds private or symmetric keys');
          return new TokenVerifier(
            createLocalJWKSet(parsed),
            ASYMMETRIC_ALGS,
            o,
            `jwks-file ${file}`,
          );
        }
        if ('d' in parsed || parsed.kty === 'oct')
          throw new Error('the JWK is private or symmetric');
        const alg =
          parsed.alg ?? (parsed.kty === 'OKP' ? 'EdDSA' : parsed.kty === 'EC' ? 'ES256' : 'RS256');
        return new TokenVerifier(await importJWK(parsed, alg), [alg], o, `jwk-file ${file}`);
      }
      const key = createPublicKey(text);
      const algs: Record<string, string> = { ed25519: 'EdDSA', ec: 'ES256', rsa: 'RS256' };
      const alg = algs[key.asymmetricKeyType ?? ''];
      if (!alg) throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
      return new TokenVerifier(key, [alg], o, `pem-file ${file}`);
    } catch (e) {
      throw new ConfigError(
        `${flag}: ${file} is not a usable public key: ${(e as Error).message}`,
        { flag, cause: e },
      );
    }
  }

  private static async fromSecretFile(
    file: string,
    flag: string,
    o: TokenVerifierOptions,
  ): Promise<TokenVerifier> {
    const text = await TokenVerifier.read(file, flag);
    if (text.length < 32)
      throw new ConfigError(`${flag}: the HS256 secret in ${file} is shorter than 32 characters`, {
        flag,
      });
    return new TokenVerifier(
      new TextEncoder().encode(text),
      SYMMETRIC_ALGS,
      o,
      `hs256-secret ${file}`,
    );
  }

  /** Tokens remembered as verified right now. */
  get cachedTokens(): number {
    return this.verified.size;
  }

  /** True when tokens are checked with a shared secret (development setups). */
  get symmetric(): boolean {
    return this.algorithms.includes('HS256');
  }

  /**
   * Verifies a token and returns its claims.
   * @throws Rejection with the precise reason
   */
  async verify(token: string): Promise<RoomToken> {
    if (Buffer.byteLength(token) > MAX_TOKEN_BYTES)
      throw new Rejection(
        RejectReason.TokenTooLarge,
        `token is larger than ${MAX_TOKEN_BYTES} bytes`,
      );
    const hit = this.verified.get(token);
    if (hit) return hit;
    const verified = await this.verifyNow(token);
    this.verified.trustUntil(
      token,
      verified,
      Math.min(verified.exp * 1000, this.nowMs() + VERIFIED_TOKEN_CACHE_TTL_MS),
    );
    return verified;
  }

  private async verifyNow(token: string): Promise<RoomToken> {
    let payload: JWTPayload;
    try {
      const opts = {
        issuer: this.o.issuer,
        audience: this.o.audience,
        algorithms: this.algorithms,
        clockTolerance: Math.floor(this.o.clockSkewMs / 1000),
        requiredClaims: [...REQUIRED_ROOM_TOKEN_CLAIMS],
        ...(this.o.now ? { currentDate: this.o.now() } : {}),
      };
      const res =
        typeof this.key === 'function'
          ? await jwtVerify(token, this.key, opts)
          : await jwtVerify(token, this.key, opts);
      payload = res.payload;
    } catch (e) {
      throw toRejection(e);
    }
    const { sub, room, role, name, exp, iat } = payload as JWTPayload & {
      room?: unknown;
      role?: unknown;
      name?: unknown;
    };
    if (
      typeof sub !== 'string' ||
      typeof room !== 'string' ||
      typeof role !== 'string' ||
      typeof exp !== 'number'
    ) {
      throw new Rejection(RejectReason.TokenMissingClaim, 'sub, room and role must be strings');
    }
    // jose checks `iat` against the clock only with a maximum token age, which Torii does not
    // set (`exp` bounds a token): a token "issued" in the future would pass.
    const nowSec = (this.o.now?.() ?? new Date()).getTime() / 1000;
    if (typeof iat === 'number' && iat > nowSec + this.o.clockSkewMs / 1000)
      throw new Rejection(
        RejectReason.TokenIssuedInFuture,
        `iat ${iat} is more than ${this.o.clockSkewMs / 1000} s ahead of this clock (${Math.floor(nowSec)})`,
      );
    const nameProblem = typeof name === 'string' ? displayNameProblem(name) : undefined;
    if (nameProblem !== undefined) throw new Rejection(RejectReason.TokenNameTooLong, nameProblem);
    return {
      userId: sub,
      roomId: room,
      role,
      name: typeof name === 'string' ? name : undefined,
      exp,
    };
  }
}

function toRejection(e: unknown): Rejection {
  const msg = (e as Error).message;
  if (e instanceof joseErrors.JWTExpired)
    return new Rejection(RejectReason.TokenExpired, msg, { cause: e });
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = e.claim;
    const reason =
      claim === 'nbf' || (claim === 'iat' && e.reason === 'check_failed')
        ? RejectReason.TokenNotYetValid
        : claim === 'iss'
          ? RejectReason.TokenWrongIssuer
          : claim === 'aud'
            ? RejectReason.TokenWrongAudience
            : e.reason === 'missing'
              ? RejectReason.TokenMissingClaim
              : RejectReason.TokenMalformed;
    return new Rejection(reason, `${claim}: ${msg}`, { cause: e });
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed)
    return new Rejection(RejectReason.TokenBadSignature, msg, { cause: e });
  if (e instanceof joseErrors.JOSEAlgNotAllowed || e instanceof joseErrors.JOSENotSupported) {
    return new Rejection(RejectReason.TokenBadAlgorithm, msg, { cause: e });
  }
  if (
    e instanceof joseErrors.JWKSNoMatchingKey ||
    e instanceof joseErrors.JWKSMultipleMatchingKeys
  ) {
    return new Rejection(RejectReason.TokenBadSignature, msg, { cause: e });
  }
  if (e instanceof joseErrors.JWKSTimeout || e instanceof joseErrors.JWKSInvalid) {
    return new Rejection(RejectReason.TokenKeyUnavailable, msg, { cause: e });
  }
  return new Rejection(RejectReason.TokenMalformed, msg, { cause: e });
}
