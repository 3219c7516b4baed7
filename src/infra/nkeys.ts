/**
 * Fast nkey operations for the callout's hot path. `@nats-io/nkeys` signs in pure JavaScript
 * (about 7 ms a signature on our machines, docs/performance.md); node:crypto does Ed25519 in about
 * 0.04 ms. This module decodes nkey strings (base32 + CRC16) and wraps the raw keys as
 * node:crypto key objects. Curve (xkey) boxes use tweetnacl with precomputed shared keys.
 */
import {
  createPrivateKey,
  createPublicKey,
  randomFillSync,
  sign as edSign,
  verify as edVerify,
  type KeyObject,
} from 'node:crypto';
import nacl from 'tweetnacl';
import { ValidationError } from '../protocol/errors.js';

/** nkey type prefixes (first base32 character of a public key). */
export const NKeyPrefix = {
  Server: 'N',
  Account: 'A',
  User: 'U',
  Operator: 'O',
  Curve: 'X',
} as const;
export type NKeyPrefix = (typeof NKeyPrefix)[keyof typeof NKeyPrefix];

const PREFIX_BYTE: Record<NKeyPrefix, number> = {
  N: 13 << 3,
  A: 0,
  U: 20 << 3,
  O: 14 << 3,
  X: 23 << 3,
};
const SEED_BYTE = 18 << 3; // 'S'
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const B32_INDEX = new Map([...B32].map((c, i) => [c, i]));

function base32Decode(text: string): Uint8Array {
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let bits = 0;
  let value = 0;
  let o = 0;
  for (const c of text) {
    const v = B32_INDEX.get(c);
    if (v === undefined)
      throw new ValidationError(`invalid base32 character ${JSON.stringify(c)} in nkey`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out[o++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return out;
}

function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function decodeChecked(text: string): Uint8Array {
  const raw = base32Decode(text);
  if (raw.length < 4) throw new ValidationError('nkey too short');
  const body = raw.subarray(0, raw.length - 2);
  const want = (raw[raw.length - 2] as number) | ((raw[raw.length - 1] as number) << 8);
  if (crc16(body) !== want) throw new ValidationError('nkey checksum mismatch');
  return body;
}

/** Raw 32-byte public key of an nkey like `N…`, `A…`, `U…` or `X…`; checks prefix and CRC. */
export function decodePublicNKey(key: string, expected: NKeyPrefix): Uint8Array {
  const body = decodeChecked(key);
  if (body.length !== 33 || body[0] !== PREFIX_BYTE[expected]) {
    throw new ValidationError(`not a ${expected}… public nkey`);
  }
  return body.subarray(1);
}

/** Raw 32-byte seed and type of a seed like `SA…` or `SX…`. */
export function decodeSeed(seed: string, expected: NKeyPrefix): Uint8Array {
  const body = decodeChecked(seed.trim());
  if (body.length !== 34) throw new ValidationError('not an nkey seed');
  const b0 = body[0] as number;
  const b1 = body[1] as number;
  const kind = b0 & 0xf8;
  const type = ((b0 & 0x07) << 5) | ((b1 & 0xf8) >> 3);
  if (kind !== SEED_BYTE || type !== PREFIX_BYTE[expected])
    throw new ValidationError(`not an S${expected}… seed`);
  return body.subarray(2);
}

function encodeWithCrc(bytes: Uint8Array): string {
  const crc = crc16(bytes);
  const all = new Uint8Array(bytes.length + 2);
  all.set(bytes);
  all[bytes.length] = crc & 0xff;
  all[bytes.length + 1] = crc >> 8;
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of all) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/** Encodes a raw 32-byte public key as an nkey string. */
export function encodePublicNKey(raw: Uint8Array, prefix: NKeyPrefix): string {
  const bytes = new Uint8Array(33);
  bytes[0] = PREFIX_BYTE[prefix];
  bytes.set(raw, 1);
  return encodeWithCrc(bytes);
}

// DER prefixes of PKCS#8 / SPKI Ed25519 keys; the raw 32 bytes follow.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

/** An Ed25519 signer built from an nkey seed, signing with node:crypto. */
export class NKeySigner {
  readonly publicKey: string;
  private readonly key: KeyObject;

  constructor(seed: string, prefix: NKeyPrefix = NKeyPrefix.Account) {
    const raw = decodeSeed(seed, prefix);
    this.key = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519, raw]),
      format: 'der',
      type: 'pkcs8',
    });
    const spki = createPublicKey(this.key).export({ format: 'der', type: 'spki' });
    this.publicKey = encodePublicNKey(spki.subarray(SPKI_ED25519.length), prefix);
  }

  sign(data: Uint8Array): Buffer {
    return edSign(null, data, this.key);
  }
}

const verifyKeys = new Map<string, KeyObject>();
/** Bound on cached verification keys (one per server in practice). */
const MAX_CACHED_VERIFY_KEYS = 1024;

/** Verifies an Ed25519 signature by the nkey `publicKey`; key objects are cached. */
export function verifyNKeySignature(
  publicKey: string,
  prefix: NKeyPrefix,
  data: Uint8Array,
  sig: Uint8Array,
): boolean {
  // The first character encodes the key type, so a cached key of another type never matches.
  if (!publicKey.startsWith(prefix)) throw new ValidationError(`not a ${prefix}… public nkey`);
  let key = verifyKeys.get(publicKey);
  if (!key) {
    const raw = decodePublicNKey(publicKey, prefix);
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });
    if (verifyKeys.size >= MAX_CACHED_VERIFY_KEYS) verifyKeys.clear();
    verifyKeys.set(publicKey, key);
  }
  return sig.length === 64 && edVerify(null, data, key, sig);
}

/** Bytes drawn from the system's generator at once by {@link randomBytesPooled}. */
const RANDOM_POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolAt = 0;

/**
 * Random bytes from the operating system's generator, drawn 4 KiB at a time: the callout needs
 * 56 a connect (two JWT ids and a nonce), and one call into the generator costs more than the
 * bytes. Each call returns a fresh copy that no later call shares.
 */
export function randomBytesPooled(n: number): Uint8Array {
  if (n > RANDOM_POOL_BYTES) return randomFillSync(new Uint8Array(n));
  if (poolAt + n > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(RANDOM_POOL_BYTES));
    poolAt = 0;
  }
  const out = new Uint8Array(pool.subarray(poolAt, poolAt + n));
  // The pool's bytes are used once: overwritten as they go, so no copy of them stays behind.
  pool.fill(0, poolAt, poolAt + n);
  poolAt += n;
  return out;
}

/** `xkv1`: version header of sealed xkey payloads. */
const XKEY_VERSION = Buffer.from('xkv1');
const NONCE_LEN = nacl.box.nonceLength;

/** True when `payload` is a sealed xkey box (`xkv1` header), whoever it is sealed to. */
export function isSealed(payload: Uint8Array): boolean {
  return (
    payload.length > XKEY_VERSION.length &&
    Buffer.from(payload.buffer, payload.byteOffset, XKEY_VERSION.length).equals(XKEY_VERSION)
  );
}

/**
 * A curve (xkey) key pair that opens and seals NaCl boxes in the nats-server format
 * (`xkv1` + 24-byte nonce + box). Shared keys are precomputed once per peer.
 */
export class XKey {
  readonly publicKey: string;
  private readonly secret: Uint8Array;
  private readonly shared = new Map<string, Uint8Array>();

  constructor(seed: string) {
    this.secret = decodeSeed(seed, NKeyPrefix.Curve);
    this.publicKey = encodePublicNKey(
      nacl.box.keyPair.fromSecretKey(this.secret).publicKey,
      NKeyPrefix.Curve,
    );
  }

  private sharedKey(peer: string): Uint8Array {
    let k = this.shared.get(peer);
    if (!k) {
      k = nacl.box.before(decodePublicNKey(peer, NKeyPrefix.Curve), this.secret);
      if (this.shared.size >= MAX_CACHED_VERIFY_KEYS) this.shared.clear();
      this.shared.set(peer, k);
    }
    return k;
  }

  /** Opens a sealed payload from `sender`; undefined when it is not a valid box for us. */
  open(message: Uint8Array, sender: string): Uint8Array | undefined {
    if (message.length <= XKEY_VERSION.length + NONCE_LEN) return undefined;
    if (!Buffer.from(message.subarray(0, XKEY_VERSION.length)).equals(XKEY_VERSION))
      return undefined;
    const nonce = message.subarray(XKEY_VERSION.length, XKEY_VERSION.length + NONCE_LEN);
    const box = message.subarray(XKEY_VERSION.length + NONCE_LEN);
    return nacl.box.open.after(box, nonce, this.sharedKey(sender)) ?? undefined;
  }

  /** Seals a payload for `recipient`. */
  seal(message: Uint8Array, recipient: string): Uint8Array {
    const nonce = randomBytesPooled(NONCE_LEN);
    const box = nacl.box.after(message, nonce, this.sharedKey(recipient));
    return Buffer.concat([XKEY_VERSION, nonce, box]);
  }
}
