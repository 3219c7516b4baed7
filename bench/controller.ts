/**
 * Controller at scale: N Rooms applied at once to a real kube-apiserver → time until every one is
 * Ready; then a quiet period in which nothing changes → writes to the API server and to
 * JetStream/KV must be zero (checked from the controller's counters and, independently, from the
 * API server's own request metrics and the KV stream's sequence). Prints one JSON line.
 *
 *   npx tsx bench/controller.ts [--rooms 1000] [--quiet 60s] [--resync 10s] [--concurrency 8]
 */
import https from 'node:https';
import { parseArgs } from 'node:util';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { parseDuration } from '../src/runtime/config.js';
import { createLogger } from '../src/runtime/logger.js';
import {
  ROOM_API_GROUP as group,
  ROOM_API_VERSION as version,
  ROOM_PLURAL as plural,
  type RoomResource,
} from '../src/domain/room-spec.js';
import { Bucket, kvStreamName } from '../src/protocol/subjects.js';
import { startController } from '../test/helpers/controller.js';
import { startControlPlane } from '../test/helpers/kube.js';
import { startNats } from '../test/helpers/nats.js';
import { applyRoomCrd, ensureNamespace } from '../test/helpers/rooms-k8s.js';
import { nowMs, pool, r2, report, withCpu } from './lib.js';

const { values } = parseArgs({
  options: {
    rooms: { type: 'string', default: '1000' },
    quiet: { type: 'string', default: '60s' },
    resync: { type: 'string', default: '10s' },
    concurrency: { type: 'string', default: '8' },
  },
});
const N = Number(values.rooms);
const QUIET_MS = parseDuration(values.quiet);
const NS = 'bench';

/** Write requests (POST/PUT/PATCH/DELETE) on Rooms and Events, from the API server's own /metrics. */
function apiserverWrites(server: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get(
        `${server}/metrics`,
        { headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: false },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => {
            let n = 0;
            for (const line of body.split('\n')) {
              if (!line.startsWith('apiserver_request_total{')) continue;
              // Rooms (and their status) and Events: what the controller writes. The API server's
              // own identity Lease renewals in kube-system are not ours and are left out.
              if (
                /verb="(POST|PUT|PATCH|DELETE|APPLY)"/.test(line) &&
                /resource="(rooms|events)"/.test(line)
              )
                n += Number(line.split(' ').at(-1));
            }
            resolve(n);
          });
        },
      )
      .on('error', reject);
  });
}

async function main(): Promise<void> {
  const cp = await startControlPlane();
  const kc = new KubeConfig();
  kc.loadFromFile(cp.state.kubeconfig);
  await applyRoomCrd(kc);
  await ensureNamespace(kc, NS);
  const server = await startNats();
  const svc = await server.connectService();
  const jsm = await jetstreamManager(svc);
  const ctl = await startController(
    server.keys,
    [server.url],
    {
      kubeconfig: cp.state.kubeconfig,
      namespace: NS,
      resyncMs: parseDuration(values.resync),
      concurrency: Number(values.concurrency),
    },
    process.env.BENCH_DEBUG ? createLogger('controller', 'debug') : undefined,
  );
  const api = kc.makeApiClient(CustomObjectsApi);

  const t0 = nowMs();
  const { result: created, cpu } = await withCpu(
    {
      benchAndController: undefined,
      nats: server.process.pid,
      apiserver: cp.state.pids[1],
      etcd: cp.state.pids[0],
    },
    async () => {
      const created = await pool(N, 50, async (i) => {
        await api.createNamespacedCustomObject({
          group,
          version,
          namespace: NS,
          plural,
          body: {
            apiVersion: `${group}/${version}`,
            kind: 'Room',
            metadata: { name: `room-${i}` },
            spec: { title: `Room ${i}`, maxParticipants: 30 },
          },
        });
      });
      let ready = 0;
      while (ready < N && nowMs() - t0 < 300_000) {
        const list = (await api.listNamespacedCustomObject({
          group,
          version,
          namespace: NS,
          plural,
        })) as { items: RoomResource[] };
        ready = list.items.filter(
          (r) =>
            r.status?.observedGeneration === r.metadata.generation &&
            r.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        ).length;
        if (ready < N) await new Promise((r) => setTimeout(r, 1_000));
      }
      return { ...created, ready };
    },
  );
  const readyMs = nowMs() - t0;

  // Quiet period: nothing changes; resyncs keep reading.
  const snapshot = async () => ({
    ctl: {
      apiserver: await ctl.writes('apiserver'),
      jetstream: await ctl.writes('jetstream'),
      kv: await ctl.writes('kv'),
    },
    apiserver: await apiserverWrites(cp.state.server, cp.state.adminToken),
    kvSeq: (await jsm.streams.info(kvStreamName(Bucket.Rooms))).state.last_seq,
    reconciles: await ctl.reconciles(),
  });
  const before = await snapshot();
  await new Promise((r) => setTimeout(r, QUIET_MS));
  const after = await snapshot();
  const streams = (await jsm.streams.names().next()).filter((n) => n.startsWith('room-')).length;

  report({
    bench: 'controller',
    rooms: N,
    concurrency: Number(values.concurrency),
    createMs: r2(created.elapsedMs),
    allReadyMs: r2(readyMs),
    ready: created.ready,
    roomStreams: streams,
    cpuSecondsUntilReady: cpu,
    quiet: {
      seconds: QUIET_MS / 1000,
      reconciles: after.reconciles - before.reconciles,
      controllerWrites: {
        apiserver: after.ctl.apiserver - before.ctl.apiserver,
        jetstream: after.ctl.jetstream - before.ctl.jetstream,
        kv: after.ctl.kv - before.ctl.kv,
      },
      apiserverWriteRequests: after.apiserver - before.apiserver,
      kvStreamSeqDelta: after.kvSeq - before.kvSeq,
    },
    targets: { allReadyMs: 60_000, quietWrites: 0 },
  });

  await ctl.stop();
  await svc.close();
  await server.destroy();
  await cp.stop();
}

await main();
process.exit(0);
