/** `torii keys generate`: the key material of an installation. */
import type { Command } from 'commander';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { opt } from '../runtime/config.js';
import { generateKeys } from '../infra/keys.js';
import { DEFAULT_KEYS_DIR, examples } from './common.js';

interface KeysGenerateOptions {
  out: string;
  hs256?: boolean;
  force?: boolean;
  print?: boolean;
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('manage the keys of a Torii installation');
  const gen = keys
    .command('generate')
    .description(
      'generate the callout issuer account nkey, its xkey, the room-token signing key and the service user passwords (files with mode 0600)',
    )
    .addOption(
      opt<string>('--out <dir>', 'folder to write the keys into', { default: DEFAULT_KEYS_DIR }),
    )
    .addOption(
      opt<boolean>(
        '--hs256',
        'use an HS256 shared secret for room tokens instead of an Ed25519 key (development only)',
      ),
    )
    .addOption(opt<boolean>('--force', 'replace keys that already exist in the folder'))
    .addOption(
      opt<boolean>('--print', 'also print the secrets (seeds, signing key, passwords) to stdout'),
    )
    .action(async (o: KeysGenerateOptions) => {
      const res = await generateKeys(o.out, { hs256: o.hs256 ?? false, force: o.force ?? false });
      const out: Record<string, unknown> = {
        dir: path.resolve(res.dir),
        issuer: res.issuerPublicKey,
        xkey: res.xkeyPublicKey,
        tokenAlgorithm: res.tokenAlgorithm,
        ...(res.tokenKeyId ? { tokenKeyId: res.tokenKeyId } : {}),
        files: res.files,
      };
      if (o.print) {
        const secrets: Record<string, string> = {};
        for (const f of res.files)
          secrets[f] = (await readFile(path.join(res.dir, f), 'utf8')).trim();
        out.secrets = secrets;
      }
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    });
  examples(gen, [
    'torii keys generate',
    'torii keys generate --out /etc/torii/keys',
    'torii keys generate --out dev-keys --hs256 --force',
  ]);
}
