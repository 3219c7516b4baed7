/** `torii auth-callout`: the auth callout role. */
import type { Command } from 'commander';
import { configError, formatDuration, intParser, opt, parseDuration } from '../runtime/config.js';
import { KeyFile, readKeyFile, readOptionalKeyFile } from '../infra/keys.js';
import type { LogLevel } from '../runtime/logger.js';
import { DEFAULT_ACCOUNTS } from '../infra/natsconf.js';
import { DEFAULT_TOKEN_AUDIENCE, DEFAULT_TOKEN_ISSUER } from '../infra/tokens.js';
import { DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS } from '../infra/streams.js';
import {
  DEFAULT_ADMISSION_TTL_MS,
  DEFAULT_MAX_CONNECTIONS_PER_USER,
  DEFAULT_MAX_TTL_MS,
  InboxPolicy,
  MAX_CLOCK_SKEW_MS,
  runAuthCallout,
  type AuthCalloutConfig,
} from '../auth/index.js';
import { addKeysDir, addLogLevel, addNatsUrl, addOpsPort, examples, runRole } from './common.js';

/** Flags of `torii auth-callout`. */
export interface AuthCalloutFlags {
  natsUrl: string[];
  keysDir: string;
  clientAccount: string;
  tokenJwksUrl?: string;
  tokenPublicKeyFile?: string;
  tokenSecretFile?: string;
  tokenIssuer: string;
  tokenAudience: string;
  clockSkew: number;
  maxTtl: number;
  inboxPolicy: InboxPolicy;
  consumerInactiveThreshold: number;
  maxConnectionsPerUser: number;
  admissionTtl: number;
  kvReplicas: number;
  httpPort: number;
  logLevel: LogLevel;
}

/** The callout's own flags. */
function addAuthCalloutOptions(cmd: Command): Command {
  return cmd
    .addOption(
      opt<string>('--client-account <name>', 'account every room client is placed in', {
        default: DEFAULT_ACCOUNTS.clients,
      }),
    )
    .addOption(
      opt<string>(
        '--token-jwks-url <url>',
        'verify room tokens with this JWKS (https; refetched on an unknown kid)',
      ),
    )
    .addOption(
      opt<string>(
        '--token-public-key-file <file>',
        'verify room tokens with this public key (PEM, JWK or JWKS)',
      ),
    )
    .addOption(
      opt<string>(
        '--token-secret-file <file>',
        'verify HS256 room tokens with this shared secret (development)',
      ),
    )
    .addOption(
      opt<string>('--token-issuer <iss>', 'required iss of room tokens', {
        default: DEFAULT_TOKEN_ISSUER,
      }),
    )
    .addOption(
      opt<string>('--token-audience <aud>', 'required aud of room tokens', {
        default: DEFAULT_TOKEN_AUDIENCE,
      }),
    )
    .addOption(
      opt<number>('--clock-skew <duration>', 'tolerated clock skew, at most 30s', {
        default: MAX_CLOCK_SKEW_MS,
        defaultDescription: '30s',
        parse: parseDuration,
      }),
    )
    .addOption(
      opt<number>('--max-ttl <duration>', 'cap on a NATS user JWT lifetime', {
        default: DEFAULT_MAX_TTL_MS,
        defaultDescription: formatDuration(DEFAULT_MAX_TTL_MS),
        parse: parseDuration,
      }),
    )
    .addOption(
      opt<InboxPolicy>(
        '--inbox-policy <policy>',
        'private: _INBOX.{room}.{user}.> only; shared: _INBOX.> (insecure, legacy clients)',
        {
          default: InboxPolicy.Private,
          choices: Object.values(InboxPolicy),
        },
      ),
    )
    .addOption(
      opt<number>(
        '--consumer-inactive-threshold <duration>',
        'a user or device consumer is removed by the server this long after its last pull (it serves only the catch-up after a connect; the next admission creates it again); keep it well above a catch-up',
        {
          default: DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS,
          defaultDescription: formatDuration(DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>(
        '--max-connections-per-user <n>',
        'live connections one user may have to one room (each callout replica also counts its admissions presence has not shown yet)',
        {
          default: DEFAULT_MAX_CONNECTIONS_PER_USER,
          parse: intParser(1, 1_000),
        },
      ),
    )
    .addOption(
      opt<number>(
        '--admission-ttl <duration>',
        'how long a seat claim and a counted admission wait for presence to show the connection',
        {
          default: DEFAULT_ADMISSION_TTL_MS,
          defaultDescription: formatDuration(DEFAULT_ADMISSION_TTL_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>('--kv-replicas <n>', 'replicas of KV buckets this role creates', {
        default: 1,
        parse: intParser(1, 5),
      }),
    );
}

/** Validates flags and reads key files into the callout's configuration. */
export async function authCalloutConfig(f: AuthCalloutFlags): Promise<AuthCalloutConfig> {
  if (f.clockSkew > MAX_CLOCK_SKEW_MS)
    configError('--clock-skew', 'at most 30s (docs/auth-callout.md)');
  if (f.maxTtl < 60_000) configError('--max-ttl', 'at least 1m');
  if (f.admissionTtl < 1_000 || f.admissionTtl > 600_000)
    configError('--admission-ttl', 'from 1s to 10m');
  const xkeySeed = await readOptionalKeyFile(f.keysDir, KeyFile.XkeySeed);
  return {
    servers: f.natsUrl,
    issuerSeed: await readKeyFile(f.keysDir, KeyFile.IssuerSeed),
    ...(xkeySeed !== undefined ? { xkeySeed } : {}),
    authPassword: await readKeyFile(f.keysDir, KeyFile.AuthPassword),
    servicePassword: await readKeyFile(f.keysDir, KeyFile.ServicePassword),
    clientAccount: f.clientAccount,
    maxTtlMs: f.maxTtl,
    inboxPolicy: f.inboxPolicy,
    consumerInactiveThresholdMs: f.consumerInactiveThreshold,
    maxConnectionsPerUser: f.maxConnectionsPerUser,
    admissionTtlMs: f.admissionTtl,
    kvReplicas: f.kvReplicas,
    token: {
      ...(f.tokenJwksUrl !== undefined ? { jwksUrl: f.tokenJwksUrl } : {}),
      ...(f.tokenPublicKeyFile !== undefined ? { publicKeyFile: f.tokenPublicKeyFile } : {}),
      ...(f.tokenSecretFile !== undefined ? { secretFile: f.tokenSecretFile } : {}),
      keysDir: f.keysDir,
      issuer: f.tokenIssuer,
      audience: f.tokenAudience,
      clockSkewMs: f.clockSkew,
    },
  };
}

export function registerAuthCallout(program: Command): void {
  const cmd = program
    .command('auth-callout')
    .description(
      'run the auth callout: verify room tokens and sign per-room, per-user NATS user JWTs (queue group torii_queue)',
    );
  addNatsUrl(cmd);
  addKeysDir(cmd);
  addAuthCalloutOptions(cmd);
  addOpsPort(cmd);
  addLogLevel(cmd).action(async (f: AuthCalloutFlags) => {
    const config = await authCalloutConfig(f);
    await runRole('auth-callout', f, (log, ops, shutdown) =>
      runAuthCallout(config, log, ops, shutdown),
    );
  });
  examples(cmd, [
    'torii auth-callout --nats-url nats://nats:4222 --keys-dir /etc/torii/keys',
    'torii auth-callout --token-jwks-url https://classroom.example.com/.well-known/jwks.json',
    'TORII_NATS_URL=nats://127.0.0.1:4222 torii auth-callout --http-port 9091',
  ]);
}
