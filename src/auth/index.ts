/**
 * Runs the auth callout role: two NATS connections (the callout user in the AUTH account, the
 * service user in APP for JetStream and KV), the KV caches, the token verifier and the handler.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../infra/nats.js';
import type { Logger } from '../runtime/logger.js';
import type { Ops } from '../runtime/ops.js';
import type { Shutdown } from '../runtime/shutdown.js';
import { ServiceUser } from '../infra/natsconf.js';
import { openBucket } from '../infra/kv.js';
import { Bucket } from '../protocol/subjects.js';
import { AuthCallout, type CalloutSettings } from './callout.js';
import { RoomDirectory } from './directory.js';
import { TokenVerifier, type TokenVerifierOptions } from './token-verifier.js';

export { InboxPolicy, DEFAULT_MAX_TTL_MS } from './callout.js';
export { DEFAULT_MAX_CONNECTIONS_PER_USER } from './connections.js';
export { DEFAULT_ADMISSION_TTL_MS } from './seats.js';
export { MAX_CLOCK_SKEW_MS } from './token-verifier.js';

/** Everything `torii auth-callout` needs. */
export interface AuthCalloutConfig extends CalloutSettings {
  servers: string[];
  authPassword: string;
  servicePassword: string;
  token: TokenVerifierOptions;
  kvReplicas: number;
}

/** A running callout; stopped through the shutdown hooks it registered. */
export interface RunningAuthCallout {
  callout: AuthCallout;
  authConn: NatsConnection;
  appConn: NatsConnection;
}

export async function runAuthCallout(
  c: AuthCalloutConfig,
  log: Logger,
  ops: Ops,
  shutdown: Shutdown,
): Promise<RunningAuthCallout> {
  const verifier = await TokenVerifier.create(c.token);
  if (verifier.symmetric)
    log.warn(
      'room tokens are verified with an HS256 shared secret: use an asymmetric key in production',
    );
  const appConn = await connectNats({
    servers: c.servers,
    name: 'torii-auth-callout-app',
    // An Error with its stack for every request costs more than an admission's KV write.
    noAsyncTraces: true,
    user: ServiceUser.Service,
    pass: c.servicePassword,
    log,
    shutdown,
  });
  const directory = await RoomDirectory.start(appConn, log, c.kvReplicas);
  shutdown.add('room-directory', () => directory.stop());
  const authConn = await connectNats({
    servers: c.servers,
    name: 'torii-auth-callout',
    noAsyncTraces: true,
    user: ServiceUser.Auth,
    pass: c.authPassword,
    log,
    shutdown,
  });
  ops.addReadiness(
    'nats',
    () => (!authConn.isClosed() && !appConn.isClosed()) || 'NATS connection closed',
  );
  const roomState = await openBucket(appConn, Bucket.RoomState, c.kvReplicas);
  const callout = await AuthCallout.start(c, {
    authConn,
    appConn,
    directory,
    roomState,
    verifier,
    log,
    ops,
  });
  shutdown.add('auth-callout', () => callout.stop());
  return { callout, authConn, appConn };
}
