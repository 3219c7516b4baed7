import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
} from 'jose';
import { generateKeys } from '../../src/infra/keys.js';
import { loadTokenSigner, mintRoomToken } from '../../src/infra/tokens.js';
import { MAX_NAME_LENGTH } from '../../src/protocol/claims.js';
import {
  TokenVerifier,
  MAX_TOKEN_BYTES,
  VERIFIED_TOKEN_CACHE_TTL_MS,
} from '../../src/auth/token-verifier.js';
import { Rejection } from '../../src/auth/rejection.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { waitFor } from '../helpers/procs.js';

const base = { issuer: 'torii', audience: 'torii-nats', clockSkewMs: 30_000 };
const claims = { sub: 'hana', room: 'n5', role: 'student' };
const dir = mkdtempSync(path.join(os.tmpdir(), 'torii-unit-verifier-'));

async function keyPair(
  alg: 'EdDSA' | 'ES256' | 'RS256',
  kid: string,
): Promise<{ priv: CryptoKey; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { priv: privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function sign(
  key: CryptoKey | Uint8Array,
  alg: string,
  kid?: string,
  overrides: Partial<{ exp: number; iat: number; name: string }> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    ...claims,
    ...(overrides.name !== undefined ? { name: overrides.name } : {}),
  })
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
    .setIssuer('torii')
    .setAudience('torii-nats')
    .setIssuedAt(overrides.iat ?? now)
    .setExpirationTime(overrides.exp ?? now + 600)
    .sign(key);
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof Rejection) return e.reason;
    throw e;
  }
  return 'accepted';
}

describe('TokenVerifier key sources', () => {
  test('a JWKS URL is refetched when a token names an unknown kid (key rotation)', async () => {
    const k1 = await keyPair('EdDSA', 'k1');
    const k2 = await keyPair('ES256', 'k2');
    let keys = [k1.jwk];
    let fetches = 0;
    const server = http.createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      const v = await TokenVerifier.create({ ...base, jwksUrl: url, jwksCooldownMs: 100 });
      expect((await v.verify(await sign(k1.priv, 'EdDSA', 'k1'))).userId).toBe('hana');
      expect(fetches).toBe(1);
      keys = [k1.jwk, k2.jwk]; // the issuer rotates in a new key
      const t2 = await sign(k2.priv, 'ES256', 'k2');
      // within the cooldown an unknown kid does not trigger a fetch (no fetch storms)...
      expect(await reason(v.verify(t2))).toBe('token_bad_signature');
      expect(fetches).toBe(1);
      // ...after it, the unknown kid is fetched and the token accepted
      await waitFor('rotated key fetched', async () => (await reason(v.verify(t2))) === 'accepted');
      expect(fetches).toBe(2);
    } finally {
      server.close();
    }
  });

  test("with a JWKS URL, tokens the workers renew (Torii's own key in the keys folder) are accepted too", async () => {
    const backend = await keyPair('EdDSA', 'backend-1');
    const server = http.createServer((_req, res) => {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: [backend.jwk] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const keysDir = path.join(dir, 'own-keys');
      await generateKeys(keysDir);
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      const v = await TokenVerifier.create({ ...base, jwksUrl: url, keysDir });
      expect(v.source).toMatch(/^jwks-url .* \+ jwks-file .*token-jwks\.json$/);
      // the web backend's token
      expect(await reason(v.verify(await sign(backend.priv, 'EdDSA', 'backend-1')))).toBe(
        'accepted',
      );
      // a renewal, signed by a worker with token-signing.jwk
      const renewed = await mintRoomToken(await loadTokenSigner(keysDir), {
        room: 'n5',
        sub: 'hana',
        role: 'student',
      });
      expect(await reason(v.verify(renewed))).toBe('accepted');
      // Torii's kid on a token signed with another key is a forgery
      const ownKid = decodeProtectedHeader(renewed).kid as string;
      const forger = await keyPair('EdDSA', ownKid);
      expect(await reason(v.verify(await sign(forger.priv, 'EdDSA', ownKid)))).toBe(
        'token_bad_signature',
      );
      // without the JWKS file in the folder, only the URL counts
      const only = await TokenVerifier.create({
        ...base,
        jwksUrl: url,
        keysDir: path.join(dir, 'no-such'),
      });
      expect(await reason(only.verify(renewed))).not.toBe('accepted');
    } finally {
      server.close();
    }
  });

  test('a plain-http JWKS URL is refused unless it is localhost', async () => {
    await expect(
      TokenVerifier.create({ ...base, jwksUrl: 'http://keys.example.com/jwks' }),
    ).rejects.toThrow(/--token-jwks-url: must be https/);
    await expect(TokenVerifier.create({ ...base, jwksUrl: 'not a url' })).rejects.toThrow(
      ConfigError,
    );
  });

  test('PEM, JWK and JWKS files; the algorithm follows the key', async () => {
    const rsa = await keyPair('RS256', 'r1');
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(path.join(dir, 'ec.pem'), await exportSPKI(publicKey));
    writeFileSync(path.join(dir, 'rsa.jwk'), JSON.stringify(rsa.jwk));
    writeFileSync(path.join(dir, 'rsa.jwks'), JSON.stringify({ keys: [rsa.jwk] }));
    const pem = await TokenVerifier.create({ ...base, publicKeyFile: path.join(dir, 'ec.pem') });
    expect(await reason(pem.verify(await sign(privateKey, 'ES256')))).toBe('accepted');
    expect(await reason(pem.verify(await sign(rsa.priv, 'RS256')))).toBe('token_bad_algorithm');
    const jwk = await TokenVerifier.create({ ...base, publicKeyFile: path.join(dir, 'rsa.jwk') });
    expect(await reason(jwk.verify(await sign(rsa.priv, 'RS256', 'r1')))).toBe('accepted');
    const jwks = await TokenVerifier.create({ ...base, publicKeyFile: path.join(dir, 'rsa.jwks') });
    expect(await reason(jwks.verify(await sign(rsa.priv, 'RS256', 'r1')))).toBe('accepted');
    expect(jwks.symmetric).toBe(false);
  });

  test('private or symmetric keys are refused as verification keys', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    writeFileSync(
      path.join(dir, 'private.jwks'),
      JSON.stringify({ keys: [await exportJWK(privateKey)] }),
    );
    await expect(
      TokenVerifier.create({ ...base, publicKeyFile: path.join(dir, 'private.jwks') }),
    ).rejects.toThrow(/private or symmetric/);
    writeFileSync(path.join(dir, 'oct.jwk'), JSON.stringify({ kty: 'oct', k: 'c2VjcmV0' }));
    await expect(
      TokenVerifier.create({ ...base, publicKeyFile: path.join(dir, 'oct.jwk') }),
    ).rejects.toThrow(/private or symmetric/);
  });

  test('HS256 secrets: short ones refused; an HS256 verifier refuses asymmetric tokens', async () => {
    writeFileSync(path.join(dir, 'short'), 'tooshort');
    await expect(
      TokenVerifier.create({ ...base, secretFile: path.join(dir, 'short') }),
    ).rejects.toThrow(/shorter than 32/);
    const secret = 'x'.repeat(40);
    writeFileSync(path.join(dir, 'secret'), secret);
    const v = await TokenVerifier.create({ ...base, secretFile: path.join(dir, 'secret') });
    expect(v.symmetric).toBe(true);
    expect(await reason(v.verify(await sign(new TextEncoder().encode(secret), 'HS256')))).toBe(
      'accepted',
    );
    const ed = await keyPair('EdDSA', 'k');
    expect(await reason(v.verify(await sign(ed.priv, 'EdDSA', 'k')))).toBe('token_bad_algorithm');
  });

  test('configuration errors name the flag', async () => {
    await expect(
      TokenVerifier.create({ ...base, clockSkewMs: 60_000, keysDir: dir }),
    ).rejects.toThrow(/--clock-skew: at most 30s/);
    await expect(
      TokenVerifier.create({ ...base, publicKeyFile: 'a', secretFile: 'b' }),
    ).rejects.toThrow(/exclude each other/);
    await expect(
      TokenVerifier.create({ ...base, publicKeyFile: path.join(dir, 'missing.pem') }),
    ).rejects.toThrow(/--token-public-key-file: cannot read/);
    await expect(TokenVerifier.create(base)).rejects.toThrow(/no room-token verification key/);
  });
});

describe('TokenVerifier checks', () => {
  let v: TokenVerifier;
  let now = new Date();
  let key: { priv: CryptoKey; jwk: JWK };
  beforeAll(async () => {
    key = await keyPair('EdDSA', 'k');
    writeFileSync(path.join(dir, 'one.jwks'), JSON.stringify({ keys: [key.jwk] }));
    v = await TokenVerifier.create({
      ...base,
      publicKeyFile: path.join(dir, 'one.jwks'),
      now: () => now,
    });
  });

  test('oversized tokens are refused before any parsing', async () => {
    expect(await reason(v.verify('a'.repeat(MAX_TOKEN_BYTES + 1)))).toBe('token_too_large');
  });

  test('clock skew of up to 30 s is tolerated, not more', async () => {
    const t = Math.floor(Date.now() / 1000);
    now = new Date();
    expect(await reason(v.verify(await sign(key.priv, 'EdDSA', 'k', { exp: t - 20 })))).toBe(
      'accepted',
    );
    expect(await reason(v.verify(await sign(key.priv, 'EdDSA', 'k', { exp: t - 40 })))).toBe(
      'token_expired',
    );
  });

  // Failed before: expired entries stayed until 20,000 tokens filled the cache (4 here).
  test(`tokens are forgotten once ${VERIFIED_TOKEN_CACHE_TTL_MS / 60_000} minutes have passed, not only when the cache is full`, async () => {
    const t = Math.floor(Date.now() / 1000);
    now = new Date();
    const fresh = await TokenVerifier.create({
      ...base,
      publicKeyFile: path.join(dir, 'one.jwks'),
      now: () => now,
    });
    // Distinct tokens: distinct expiry times.
    for (const exp of [t + 3600, t + 3601, t + 3602])
      expect(await reason(fresh.verify(await sign(key.priv, 'EdDSA', 'k', { exp })))).toBe(
        'accepted',
      );
    expect(fresh.cachedTokens).toBe(3);
    now = new Date(Date.now() + VERIFIED_TOKEN_CACHE_TTL_MS + 1_000);
    expect(await reason(fresh.verify(await sign(key.priv, 'EdDSA', 'k', { exp: t + 3603 })))).toBe(
      'accepted',
    );
    expect(fresh.cachedTokens).toBe(1);
    now = new Date();
  });

  test('a remembered token is still refused once it expires', async () => {
    const t = Math.floor(Date.now() / 1000);
    now = new Date();
    const token = await sign(key.priv, 'EdDSA', 'k', { exp: t + 60 });
    expect(await reason(v.verify(token))).toBe('accepted');
    expect(await reason(v.verify(token))).toBe('accepted'); // from the cache
    now = new Date(Date.now() + 120_000);
    expect(await reason(v.verify(token))).toBe('token_expired');
    now = new Date();
  });

  // Failed before: admitted; the worker could then never renew it (its minting refuses the name).
  test(`a display name over ${MAX_NAME_LENGTH} characters is refused (token_name_too_long); at the bound it is accepted`, async () => {
    now = new Date();
    const at = await sign(key.priv, 'EdDSA', 'k', { name: 'x'.repeat(MAX_NAME_LENGTH) });
    expect((await v.verify(at)).name).toHaveLength(MAX_NAME_LENGTH);
    const over = await sign(key.priv, 'EdDSA', 'k', { name: 'x'.repeat(300) });
    expect(await reason(v.verify(over))).toBe('token_name_too_long');
    await expect(v.verify(over)).rejects.toThrow(`name: at most ${MAX_NAME_LENGTH} characters`);
  });

  // Failed before: a token issued a year from now was admitted.
  test('a token issued in the future beyond the clock-skew leeway is refused (token_issued_in_future)', async () => {
    const t = Math.floor(Date.now() / 1000);
    now = new Date();
    const year = 365 * 86_400;
    expect(
      await reason(
        v.verify(await sign(key.priv, 'EdDSA', 'k', { iat: t + year, exp: t + year + 600 })),
      ),
    ).toBe('token_issued_in_future');
    expect(
      await reason(v.verify(await sign(key.priv, 'EdDSA', 'k', { iat: t + 40, exp: t + 600 }))),
    ).toBe('token_issued_in_future');
    expect(
      await reason(v.verify(await sign(key.priv, 'EdDSA', 'k', { iat: t + 20, exp: t + 600 }))),
    ).toBe('accepted');
  });
});
