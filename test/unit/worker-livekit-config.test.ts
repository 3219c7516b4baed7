/**
 * The worker's LiveKit flags are checked at start, each refusal naming its flag: the production
 * chart passes them from a Secret, and a mistake there must stop the worker, not surface as
 * media answers no client can use.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  registerWorker,
  liveKitSettings,
  workerConfig,
  type WorkerFlags,
} from '../../src/commands/worker.js';
import { defaultFlags } from '../../src/commands/common.js';
import { generateKeys } from '../../src/infra/keys.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'torii-unit-livekit-'));
const secretFile = (secret: string): string => {
  const f = path.join(dir, `secret-${secret.length}-${Math.random()}`);
  writeFileSync(f, `${secret}\n`);
  return f;
};
const GOOD_SECRET = 'x'.repeat(32);
const flags = (o: Partial<WorkerFlags>): WorkerFlags => ({
  ...defaultFlags<WorkerFlags>(registerWorker, 'worker'),
  livekitUrl: 'wss://media.example.com',
  livekitApiKey: 'APIabc',
  livekitApiSecretFile: secretFile(GOOD_SECRET),
  ...o,
});

describe('worker LiveKit settings', () => {
  test('none given: no media', async () => {
    const f = defaultFlags<WorkerFlags>(registerWorker, 'worker');
    await expect(liveKitSettings(f)).resolves.toBeUndefined();
  });

  test('all three given: the secret is read from its file', async () => {
    await expect(liveKitSettings(flags({}))).resolves.toEqual({
      url: 'wss://media.example.com',
      apiKey: 'APIabc',
      apiSecret: GOOD_SECRET,
      ttlSeconds: 7200,
    });
  });

  test('plain ws:// is fine to this machine', async () => {
    await expect(
      liveKitSettings(flags({ livekitUrl: 'ws://127.0.0.1:7880' })),
    ).resolves.toMatchObject({ url: 'ws://127.0.0.1:7880' });
  });

  test.each([
    [
      'only a URL',
      { livekitApiKey: undefined, livekitApiSecretFile: undefined },
      /--livekit-url \(TORII_LIVEKIT_URL\): media needs/,
    ],
    [
      'an empty key (an empty Secret value)',
      { livekitApiKey: '' },
      /media needs --livekit-url, --livekit-api-key/,
    ],
    ['not a URL', { livekitUrl: 'media.example.com' }, /--livekit-url .*is not a URL/],
    ['another scheme', { livekitUrl: 'ftp://media.example.com' }, /not a ws:\/\/, wss:\/\//],
    [
      'plain text to another host',
      { livekitUrl: 'ws://media.example.com' },
      /unencrypted; use wss:\/\//,
    ],
    ['a key with a space', { livekitApiKey: 'API abc' }, /--livekit-api-key .*no spaces/],
    [
      'a missing secret file',
      { livekitApiSecretFile: path.join(dir, 'nope') },
      /--livekit-api-secret-file .*cannot read .*ENOENT/,
    ],
    [
      'a short secret',
      { livekitApiSecretFile: secretFile('short') },
      /has 5 characters; LiveKit needs at least 32/,
    ],
    ["LiveKit's public dev key", { livekitApiKey: 'devkey' }, /public development pair/],
    [
      "LiveKit's public dev secret",
      { livekitApiSecretFile: secretFile('secret') },
      /public development pair/,
    ],
    ['a media token TTL of 1s', { mediaTokenTtl: 1_000 }, /--media-token-ttl .*10s to 24h/],
  ] as [string, Partial<WorkerFlags>, RegExp][])('refused: %s', async (_what, o, message) => {
    await expect(liveKitSettings(flags(o))).rejects.toThrow(message);
  });
});

describe('worker --block-ttl', () => {
  const keysDir = path.join(dir, 'keys');
  beforeAll(() => generateKeys(keysDir));
  const base = (): WorkerFlags => ({
    ...defaultFlags<WorkerFlags>(registerWorker, 'worker'),
    keysDir,
  });

  test.each([
    ['no block at all', 0],
    ['past the longest block a kick may set (a year)', 366 * 86_400_000],
  ])('refuses %s, naming the flag', async (_w, blockTtl) => {
    await expect(workerConfig({ ...base(), blockTtl })).rejects.toThrow(
      /--block-ttl \(TORII_BLOCK_TTL\): 1s to 365d/,
    );
  });

  test('takes a year', async () => {
    await expect(workerConfig({ ...base(), blockTtl: 365 * 86_400_000 })).resolves.toMatchObject({
      blockTtlMs: 365 * 86_400_000,
    });
  });
});
