/**
 * Runs the Room controller: a source of Rooms (Kubernetes or a folder), a work queue with
 * `concurrency` workers, the reconciler, periodic resync, drift detection from the KV watch and
 * NATS reconnects, and (in Kubernetes) leader election so that only one replica reconciles.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { jetstreamManager } from '@nats-io/jetstream';
import { KubeConfig } from '@kubernetes/client-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError, describeError } from '../protocol/errors.js';
import { KvCache, RoomIndex } from '../infra/kv.js';
import type { Logger } from '../runtime/logger.js';
import { connectNats, isConnected } from '../infra/nats.js';
import { ServiceUser } from '../infra/natsconf.js';
import { SystemMsgIds } from '../infra/msg-ids.js';
import type { Ops } from '../runtime/ops.js';
import { occupiesSeat, parsePresence } from '../domain/presence.js';
import { parseRoomConfig } from '../domain/room-compile.js';
import type { Shutdown } from '../runtime/shutdown.js';
import { Bucket } from '../protocol/subjects.js';
import { DirRoomSource } from './dir-source.js';
import { apiErrorSummary, KubeRoomSource } from './kube-source.js';
import { LeaderElector, type LeaseTiming } from './leader.js';
import { ControllerMetrics } from './metrics.js';
import { WorkQueue } from './queue.js';
import { RoomReconciler } from './reconciler.js';
import type { RoomSource } from './source.js';

export { DEFAULT_LEASE_TIMING } from './leader.js';

/** Default reconciles running at once. */
export const DEFAULT_CONCURRENCY = 8;
/** Default period of the full resync, in milliseconds. */
export const DEFAULT_RESYNC_MS = 60_000;
/** At most one status write per Room per this many milliseconds for participant counts. */
const PARTICIPANTS_DEBOUNCE_MS = 5_000;
/** Default name of the leader Lease. */
export const DEFAULT_LEASE_NAME = 'torii-controller';

export interface ControllerConfig {
  servers: string[];
  servicePassword: string;
  kvReplicas: number;
  /** A folder of Room YAML files, or Kubernetes when undefined. */
  roomsDir?: string;
  /** kubeconfig file; in-cluster or the default locations when undefined. */
  kubeconfig?: string;
  /** Watch one namespace; every namespace when undefined. */
  namespace?: string;
  concurrency: number;
  resyncMs: number;
  leaderElection?: { namespace: string; name: string; timing: LeaseTiming };
  /** Identity in the Lease and in Events; hostname + random suffix by default. */
  identity?: string;
}

/** A running controller (stopped through the shutdown hooks it registered). */
export interface RunningController {
  source: RoomSource;
  queue: WorkQueue;
  nc: NatsConnection;
  isLeader: () => boolean;
  metrics: ControllerMetrics;
}

/** Loads a kubeconfig, refusing the silent `localhost:8080` fallback of `loadFromDefault()`. */
function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (file) kc.loadFromFile(file);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (e) {
    throw new ConfigError(
      `--kubeconfig: cannot load ${file ?? 'the default kubeconfig'}: ${describeError(e)}`,
      { flag: '--kubeconfig', cause: e },
    );
  }
  const server = kc.getCurrentCluster()?.server;
  if (
    !server ||
    (!file &&
      !process.env.KUBERNETES_SERVICE_HOST &&
      !process.env.KUBECONFIG &&
      server === 'http://localhost:8080')
  ) {
    throw new ConfigError(
      '--kubeconfig: no Kubernetes cluster configured (set --kubeconfig, KUBECONFIG, or run in a cluster; or use --rooms-dir)',
      {
        flag: '--kubeconfig',
      },
    );
  }
  return kc;
}

export async function runController(
  c: ControllerConfig,
  log: Logger,
  ops: Ops,
  shutdown: Shutdown,
): Promise<RunningController> {
  const identity =
    c.identity ?? process.env.POD_NAME ?? `${os.hostname()}_${randomBytes(4).toString('hex')}`;
  const kc = c.roomsDir === undefined ? loadKubeConfig(c.kubeconfig) : undefined;
  const queue = new WorkQueue();
  const metrics = new ControllerMetrics(ops.registry, () => queue.depth);

  const nc = await connectNats({
    servers: c.servers,
    name: 'torii-controller',
    user: ServiceUser.Service,
    pass: c.servicePassword,
    log,
    shutdown,
  });
  const jsm = await jetstreamManager(nc);
  const rooms = new KvCache(nc, Bucket.Rooms, parseRoomConfig, log, c.kvReplicas);
  const presence = new KvCache(nc, Bucket.Presence, parsePresence, log, c.kvReplicas);
  shutdown.add('kv-caches', () => {
    rooms.stop();
    presence.stop();
  });
  await Promise.all([rooms.start(), presence.start()]);
  const present = new RoomIndex(presence, occupiesSeat);
  const participants = (roomId: string): number => present.room(roomId).size;

  const source: RoomSource = kc
    ? new KubeRoomSource(kc, log, c.namespace, identity)
    : new DirRoomSource(c.roomsDir as string, log);
  const reconciler = new RoomReconciler(
    source,
    {
      nc,
      jsm,
      rooms,
      participants,
      kvReplicas: c.kvReplicas,
      msgIds: new SystemMsgIds(c.servicePassword),
    },
    metrics,
    log,
  );

  // Drift: a KV record changed or deleted behind our back; presence changed the participant count.
  rooms.onChange((roomId) => {
    const key = reconciler.keyOfRoomId(roomId);
    if (key) queue.add(key);
  });
  presence.onChange((presenceKey) => {
    const key = reconciler.keyOfRoomId(presenceKey.slice(0, presenceKey.indexOf('.')));
    if (key) queue.addAfter(key, PARTICIPANTS_DEBOUNCE_MS);
  });
  const enqueueAll = (): void => {
    for (const key of source.keys()) queue.add(key);
  };
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'reconnect') {
        // The server may have come back without its streams: check every Room now.
        reconciler.resetNatsState();
        enqueueAll();
      }
    }
  })();

  let workers: Promise<void>[] = [];
  const work = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const end = metrics.duration.startTimer();
      try {
        const r = await reconciler.reconcile(key);
        queue.forget(key);
        if (r.requeueAfterMs !== undefined) queue.addAfter(key, r.requeueAfterMs);
        metrics.reconciles.inc({ result: 'success' });
      } catch (e) {
        metrics.reconciles.inc({ result: 'error' });
        metrics.errors.inc();
        const delay = queue.addRateLimited(key);
        log.warn(
          { room: key, err: apiErrorSummary(e), retries: queue.retries(key), retryInMs: delay },
          'reconcile failed',
        );
      } finally {
        end();
        queue.done(key);
      }
    }
  };
  const startWorkers = (): void => {
    enqueueAll();
    workers = Array.from({ length: c.concurrency }, () => work());
  };

  // Registered before the first list, which retries until the API answers: readiness says why
  // the controller is not ready yet, and a shutdown meanwhile stops the retries.
  ops.addReadiness('rooms-source', () => source.synced || 'Room source not synced');
  ops.addReadiness('nats', () => isConnected(nc) || 'NATS disconnected');
  shutdown.add('room-source', () => source.stop());
  await source.start((key) => queue.add(key));
  if (shutdown.started) return { source, queue, nc, isLeader: () => false, metrics };
  log.info(
    { source: source.description, rooms: source.keys().length, identity },
    'Room source synced',
  );

  const resync = setInterval(() => {
    if (source instanceof DirRoomSource) void source.rescan();
    enqueueAll();
  }, c.resyncMs);
  shutdown.add('workers', async () => {
    clearInterval(resync);
    queue.shutdown();
    await Promise.all(workers);
  });

  let leader: LeaderElector | undefined;
  if (kc && c.leaderElection) {
    const le = c.leaderElection;
    leader = new LeaderElector(kc, le.namespace, le.name, identity, le.timing, log);
    const elector = leader;
    shutdown.add('leader-election', () => elector.stop());
    elector.start({
      onStartedLeading: () => {
        metrics.leader.set(1);
        startWorkers();
      },
      onStoppedLeading: () => {
        // Another replica may already reconcile: stop at once, as controller-runtime does.
        metrics.leader.set(0);
        void shutdown.run('lost leadership').then(() => process.exit(1));
      },
    });
  } else {
    metrics.leader.set(1);
    startWorkers();
  }
  return { source, queue, nc, isLeader: () => leader?.isLeader ?? true, metrics };
}
