/**
 * Key material of a Torii installation, kept as files in one folder (`--keys-dir`):
 * the callout's issuer account nkey, its xkey (curve key for encrypted callout requests), the
 * room-token signing key (Ed25519 JWK, or an HS256 secret for development), and the passwords
 * of the three service users that bypass the callout. Secrets are written with mode 0600.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createAccount, createCurve, fromCurveSeed, fromSeed } from '@nats-io/nkeys';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { ConfigError } from '../protocol/errors.js';

/** File names inside the keys folder. */
export const KeyFile = {
  /** Account nkey seed (`SA…`) that signs NATS user JWTs; its public key is `auth_callout.issuer`. */
  IssuerSeed: 'issuer.nk',
  IssuerPublic: 'issuer.pub',
  /** Curve seed (`SX…`) for encrypted callout requests; its public key is `auth_callout.xkey`. */
  XkeySeed: 'xkey.nk',
  XkeyPublic: 'xkey.pub',
  /** Private Ed25519 JWK that signs room access tokens. */
  TokenSigningJwk: 'token-signing.jwk',
  /** Public JWKS for verifiers of room access tokens. */
  TokenJwks: 'token-jwks.json',
  /** HS256 shared secret (development only), instead of the JWK pair. */
  TokenSecret: 'token-secret',
  /** Password of the callout's user in the AUTH account. */
  AuthPassword: 'auth-user.password',
  /** Password of the service user (controller, workers) in the APP account. */
  ServicePassword: 'service-user.password',
  /** Password of the system-account user (presence, kick). */
  SystemPassword: 'system-user.password',
} as const;
export type KeyFile = (typeof KeyFile)[keyof typeof KeyFile];

/** Mode of files holding secrets. */
export const SECRET_FILE_MODE = 0o600;
/** Mode of files holding public keys. */
const PUBLIC_FILE_MODE = 0o644;
/** Bytes of randomness in generated passwords and HS256 secrets. */
const SECRET_BYTES = 32;

/** Options of {@link generateKeys}. */
interface GenerateKeysOptions {
  /** Write an HS256 shared secret instead of an Ed25519 signing key. Default false. */
  hs256?: boolean;
  /** Overwrite existing files. Default false: existing keys are never silently replaced. */
  force?: boolean;
}

/** What {@link generateKeys} wrote: public values only. */
interface GeneratedKeys {
  dir: string;
  issuerPublicKey: string;
  xkeyPublicKey: string;
  tokenAlgorithm: 'EdDSA' | 'HS256';
  /** `kid` of the Ed25519 signing key; undefined for HS256. */
  tokenKeyId: string | undefined;
  files: string[];
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function writeKeyFile(file: string, content: string, mode: number): Promise<void> {
  await writeFile(file, content, { mode });
  await chmod(file, mode); // an existing file keeps its old mode on write; force ours
}

const randomSecret = (): string => randomBytes(SECRET_BYTES).toString('base64url');

/**
 * A service-user password: a letter, then hex. nats-server parses `$VAR` references as config
 * values, not strings, so a password that starts with '-' or a digit (as 1 in 40 base64url ones
 * do) breaks a config that takes it from the environment (the official NATS chart does).
 */
export const randomPassword = (): string => `t${randomBytes(SECRET_BYTES).toString('hex')}`;

/**
 * Generates a complete key set into `dir` (created with mode 0700 when missing).
 * @throws ConfigError naming `--out` when a key file exists and `force` is not set
 */
export async function generateKeys(
  dir: string,
  options: GenerateKeysOptions = {},
): Promise<GeneratedKeys> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const all = Object.values(KeyFile).map((f) => path.join(dir, f));
  if (!options.force) {
    const present = [];
    for (const f of all) if (await exists(f)) present.push(path.basename(f));
    if (present.length > 0) {
      throw new ConfigError(
        `--out: ${dir} already holds keys (${present.join(', ')}); use --force to replace them`,
        { flag: '--out' },
      );
    }
  }

  const issuer = createAccount();
  const xkey = createCurve();
  const dec = new TextDecoder();
  const written: string[] = [];
  const put = async (name: KeyFile, content: string, mode: number): Promise<void> => {
    await writeKeyFile(path.join(dir, name), content, mode);
    written.push(name);
  };

  await put(KeyFile.IssuerSeed, dec.decode(issuer.getSeed()) + '\n', SECRET_FILE_MODE);
  await put(KeyFile.IssuerPublic, issuer.getPublicKey() + '\n', PUBLIC_FILE_MODE);
  await put(KeyFile.XkeySeed, dec.decode(xkey.getSeed()) + '\n', SECRET_FILE_MODE);
  await put(KeyFile.XkeyPublic, xkey.getPublicKey() + '\n', PUBLIC_FILE_MODE);

  let tokenKeyId: string | undefined;
  if (options.hs256) {
    await put(KeyFile.TokenSecret, randomSecret() + '\n', SECRET_FILE_MODE);
  } else {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', {
      crv: 'Ed25519',
      extractable: true,
    });
    const pub = await exportJWK(publicKey);
    tokenKeyId = await calculateJwkThumbprint(pub);
    const meta = { kid: tokenKeyId, alg: 'EdDSA', use: 'sig' };
    const priv: JWK = { ...(await exportJWK(privateKey)), ...meta };
    await put(KeyFile.TokenSigningJwk, JSON.stringify(priv, null, 2) + '\n', SECRET_FILE_MODE);
    await put(
      KeyFile.TokenJwks,
      JSON.stringify({ keys: [{ ...pub, ...meta }] }, null, 2) + '\n',
      PUBLIC_FILE_MODE,
    );
  }
  await put(KeyFile.AuthPassword, randomPassword() + '\n', SECRET_FILE_MODE);
  await put(KeyFile.ServicePassword, randomPassword() + '\n', SECRET_FILE_MODE);
  await put(KeyFile.SystemPassword, randomPassword() + '\n', SECRET_FILE_MODE);

  return {
    dir,
    issuerPublicKey: issuer.getPublicKey(),
    xkeyPublicKey: xkey.getPublicKey(),
    tokenAlgorithm: options.hs256 ? 'HS256' : 'EdDSA',
    tokenKeyId,
    files: written,
  };
}

/** Reads one key file, trimmed. */
export async function readKeyFile(
  dir: string,
  name: KeyFile,
  flag = '--keys-dir',
): Promise<string> {
  const file = path.join(dir, name);
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text.length === 0) throw new Error('file is empty');
    return text;
  } catch (e) {
    const reason =
      (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message;
    throw new ConfigError(
      `${flag}: cannot read ${file}: ${reason} (create keys with 'torii keys generate --out ${dir}')`,
      { flag, cause: e },
    );
  }
}

/** Reads a key file if present. */
export async function readOptionalKeyFile(dir: string, name: KeyFile): Promise<string | undefined> {
  const file = path.join(dir, name);
  return (await exists(file)) ? (await readFile(file, 'utf8')).trim() : undefined;
}

/** Public values and service passwords needed to render a nats-server config. */
export interface ServerKeys {
  issuerPublicKey: string;
  xkeyPublicKey: string;
  authPassword: string;
  servicePassword: string;
  systemPassword: string;
}

/**
 * Loads what `torii nats-config` needs from a keys folder, checking that the seeds and public
 * keys agree (a mismatched pair would make every connection fail at run time).
 */
export async function loadServerKeys(dir: string, flag = '--keys-dir'): Promise<ServerKeys> {
  const enc = new TextEncoder();
  const issuerSeed = await readKeyFile(dir, KeyFile.IssuerSeed, flag);
  const xkeySeed = await readKeyFile(dir, KeyFile.XkeySeed, flag);
  let issuerPublicKey: string;
  let xkeyPublicKey: string;
  try {
    issuerPublicKey = fromSeed(enc.encode(issuerSeed)).getPublicKey();
  } catch (e) {
    throw new ConfigError(`${flag}: ${KeyFile.IssuerSeed} is not an nkey seed`, { flag, cause: e });
  }
  if (!issuerPublicKey.startsWith('A')) {
    throw new ConfigError(`${flag}: ${KeyFile.IssuerSeed} must be an account seed (SA…)`, { flag });
  }
  try {
    xkeyPublicKey = fromCurveSeed(enc.encode(xkeySeed)).getPublicKey();
  } catch (e) {
    throw new ConfigError(`${flag}: ${KeyFile.XkeySeed} is not a curve (xkey) seed (SX…)`, {
      flag,
      cause: e,
    });
  }
  return {
    issuerPublicKey,
    xkeyPublicKey,
    authPassword: await readKeyFile(dir, KeyFile.AuthPassword, flag),
    servicePassword: await readKeyFile(dir, KeyFile.ServicePassword, flag),
    systemPassword: await readKeyFile(dir, KeyFile.SystemPassword, flag),
  };
}
