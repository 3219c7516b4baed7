/**
 * NATS connections for Torii's roles: named, logged (every status change), reconnecting forever,
 * and drained on shutdown so in-flight messages are delivered before the socket closes.
 */
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { ToriiError, ErrorCode, describeError } from '../protocol/errors.js';
import type { Logger } from '../runtime/logger.js';
import type { Shutdown } from '../runtime/shutdown.js';

/** Default NATS URL. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
/** Wait between reconnect attempts, in milliseconds. */
const DEFAULT_RECONNECT_WAIT_MS = 1_000;
/** Timeout of the initial connect, in milliseconds. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Options of {@link connectNats}; anything else nats.js accepts passes through. */
interface ConnectNatsOptions extends NodeConnectionOptions {
  /** Connection name shown in server monitoring, e.g. `torii-worker`. */
  name: string;
  log: Logger;
  /** When given, the connection is drained as a shutdown step. */
  shutdown?: Shutdown;
}

/**
 * Connects and starts logging status events. Reconnects forever by default: a role must ride
 * out a server restart, not exit.
 */
export async function connectNats(o: ConnectNatsOptions): Promise<NatsConnection> {
  const { log, shutdown, ...opts } = o;
  let nc: NatsConnection;
  try {
    nc = await connect({
      maxReconnectAttempts: -1,
      reconnectTimeWait: DEFAULT_RECONNECT_WAIT_MS,
      timeout: DEFAULT_CONNECT_TIMEOUT_MS,
      ...opts,
    });
  } catch (e) {
    throw new ToriiError(
      ErrorCode.Internal,
      `cannot connect to NATS at ${String(opts.servers)}: ${describeError(e)}`,
      {
        cause: e,
      },
    );
  }
  log.info({ server: nc.getServer(), name: opts.name }, 'connected to NATS');
  void logStatus(nc, log);
  nc.closed()
    .then((err) => {
      if (err) log.error({ err: describeError(err) }, 'NATS connection closed with error');
      else log.info('NATS connection closed');
    })
    .catch(() => undefined);
  shutdown?.add(`nats:${opts.name}`, () => drainNats(nc));
  return nc;
}

/** Connections currently without a server (reconnecting). */
const disconnected = new WeakSet<NatsConnection>();

/** False while the client is between servers. */
export function isConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && !disconnected.has(nc);
}

async function logStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    switch (s.type) {
      case 'disconnect':
        disconnected.add(nc);
        log.warn({ server: s.server }, 'NATS disconnected');
        break;
      case 'reconnect':
        disconnected.delete(nc);
        log.info({ server: s.server }, 'NATS reconnected');
        break;
      case 'reconnecting':
        log.debug('NATS reconnecting');
        break;
      case 'ldm':
        log.warn({ server: s.server }, 'NATS server entering lame duck mode');
        break;
      case 'error':
        log.error({ err: describeError(s.error) }, 'NATS error');
        break;
      case 'staleConnection':
        log.warn('NATS connection stale');
        break;
      case 'slowConsumer':
        log.warn({ subject: s.sub.getSubject(), pending: s.pending }, 'NATS slow consumer');
        break;
      case 'update':
      case 'ping':
      case 'forceReconnect':
      case 'close':
        break;
    }
  }
}

/**
 * Drains (finishes subscriptions, flushes publishes) unless already closed. Without a server
 * there is nothing to drain into: the connection is closed at once instead of waiting.
 */
async function drainNats(nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return;
  if (disconnected.has(nc)) {
    await nc.close();
    return;
  }
  try {
    await nc.drain();
  } catch {
    if (!nc.isClosed()) await nc.close();
  }
}
