/**
 * Runs the auth callout in the test process against a test nats-server, and connects room
 * clients through it with real tokens.
 */
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { RoomClient } from '../../src/client/index.js';
import type { Counter } from 'prom-client';
import {
  DEFAULT_ADMISSION_TTL_MS,
  DEFAULT_MAX_CONNECTIONS_PER_USER,
  runAuthCallout,
  type AuthCalloutConfig,
  type RunningAuthCallout,
} from '../../src/auth/index.js';
import { KeyFile, readKeyFile } from '../../src/infra/keys.js';
import { silentLogger, type Logger } from '../../src/runtime/logger.js';
import { Ops } from '../../src/runtime/ops.js';
import { Shutdown } from '../../src/runtime/shutdown.js';
import { userInboxPrefix } from '../../src/protocol/subjects.js';
import { loadTokenSigner, mintRoomToken, type MintOptions } from '../../src/infra/tokens.js';
import { type RoomTokenClaims } from '../../src/protocol/claims.js';
import type { TestKeys } from './nats.js';

/** A callout running in this process. */
export interface TestCallout extends RunningAuthCallout {
  ops: Ops;
  shutdown: Shutdown;
  /** Current value of `torii_auth_rejections_total{reason}`. */
  rejections(reason: string): Promise<number>;
  stop(): Promise<void>;
}

/** Callout settings for a test server's keys. */
export async function calloutConfig(
  keys: TestKeys,
  servers: string[],
  overrides: Partial<AuthCalloutConfig> = {},
): Promise<AuthCalloutConfig> {
  return {
    servers,
    issuerSeed: await readKeyFile(keys.dir, KeyFile.IssuerSeed),
    xkeySeed: await readKeyFile(keys.dir, KeyFile.XkeySeed),
    authPassword: keys.server.authPassword,
    servicePassword: keys.server.servicePassword,
    clientAccount: 'CLIENTS',
    maxTtlMs: 3_600_000,
    inboxPolicy: 'private',
    consumerInactiveThresholdMs: 3_600_000,
    maxConnectionsPerUser: DEFAULT_MAX_CONNECTIONS_PER_USER,
    admissionTtlMs: DEFAULT_ADMISSION_TTL_MS,
    kvReplicas: 1,
    token: { keysDir: keys.dir, issuer: 'torii', audience: 'torii-nats', clockSkewMs: 30_000 },
    ...overrides,
  };
}

export async function startCallout(
  keys: TestKeys,
  servers: string[],
  overrides: Partial<AuthCalloutConfig> = {},
  log: Logger = silentLogger(),
): Promise<TestCallout> {
  const ops = new Ops(log);
  const shutdown = new Shutdown(log);
  const running = await runAuthCallout(
    await calloutConfig(keys, servers, overrides),
    log,
    ops,
    shutdown,
  );
  return {
    ...running,
    ops,
    shutdown,
    rejections: async (reason) => {
      const metric = ops.registry.getSingleMetric('torii_auth_rejections_total') as
        Counter<'reason'> | undefined;
      const values = (await metric?.get())?.values ?? [];
      return values.find((v) => v.labels.reason === reason)?.value ?? 0;
    },
    stop: () => shutdown.run('test'),
  };
}

/** Mints a room token with the test keys. */
export async function token(
  keys: TestKeys,
  claims: RoomTokenClaims,
  o: MintOptions = {},
): Promise<string> {
  return mintRoomToken(await loadTokenSigner(keys.dir), claims, o);
}

/** Connects a room client the way docs/auth-callout.md says: token as auth_token, private inbox prefix. */
export function connectClient(
  servers: string | string[],
  roomId: string,
  userId: string,
  tokenValue: string,
  opts: Partial<NodeConnectionOptions> = {},
): Promise<NatsConnection> {
  return connect({
    servers,
    token: tokenValue,
    inboxPrefix: userInboxPrefix(roomId, userId),
    maxReconnectAttempts: 0,
    timeout: 5_000,
    ...opts,
  });
}

/**
 * Joins a room with the SDK as `user`, on a fresh token of `role` (default student), without
 * automatic renewal.
 */
export async function joinRoom(
  servers: string | string[],
  keys: TestKeys,
  room: string,
  user: string,
  o: { role?: string; deviceId?: string; ttlMs?: number } = {},
): Promise<RoomClient> {
  return RoomClient.connect({
    connect,
    servers,
    roomId: room,
    userId: user,
    token: await token(
      keys,
      { room, sub: user, role: o.role ?? 'student' },
      o.ttlMs !== undefined ? { ttlMs: o.ttlMs } : {},
    ),
    autoRenew: false,
    ...(o.deviceId !== undefined ? { deviceId: o.deviceId } : {}),
  });
}
