/**
 * Runs the worker role: the event pool on `sysJsWorker`, the platform service endpoints and the
 * presence tracker, sharing KV caches of rooms, presence and blocks.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { Service } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { parseBlock } from '../domain/blocks.js';
import { describeError } from '../protocol/errors.js';
import { KvCache, openBucket } from '../infra/kv.js';
import type { Logger } from '../runtime/logger.js';
import { SystemMsgIds } from '../infra/msg-ids.js';
import { connectNats, isConnected } from '../infra/nats.js';
import { ServiceUser } from '../infra/natsconf.js';
import type { Ops } from '../runtime/ops.js';
import { parsePresence, type PresenceRecord } from '../domain/presence.js';
import { parseRoomConfig, type CompiledRoomConfig } from '../domain/room-compile.js';
import type { Shutdown } from '../runtime/shutdown.js';
import { DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS, ensureWorkerStream } from '../infra/streams.js';
import { Bucket, roomStreamName } from '../protocol/subjects.js';
import type { TokenSigner } from '../infra/tokens.js';
import {
  DEFAULT_HAND_CHANGES,
  DEFAULT_HAND_WINDOW_MS,
  Handlers,
  type LiveKitSettings,
} from './handlers.js';
import { perWindow } from '../domain/rate.js';
import { WorkerMetrics } from './metrics.js';
import { EventPool, type PoolSettings } from './pool.js';
import { PresenceTracker, type PresenceSettings } from './presence.js';
import { MediaRemover } from './media.js';
import { closeOnNarrowing } from './room-changes.js';
import { kickAll, roomConnections, startService } from './service.js';
import {
  DEFAULT_CONN_BYTES_PER_SEC,
  DEFAULT_CONN_MSGS_PER_SEC,
  DEFAULT_FLOOD_COOL_OFF_MS,
  DEFAULT_FLOOD_POLL_MS,
  FloodGuard,
  type FloodSettings,
} from './flood-guard.js';

export { DEFAULT_ACK_WAIT_MS, DEFAULT_MAX_DELIVER, DEFAULT_WORKER_CONCURRENCY } from './pool.js';
export {
  DEFAULT_CONSUMER_RETENTION_MS,
  DEFAULT_PRESENCE_GRACE_MS,
  DEFAULT_PRESENCE_RESYNC_MS,
} from './presence.js';
export { DEFAULT_HAND_CHANGES, DEFAULT_HAND_WINDOW_MS } from './handlers.js';
export type { LiveKitSettings } from './handlers.js';
export {
  DEFAULT_CONN_BYTES_PER_SEC,
  DEFAULT_CONN_MSGS_PER_SEC,
  DEFAULT_FLOOD_COOL_OFF_MS,
  DEFAULT_FLOOD_POLL_MS,
} from './flood-guard.js';

/** Default lifetime of renewed and issued room tokens: 1 hour. */
export const DEFAULT_RENEW_TTL_MS = 3_600_000;
/** At most one renewal per user per this many milliseconds (docs/protocol.md). */
const RENEW_INTERVAL_MS = 10_000;
/**
 * Default leave window, in milliseconds (`--leave-window`): a `REQ_LEAVE` makes the departure
 * immediate at most once per window; within it a departure takes the grace period, so a
 * connect-and-leave loop announces at most one left and one joined per window, plus one pair per
 * grace period.
 */
export const DEFAULT_LEAVE_WINDOW_MS = 60_000;
/** Default time a kicked user stays out: 1 hour. */
export const DEFAULT_BLOCK_TTL_MS = 3_600_000;

export interface WorkerConfig {
  servers: string[];
  servicePassword: string;
  /** Password of the system user, for presence and kicks; both are off without it. */
  systemPassword?: string;
  clientAccount: string;
  kvReplicas: number;
  pool: PoolSettings;
  signer?: TokenSigner;
  token: { issuer: string; audience: string; ttlMs: number };
  livekit?: LiveKitSettings;
  presence: PresenceSettings;
  /** How long a kick keeps the user out, in milliseconds. */
  blockTtlMs: number;
  /** Hand changes a user may make per {@link handWindowMs}; default {@link DEFAULT_HAND_CHANGES}. */
  handChanges?: number;
  /** Window of {@link handChanges}, in milliseconds; default {@link DEFAULT_HAND_WINDOW_MS}. */
  handWindowMs?: number;
  /** Default {@link DEFAULT_LEAVE_WINDOW_MS}. */
  leaveWindowMs?: number;
  /** The connection publish bound (needs the system user); defaults from flood-guard.ts. */
  flood?: Partial<FloodSettings>;
  /**
   * Inactive threshold of a user consumer the worker restores, in milliseconds; default
   * {@link DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS}, as the callout's.
   */
  consumerInactiveThresholdMs?: number;
  version: string;
}

export interface RunningWorker {
  pool: EventPool;
  service: Service;
  tracker: PresenceTracker | undefined;
  flood: FloodGuard | undefined;
}

/**
 * When a room disappears from KV (its Room was deleted), every connection of it is kicked: those
 * presence knows and those the servers report for the room. The controller has broadcast
 * EVT_SESSION_ENDED, and the callout refuses the room's tokens.
 */
function kickOnRoomDeletion(
  rooms: KvCache<CompiledRoomConfig>,
  presence: KvCache<PresenceRecord>,
  sys: NatsConnection,
  clientAccount: string,
  log: Logger,
): void {
  rooms.onChange((roomId, value) => {
    if (value !== undefined) return;
    const known = [...presence.entries()]
      .filter(([key]) => key.startsWith(`${roomId}.`))
      .flatMap(([, r]) => r.connections);
    void kickAll(sys, [Promise.resolve(known), roomConnections(sys, clientAccount, roomId)])
      .then((n) => log.info({ roomId, kicked: n }, 'room deleted; its connections kicked'))
      .catch((e: unknown) => log.debug({ err: describeError(e) }, 'kick failed'));
  });
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
    jsm,
    signer: c.signer,
    token: c.token,
    livekit: c.livekit,
    renewIntervalMs: RENEW_INTERVAL_MS,
    handLimit: perWindow(
      c.handChanges ?? DEFAULT_HAND_CHANGES,
      c.handWindowMs ?? DEFAULT_HAND_WINDOW_MS,
    ),
    leaveWindowMs: c.leaveWindowMs ?? DEFAULT_LEAVE_WINDOW_MS,
    ...(c.presence.largeRoomThreshold !== undefined
      ? { largeRoomThreshold: c.presence.largeRoomThreshold }
      : {}),
    consumerInactiveThresholdMs:
      c.consumerInactiveThresholdMs ?? DEFAULT_CONSUMER_INACTIVE_THRESHOLD_MS,
    roomLastSeq: async (roomId) => (await jsm.streams.info(roomStreamName(roomId))).state.last_seq,
    now: () => new Date(),
  });
  const metrics = new WorkerMetrics(ops.registry, () => pool.inflight);
  const msgIds = new SystemMsgIds(c.servicePassword);
  const pool: EventPool = new EventPool(nc, handlers, c.pool, metrics, log, msgIds);

  const media = c.livekit ? new MediaRemover(c.livekit, ops.registry, log) : undefined;
  if (media) shutdown.add('media-guards', () => media.stop());
  let sys: NatsConnection | undefined;
  let tracker: PresenceTracker | undefined;
  let flood: FloodGuard | undefined;
  if (c.systemPassword) {
    sys = await connectNats({
      servers: c.servers,
      name: 'torii-worker-presence',
      user: ServiceUser.System,
      pass: c.systemPassword,
      log,
      shutdown,
    });
    tracker = new PresenceTracker(
      sys,
      nc,
      presence.bucket,
      presence,
      roomState,
      c.clientAccount,
      c.presence,
      log,
      msgIds,
      (answer) => flood?.observe(answer),
    );
    flood = new FloodGuard(
      sys,
      c.clientAccount,
      roomState,
      blocks,
      {
        msgsPerSec: c.flood?.msgsPerSec ?? DEFAULT_CONN_MSGS_PER_SEC,
        bytesPerSec: c.flood?.bytesPerSec ?? DEFAULT_CONN_BYTES_PER_SEC,
        pollMs: c.flood?.pollMs ?? DEFAULT_FLOOD_POLL_MS,
        coolOffMs: c.flood?.coolOffMs ?? DEFAULT_FLOOD_COOL_OFF_MS,
      },
      metrics,
      log,
    );
    await tracker.start();
    flood.start();
    const f = flood;
    shutdown.add('flood-guard', () => f.stop());
    const t = tracker;
    shutdown.add('presence', () => t.stop());
    kickOnRoomDeletion(rooms, presence, sys, c.clientAccount, log);
    closeOnNarrowing(rooms, roomState, jsm, sys, c.clientAccount, media, log);
  } else {
    log.warn('no system user password: presence tracking and kicks are off');
  }
  const service = await startService(nc, {
    rooms,
    presence,
    clientAccount: c.clientAccount,
    blocks: blocks.bucket,
    sys,
    media,
    blockTtlMs: c.blockTtlMs,
    signer: c.signer,
    token: c.token,
    version: c.version,
  });
  shutdown.add('service', () => service.stop().then(() => undefined));

  await pool.start(jsm, () => ensureWorkerStream(jsm, c.kvReplicas));
  shutdown.add('event-pool', () => pool.stop());
  ops.addReadiness('queue', () => pool.ready);
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
      presence: sys ? 'on' : 'off',
    },
    'worker ready',
  );
  return { pool, service, tracker, flood };
}
