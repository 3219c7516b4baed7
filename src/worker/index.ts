/**
 * Runs the worker role: the event pool on `sysJsWorker`, the platform service endpoints and the
 * presence tracker, sharing KV caches of rooms, presence and blocks.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { Service } from '@nats-io/services';
import { parseBlock } from '../core/blocks.js';
import { KvCache, openBucket } from '../core/kv.js';
import type { Logger } from '../core/logger.js';
import { connectNats, isConnected } from '../core/nats.js';
import { ServiceUser } from '../core/natsconf.js';
import type { Ops } from '../core/ops.js';
import { parsePresence } from '../core/presence.js';
import { parseRoomConfig } from '../core/room.js';
import type { Shutdown } from '../core/shutdown.js';
import { ensureWorkerStream } from '../core/streams.js';
import { Bucket, roomStreamName } from '../core/subjects.js';
import type { TokenSigner } from '../core/tokens.js';
import { Handlers, type LiveKitSettings } from './handlers.js';
import { WorkerMetrics } from './metrics.js';
import { EventPool, type PoolSettings } from './pool.js';
import { PresenceTracker } from './presence.js';
import { startService } from './service.js';

export { DEFAULT_ACK_WAIT_MS, DEFAULT_MAX_DELIVER, DEFAULT_WORKER_CONCURRENCY } from './pool.js';
export type { LiveKitSettings } from './handlers.js';

/** Default lifetime of renewed and issued room tokens: 1 hour. */
export const DEFAULT_RENEW_TTL_MS = 3_600_000;
/** At most one renewal per user per this many milliseconds (DESIGN.md §6). */
export const RENEW_INTERVAL_MS = 10_000;

export interface WorkerConfig {
  servers: string[];
  servicePassword: string;
  /** Password of the system user, for presence; presence is off without it. */
  systemPassword?: string;
  appAccount: string;
  kvReplicas: number;
  pool: PoolSettings;
  signer?: TokenSigner;
  token: { issuer: string; audience: string; ttlMs: number };
  livekit?: LiveKitSettings;
  version: string;
}

export interface RunningWorker {
  pool: EventPool;
  service: Service;
}

export async function runWorker(
  c: WorkerConfig,
  log: Logger,
  ops: Ops,
  shutdown: Shutdown,
): Promise<RunningWorker> {
  const nc = await connectNats({
    servers: c.servers,
    name: 'torii-worker',
    user: ServiceUser.Service,
    pass: c.servicePassword,
    log,
    shutdown,
  });
  const rooms = new KvCache(nc, Bucket.Rooms, parseRoomConfig, log, c.kvReplicas);
  const presence = new KvCache(nc, Bucket.Presence, parsePresence, log, c.kvReplicas);
  const blocks = new KvCache(nc, Bucket.Blocks, parseBlock, log, c.kvReplicas);
  await Promise.all([rooms.start(), presence.start(), blocks.start()]);
  shutdown.add('kv-caches', () => [rooms, presence, blocks].forEach((x) => x.stop()));
  const roomState = await openBucket(nc, Bucket.RoomState, c.kvReplicas);
  const jsm = await jetstreamManager(nc);
  await ensureWorkerStream(jsm, c.kvReplicas);

  const handlers = new Handlers({
    rooms,
    presence,
    blocks,
    roomState,
    signer: c.signer,
    token: c.token,
    livekit: c.livekit,
    renewIntervalMs: RENEW_INTERVAL_MS,
    roomLastSeq: async (roomId) => (await jsm.streams.info(roomStreamName(roomId))).state.last_seq,
    now: () => new Date(),
  });
  const metrics = new WorkerMetrics(ops.registry, () => pool.inflight);
  const pool: EventPool = new EventPool(nc, handlers, c.pool, metrics, log);
  const service = await startService(nc, {
    rooms,
    presence,
    signer: c.signer,
    token: c.token,
    version: c.version,
  });
  shutdown.add('service', () => service.stop().then(() => undefined));

  if (c.systemPassword) {
    const sys = await connectNats({
      servers: c.servers,
      name: 'torii-worker-presence',
      user: ServiceUser.System,
      pass: c.systemPassword,
      log,
      shutdown,
    });
    const tracker = new PresenceTracker(
      sys,
      nc,
      await openBucket(nc, Bucket.Presence, c.kvReplicas),
      roomState,
      c.appAccount,
      log,
    );
    tracker.start();
    shutdown.add('presence', () => tracker.stop());
  } else {
    log.warn('no system user password: presence tracking is off');
  }

  await pool.start(jsm);
  shutdown.add('event-pool', () => pool.stop());
  ops.addReadiness('nats', () => isConnected(nc) || 'NATS disconnected');
  ops.addReadiness(
    'kv',
    () => (rooms.loaded && presence.loaded && blocks.loaded) || 'KV caches loading',
  );
  log.info(
    {
      concurrency: c.pool.concurrency,
      media: c.livekit ? c.livekit.url : 'off',
      renewal: c.signer ? 'on' : 'off',
    },
    'worker ready',
  );
  return { pool, service };
}
