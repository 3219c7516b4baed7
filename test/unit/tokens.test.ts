import { decodeJwt, exportJWK, generateKeyPair, jwtVerify, type CryptoKey } from 'jose';
import { checkRoomTokenClaims, mintRoomToken, type TokenSigner } from '../../src/infra/tokens.js';
import { ValidationError } from '../../src/protocol/errors.js';

describe('room tokens', () => {
  let signer: TokenSigner;
  let verifyKey: CryptoKey;
  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', {
      crv: 'Ed25519',
      extractable: true,
    });
    signer = { alg: 'EdDSA', key: privateKey, kid: 'k1' };
    verifyKey = publicKey;
    expect((await exportJWK(publicKey)).crv).toBe('Ed25519');
  });

  test('claims follow docs/auth-callout.md, with the injected clock', async () => {
    const now = new Date('2026-01-02T03:04:05Z');
    const token = await mintRoomToken(
      signer,
      { room: 'r1', sub: 'u1', role: 'student', name: 'Hana' },
      { ttlMs: 600_000, now: () => now },
    );
    const claims = decodeJwt(token);
    expect(claims).toEqual({
      iss: 'torii',
      aud: 'torii-nats',
      sub: 'u1',
      room: 'r1',
      role: 'student',
      name: 'Hana',
      iat: now.getTime() / 1000,
      exp: now.getTime() / 1000 + 600,
    });
    await expect(
      jwtVerify(token, verifyKey, { currentDate: now, issuer: 'torii', audience: 'torii-nats' }),
    ).resolves.toBeDefined();
    await expect(
      jwtVerify(token, verifyKey, { currentDate: new Date(now.getTime() + 601_000) }),
    ).rejects.toThrow(/exp/);
  });

  test('issuer and audience are configurable', async () => {
    const token = await mintRoomToken(
      signer,
      { room: 'r1', sub: 'u1', role: 'teacher' },
      { issuer: 'web', audience: 'other' },
    );
    expect(decodeJwt(token)).toMatchObject({ iss: 'web', aud: 'other' });
    expect(decodeJwt(token).name).toBeUndefined();
  });

  test.each([
    [{ room: 'a.b', sub: 'u', role: 'student' }, /^room: invalid roomId/],
    [{ room: 'r', sub: 'u*', role: 'student' }, /^user: invalid userId/],
    [{ room: 'r', sub: 'u', role: 'a b' }, /^role: invalid role/],
    [{ room: 'r', sub: 'u', role: 'student', name: 'x'.repeat(129) }, /^name: at most 128/],
  ])('refuses bad claims %j', async (claims, message) => {
    expect(() => checkRoomTokenClaims(claims)).toThrow(ValidationError);
    await expect(mintRoomToken(signer, claims)).rejects.toThrow(message);
  });

  test('refuses a lifetime outside 10s–7d', async () => {
    await expect(
      mintRoomToken(signer, { room: 'r', sub: 'u', role: 's' }, { ttlMs: 1_000 }),
    ).rejects.toThrow(/ttl/);
    await expect(
      mintRoomToken(signer, { room: 'r', sub: 'u', role: 's' }, { ttlMs: 8 * 86_400_000 }),
    ).rejects.toThrow(/ttl/);
  });
});
