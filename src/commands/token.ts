/** `torii token`: mints a room access token (docs/auth-callout.md). */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { formatDuration, idParser, opt, parseDuration } from '../runtime/config.js';
import { IdKind } from '../protocol/ids.js';
import {
  DEFAULT_ROLES,
  DEFAULT_TOKEN_AUDIENCE,
  DEFAULT_TOKEN_ISSUER,
  DEFAULT_TOKEN_TTL_MS,
  loadTokenSigner,
  mintRoomToken,
} from '../infra/tokens.js';
import { MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS } from '../protocol/claims.js';
import { addKeysDir, examples } from './common.js';

function parseTtl(value: string): number {
  const ms = parseDuration(value);
  if (ms < MIN_TOKEN_TTL_MS || ms > MAX_TOKEN_TTL_MS) {
    throw new InvalidArgumentError(
      `'${value}' is outside ${formatDuration(MIN_TOKEN_TTL_MS)}–${formatDuration(MAX_TOKEN_TTL_MS)}`,
    );
  }
  return ms;
}

interface TokenFlags {
  room: string;
  user: string;
  role: string;
  ttl: number;
  name?: string;
  keysDir: string;
  issuer: string;
  audience: string;
}

export function registerToken(program: Command): void {
  const cmd = program
    .command('token')
    .description('mint a room access token; prints it on stdout')
    .addOption(
      opt<string>('--room <roomId>', 'room id ([A-Za-z0-9_-]{1,64})', {
        parse: idParser(IdKind.Room),
      }).makeOptionMandatory(),
    )
    .addOption(
      opt<string>('--user <userId>', 'user id ([A-Za-z0-9_-]{1,64})', {
        parse: idParser(IdKind.User),
      }).makeOptionMandatory(),
    )
    .addOption(
      opt<string>(
        '--role <role>',
        `role defined by the room (defaults: ${DEFAULT_ROLES.join(', ')})`,
      ).makeOptionMandatory(),
    )
    .addOption(
      opt<number>('--ttl <duration>', 'lifetime, 10s to 7d', {
        default: DEFAULT_TOKEN_TTL_MS,
        defaultDescription: formatDuration(DEFAULT_TOKEN_TTL_MS),
        parse: parseTtl,
      }),
    )
    .addOption(opt<string>('--name <name>', 'display name'))
    .addOption(opt<string>('--issuer <iss>', 'iss claim', { default: DEFAULT_TOKEN_ISSUER }))
    .addOption(opt<string>('--audience <aud>', 'aud claim', { default: DEFAULT_TOKEN_AUDIENCE }));
  addKeysDir(cmd).action(async (f: TokenFlags) => {
    const signer = await loadTokenSigner(f.keysDir);
    const token = await mintRoomToken(
      signer,
      {
        room: f.room,
        sub: f.user,
        role: f.role,
        ...(f.name !== undefined ? { name: f.name } : {}),
      },
      { ttlMs: f.ttl, issuer: f.issuer, audience: f.audience },
    );
    process.stdout.write(token + '\n');
  });
  examples(cmd, [
    'torii token --room n5-evening --user hana --role student',
    'torii token --room n5-evening --user sensei --role teacher --name "Tanaka Sensei" --ttl 8h',
    'TORII_KEYS_DIR=/etc/torii/keys torii token --room demo --user u1 --role observer',
  ]);
}
