/** `torii worker`: room event handlers, platform endpoints and presence tracking. */
import { MAX_BLOCK_SECONDS } from '../protocol/limits.js';
import {
  DEFAULT_LARGE_ROOM_THRESHOLD,
  DEFAULT_PRESENCE_BATCH_INTERVAL_MS,
} from '../domain/presence-batch.js';
import { MAX_PARTICIPANTS_LIMIT } from '../domain/room-spec.js';
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { configError, formatDuration, intParser, opt, parseDuration } from '../runtime/config.js';
import { KeyFile, readKeyFile, readOptionalKeyFile } from '../infra/keys.js';
import { MIN_LIVEKIT_SECRET_LENGTH, WELL_KNOWN_LIVEKIT_KEYS } from '../runtime/livekit-keys.js';
import type { LogLevel } from '../runtime/logger.js';
import { DEFAULT_ACCOUNTS } from '../infra/natsconf.js';
import { DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS } from '../infra/streams.js';
import { packageVersion } from '../runtime/version.js';
import { DEFAULT_TOKEN_AUDIENCE, DEFAULT_TOKEN_ISSUER, loadTokenSigner } from '../infra/tokens.js';
import { MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS } from '../protocol/claims.js';
import {
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_MAX_DELIVER,
  DEFAULT_RENEW_TTL_MS,
  DEFAULT_WORKER_CONCURRENCY,
  runWorker,
  DEFAULT_BLOCK_TTL_MS,
  DEFAULT_CONSUMER_RETENTION_MS,
  DEFAULT_PRESENCE_GRACE_MS,
  DEFAULT_PRESENCE_RESYNC_MS,
  DEFAULT_HAND_CHANGES,
  DEFAULT_HAND_WINDOW_MS,
  DEFAULT_LEAVE_WINDOW_MS,
  DEFAULT_CONN_MSGS_PER_SEC,
  DEFAULT_CONN_BYTES_PER_SEC,
  DEFAULT_FLOOD_POLL_MS,
  DEFAULT_FLOOD_COOL_OFF_MS,
  type LiveKitSettings,
  type WorkerConfig,
} from '../worker/index.js';
import { addKeysDir, addLogLevel, addNatsUrl, addOpsPort, examples, runRole } from './common.js';

export interface WorkerFlags {
  natsUrl: string[];
  keysDir: string;
  clientAccount: string;
  kvReplicas: number;
  concurrency: number;
  ackWait: number;
  maxDeliver: number;
  tokenIssuer: string;
  tokenAudience: string;
  tokenTtl: number;
  livekitUrl?: string;
  livekitApiKey?: string;
  livekitApiSecretFile?: string;
  mediaTokenTtl: number;
  presence: boolean;
  presenceGrace: number;
  presenceResync: number;
  largeRoomThreshold: number;
  presenceBatchInterval: number;
  consumerRetention: number;
  consumerInactiveThreshold: number;
  blockTtl: number;
  handChanges: number;
  handWindow: number;
  leaveWindow: number;
  connMsgsRate: number;
  connBytesRate: number;
  floodPoll: number;
  floodCoolOff: number;
  httpPort: number;
  logLevel: LogLevel;
}

/** Default lifetime of LiveKit tokens: 2 hours, in milliseconds. */
export const DEFAULT_MEDIA_TOKEN_TTL_MS = 2 * 3_600_000;

/** Shortest lifetime of LiveKit tokens, in milliseconds (as of room tokens): a client renews before it ends. */
const MIN_MEDIA_TOKEN_TTL_MS = 10_000;
/** Longest lifetime of LiveKit tokens, in milliseconds (a day: clients renew well before). */
const MAX_MEDIA_TOKEN_TTL_MS = 24 * 3_600_000;

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The LiveKit settings of the flags, checked: all three or none, a ws(s) or http(s) URL (plain
 * text only to a loopback host, since the token travels in it), an API key, and a secret LiveKit
 * itself would accept outside development (never the `--dev` pair everyone knows).
 */
export async function liveKitSettings(f: WorkerFlags): Promise<LiveKitSettings | undefined> {
  const given = [f.livekitUrl, f.livekitApiKey, f.livekitApiSecretFile];
  if (given.every((x) => x === undefined || x === '')) return undefined;
  if (given.some((x) => x === undefined || x === '')) {
    configError(
      '--livekit-url',
      'media needs --livekit-url, --livekit-api-key and --livekit-api-secret-file together',
    );
  }
  const { livekitUrl = '', livekitApiKey = '', livekitApiSecretFile = '' } = f;
  let url: URL;
  try {
    url = new URL(livekitUrl);
  } catch {
    configError('--livekit-url', `'${livekitUrl}' is not a URL (wss://media.example.com)`);
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(url.protocol))
    configError('--livekit-url', `'${livekitUrl}' is not a ws://, wss://, http:// or https:// URL`);
  if ((url.protocol === 'ws:' || url.protocol === 'http:') && !LOOPBACK_HOSTS.has(url.hostname))
    configError(
      '--livekit-url',
      `'${livekitUrl}' is plain text to another machine: media tokens would travel unencrypted; use wss://`,
    );
  if (!/^[\x21-\x7e]+$/.test(livekitApiKey))
    configError('--livekit-api-key', 'printable characters, no spaces');
  if (f.mediaTokenTtl < MIN_MEDIA_TOKEN_TTL_MS || f.mediaTokenTtl > MAX_MEDIA_TOKEN_TTL_MS)
    configError('--media-token-ttl', '10s to 24h');
  const apiSecret = (
    await readFile(livekitApiSecretFile, 'utf8').catch((e: NodeJS.ErrnoException) =>
      configError('--livekit-api-secret-file', `cannot read ${livekitApiSecretFile} (${e.code})`),
    )
  ).trim();
  if (
    livekitApiKey === WELL_KNOWN_LIVEKIT_KEYS.apiKey ||
    apiSecret === WELL_KNOWN_LIVEKIT_KEYS.apiSecret
  )
    configError(
      '--livekit-api-key',
      `'${WELL_KNOWN_LIVEKIT_KEYS.apiKey}'/'${WELL_KNOWN_LIVEKIT_KEYS.apiSecret}' is LiveKit's public development pair: anyone could mint media tokens`,
    );
  if (apiSecret.length < MIN_LIVEKIT_SECRET_LENGTH)
    configError(
      '--livekit-api-secret-file',
      `the secret in ${livekitApiSecretFile} has ${apiSecret.length} characters; LiveKit needs at least ${MIN_LIVEKIT_SECRET_LENGTH}`,
    );
  return {
    url: livekitUrl,
    apiKey: livekitApiKey,
    apiSecret,
    ttlSeconds: Math.floor(f.mediaTokenTtl / 1000),
  };
}

export async function workerConfig(f: WorkerFlags): Promise<WorkerConfig> {
  if (f.ackWait < 1_000) configError('--ack-wait', 'at least 1s');
  if (f.tokenTtl < MIN_TOKEN_TTL_MS || f.tokenTtl > MAX_TOKEN_TTL_MS)
    configError('--token-ttl', '10s to 7d');
  if (f.handWindow < 1_000) configError('--hand-window', 'at least 1s');
  if (f.floodPoll < 100 || f.floodPoll > 60_000) configError('--flood-poll', '100ms to 60s');
  if (f.floodCoolOff < 1_000) configError('--flood-cool-off', 'at least 1s');
  if (f.presenceBatchInterval < 100 || f.presenceBatchInterval > 60_000)
    configError('--presence-batch-interval', '100ms to 60s');
  if (f.blockTtl < 1_000 || f.blockTtl > MAX_BLOCK_SECONDS * 1_000)
    configError('--block-ttl', '1s to 365d');
  const livekit = await liveKitSettings(f);
  const hasSigner =
    (await readOptionalKeyFile(f.keysDir, KeyFile.TokenSigningJwk)) !== undefined ||
    (await readOptionalKeyFile(f.keysDir, KeyFile.TokenSecret)) !== undefined;
  const systemPassword = f.presence
    ? await readKeyFile(f.keysDir, KeyFile.SystemPassword)
    : undefined;
  return {
    servers: f.natsUrl,
    servicePassword: await readKeyFile(f.keysDir, KeyFile.ServicePassword),
    ...(systemPassword !== undefined ? { systemPassword } : {}),
    clientAccount: f.clientAccount,
    kvReplicas: f.kvReplicas,
    pool: { concurrency: f.concurrency, ackWaitMs: f.ackWait, maxDeliver: f.maxDeliver },
    ...(hasSigner ? { signer: await loadTokenSigner(f.keysDir) } : {}),
    token: { issuer: f.tokenIssuer, audience: f.tokenAudience, ttlMs: f.tokenTtl },
    ...(livekit ? { livekit } : {}),
    presence: {
      graceMs: f.presenceGrace,
      resyncMs: f.presenceResync,
      largeRoomThreshold: f.largeRoomThreshold,
      batchIntervalMs: f.presenceBatchInterval,
      consumerRetentionMs: f.consumerRetention,
    },
    blockTtlMs: f.blockTtl,
    handChanges: f.handChanges,
    handWindowMs: f.handWindow,
    leaveWindowMs: f.leaveWindow,
    flood: {
      msgsPerSec: f.connMsgsRate,
      bytesPerSec: f.connBytesRate,
      pollMs: f.floodPoll,
      coolOffMs: f.floodCoolOff,
    },
    consumerInactiveThresholdMs: f.consumerInactiveThreshold,
    version: packageVersion(),
  };
}

export function registerWorker(program: Command): void {
  const cmd = program
    .command('worker')
    .description(
      'handle room events from sysJsWorker (queue torii_queue), serve the torii.* endpoints and track presence',
    );
  addNatsUrl(cmd);
  addKeysDir(cmd)
    .addOption(
      opt<number>('--concurrency <n>', 'events handled at once by this replica', {
        default: DEFAULT_WORKER_CONCURRENCY,
        parse: intParser(1, 10_000),
      }),
    )
    .addOption(
      opt<number>('--ack-wait <duration>', 'redeliver an event not acked within this time', {
        default: DEFAULT_ACK_WAIT_MS,
        defaultDescription: formatDuration(DEFAULT_ACK_WAIT_MS),
        parse: parseDuration,
      }),
    )
    .addOption(
      opt<number>('--max-deliver <n>', 'deliveries of an event before it is kept for inspection', {
        default: DEFAULT_MAX_DELIVER,
        parse: intParser(1, 100),
      }),
    )
    .addOption(
      opt<string>('--client-account <name>', 'account of room clients (presence events)', {
        default: DEFAULT_ACCOUNTS.clients,
      }),
    )
    .addOption(
      opt<string>('--token-issuer <iss>', 'iss of renewed and issued room tokens', {
        default: DEFAULT_TOKEN_ISSUER,
      }),
    )
    .addOption(
      opt<string>('--token-audience <aud>', 'aud of renewed and issued room tokens', {
        default: DEFAULT_TOKEN_AUDIENCE,
      }),
    )
    .addOption(
      opt<number>('--token-ttl <duration>', 'lifetime of renewed and issued room tokens', {
        default: DEFAULT_RENEW_TTL_MS,
        defaultDescription: '1h',
        parse: parseDuration,
      }),
    )
    .addOption(opt<string>('--livekit-url <url>', 'LiveKit server URL given to clients'))
    .addOption(opt<string>('--livekit-api-key <key>', 'LiveKit API key'))
    .addOption(
      opt<string>('--livekit-api-secret-file <file>', 'file holding the LiveKit API secret'),
    )
    .addOption(
      opt<number>('--media-token-ttl <duration>', 'lifetime of LiveKit tokens', {
        default: DEFAULT_MEDIA_TOKEN_TTL_MS,
        defaultDescription: '2h',
        parse: parseDuration,
      }),
    )
    .addOption(
      opt<number>(
        '--presence-grace <duration>',
        'a user whose last connection dropped is away this long before it has left',
        { default: DEFAULT_PRESENCE_GRACE_MS, defaultDescription: '15s', parse: parseDuration },
      ),
    )
    .addOption(
      opt<number>(
        '--large-room-threshold <n>',
        'members present above which joins and departures are batched and the initial data lists only counts and the relevant participants',
        { default: DEFAULT_LARGE_ROOM_THRESHOLD, parse: intParser(1, MAX_PARTICIPANTS_LIMIT) },
      ),
    )
    .addOption(
      opt<number>(
        '--presence-batch-interval <duration>',
        "least time between two presence batches of a large room (each member's bound)",
        {
          default: DEFAULT_PRESENCE_BATCH_INTERVAL_MS,
          defaultDescription: '1s',
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>(
        '--presence-resync <duration>',
        'interval of the presence reconcile against the servers',
        { default: DEFAULT_PRESENCE_RESYNC_MS, defaultDescription: '30s', parse: parseDuration },
      ),
    )
    .addOption(
      opt<number>(
        '--consumer-retention <duration>',
        "a user's consumer is deleted this long after it left",
        { default: DEFAULT_CONSUMER_RETENTION_MS, defaultDescription: '1h', parse: parseDuration },
      ),
    )
    .addOption(
      opt<number>(
        '--consumer-inactive-threshold <duration>',
        "a user consumer the worker restores or creates again (REQ_RESTORE_CONSUMER) is removed this long after its last pull; as the callout's",
        {
          default: DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS,
          defaultDescription: formatDuration(DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>('--block-ttl <duration>', 'how long a kicked user stays out', {
        default: DEFAULT_BLOCK_TTL_MS,
        defaultDescription: '1h',
        parse: parseDuration,
      }),
    )
    .addOption(
      opt<number>(
        '--hand-changes <n>',
        'changes a user may make to its own hand per --hand-window',
        {
          default: DEFAULT_HAND_CHANGES,
          parse: intParser(1, 1_000),
        },
      ),
    )
    .addOption(
      opt<number>(
        '--hand-window <duration>',
        'window of --hand-changes (a bucket refilled over it)',
        {
          default: DEFAULT_HAND_WINDOW_MS,
          defaultDescription: formatDuration(DEFAULT_HAND_WINDOW_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>(
        '--leave-window <duration>',
        'REQ_LEAVE makes a departure immediate at most once per this window; else the grace period applies',
        {
          default: DEFAULT_LEAVE_WINDOW_MS,
          defaultDescription: formatDuration(DEFAULT_LEAVE_WINDOW_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>(
        '--conn-msgs-rate <n>',
        'messages a second a room client connection may publish; above it the connection is kicked',
        { default: DEFAULT_CONN_MSGS_PER_SEC, parse: intParser(1, 1_000_000) },
      ),
    )
    .addOption(
      opt<number>(
        '--conn-bytes-rate <n>',
        'bytes a second a room client connection may publish; above it the connection is kicked',
        { default: DEFAULT_CONN_BYTES_PER_SEC, parse: intParser(1_024, 1_073_741_824) },
      ),
    )
    .addOption(
      opt<number>(
        '--flood-poll <duration>',
        "interval of the look at each server's top publishers (the connection bound's detection delay)",
        {
          default: DEFAULT_FLOOD_POLL_MS,
          defaultDescription: formatDuration(DEFAULT_FLOOD_POLL_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>(
        '--flood-cool-off <duration>',
        'a user kicked twice for flooding within 10 minutes is blocked this long',
        {
          default: DEFAULT_FLOOD_COOL_OFF_MS,
          defaultDescription: formatDuration(DEFAULT_FLOOD_COOL_OFF_MS),
          parse: parseDuration,
        },
      ),
    )
    .addOption(opt<boolean>('--no-presence', 'do not track presence (another deployment does)'))
    .addOption(
      opt<number>('--kv-replicas <n>', 'replicas of KV buckets this role creates', {
        default: 1,
        parse: intParser(1, 5),
      }),
    );
  addOpsPort(cmd);
  addLogLevel(cmd).action(async (f: WorkerFlags) => {
    const config = await workerConfig(f);
    await runRole('worker', f, (log, ops, shutdown) => runWorker(config, log, ops, shutdown));
  });
  examples(cmd, [
    'torii worker --nats-url nats://nats:4222 --keys-dir /etc/torii/keys',
    'torii worker --concurrency 100 --livekit-url wss://media.example.com --livekit-api-key APIxyz --livekit-api-secret-file /etc/torii/livekit-secret',
  ]);
}
