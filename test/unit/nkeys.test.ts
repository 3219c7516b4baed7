import { createAccount, createCurve, createServer, createUser } from '@nats-io/nkeys';
import { decode as jwtLibDecode, encodeUser } from '@nats-io/jwt';
import {
  decodePublicNKey,
  decodeSeed,
  encodePublicNKey,
  NKeyPrefix,
  NKeySigner,
  verifyNKeySignature,
  XKey,
} from '../../src/infra/nkeys.js';
import { decodeNatsJwt, encodeNatsJwt } from '../../src/infra/natsjwt.js';

const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('nkeys on node:crypto, interoperable with @nats-io/nkeys', () => {
  test('seed → public key and signatures match the reference implementation', () => {
    const kp = createAccount();
    const signer = new NKeySigner(text(kp.getSeed()), NKeyPrefix.Account);
    expect(signer.publicKey).toBe(kp.getPublicKey());
    const data = bytes('hello nats');
    const sig = signer.sign(data);
    expect(kp.verify(data, sig)).toBe(true);
    expect(verifyNKeySignature(kp.getPublicKey(), NKeyPrefix.Account, data, kp.sign(data))).toBe(
      true,
    );
    expect(verifyNKeySignature(kp.getPublicKey(), NKeyPrefix.Account, bytes('tampered'), sig)).toBe(
      false,
    );
  });

  test('public keys round-trip and prefixes and checksums are enforced', () => {
    const server = createServer().getPublicKey();
    const raw = decodePublicNKey(server, NKeyPrefix.Server);
    expect(encodePublicNKey(raw, NKeyPrefix.Server)).toBe(server);
    expect(() => decodePublicNKey(server, NKeyPrefix.Account)).toThrow(/not a A… public nkey/);
    const flipped = server.slice(0, 10) + (server[10] === 'A' ? 'B' : 'A') + server.slice(11);
    expect(() => decodePublicNKey(flipped, NKeyPrefix.Server)).toThrow(/checksum/);
    expect(() => decodePublicNKey('N0O1', NKeyPrefix.Server)).toThrow(/base32/);
    const user = createUser();
    expect(() => decodeSeed(text(user.getSeed()), NKeyPrefix.Account)).toThrow(/not an SA… seed/);
    expect(decodeSeed(text(user.getSeed()), NKeyPrefix.User)).toHaveLength(32);
  });

  test('xkey boxes interoperate with the reference curve implementation both ways', () => {
    const ref = createCurve();
    const ours = new XKey(text(createCurve().getSeed()));
    const refOfOurs = new XKey(text(ref.getSeed()));
    expect(refOfOurs.publicKey).toBe(ref.getPublicKey());

    const sealedByRef = ref.seal(bytes('request'), ours.publicKey);
    expect(text(ours.open(sealedByRef, ref.getPublicKey()) ?? new Uint8Array())).toBe('request');
    const sealedByUs = ours.seal(bytes('response'), ref.getPublicKey());
    expect(text(ref.open(sealedByUs, ours.publicKey) ?? new Uint8Array())).toBe('response');

    // wrong sender, truncated or tampered payloads do not open
    expect(ours.open(sealedByRef, createCurve().getPublicKey())).toBeUndefined();
    expect(ours.open(sealedByRef.subarray(0, 20), ref.getPublicKey())).toBeUndefined();
    const tampered = Uint8Array.from(sealedByRef);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    expect(ours.open(tampered, ref.getPublicKey())).toBeUndefined();
  });
});

describe('NATS JWTs', () => {
  test('our user JWTs decode and verify with @nats-io/jwt', () => {
    const issuer = createAccount();
    const user = createUser();
    const signer = new NKeySigner(text(issuer.getSeed()));
    const token = encodeNatsJwt(
      {
        iss: signer.publicKey,
        sub: user.getPublicKey(),
        aud: 'APP',
        name: 'r/u',
        nats: { type: 'user', version: 2 },
      },
      signer,
    );
    const decoded = jwtLibDecode<{ type: string }>(token);
    expect(decoded.iss).toBe(issuer.getPublicKey());
    expect(decoded.sub).toBe(user.getPublicKey());
    expect(decoded.nats.type).toBe('user');
    expect(decodeNatsJwt(token, NKeyPrefix.Account).name).toBe('r/u');
  });

  test('JWTs from @nats-io/jwt verify; forged or malformed ones do not', async () => {
    const issuer = createAccount();
    const token = await encodeUser('someone', createUser(), issuer);
    expect(decodeNatsJwt(token, NKeyPrefix.Account).iss).toBe(issuer.getPublicKey());

    const [h, p] = token.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, name: 'admin' })).toString('base64url')}.${token.split('.')[2]}`;
    expect(() => decodeNatsJwt(forged, NKeyPrefix.Account)).toThrow(/signature does not verify/);
    expect(() => decodeNatsJwt(token, NKeyPrefix.Server)).toThrow(/not a valid nkey/);
    expect(() => decodeNatsJwt('garbage', NKeyPrefix.Server)).toThrow(/not a JWT/);
    expect(() => decodeNatsJwt('a.b.c', NKeyPrefix.Server)).toThrow(/base64url JSON/);
    const noneAlg = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
    expect(() => decodeNatsJwt(noneAlg, NKeyPrefix.Account)).toThrow(/unsupported JWT alg none/);
  });
});
