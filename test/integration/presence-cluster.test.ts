/**
 * Presence on a three-node cluster: a server dies with its clients (no DISCONNECT events), and a
 * worker replica dies in the middle of a grace period.
 */
import type { ChildProcess } from 'node:child_process';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { openBucket } from '../../src/infra/kv.js';
import { parsePresence } from '../../src/domain/presence.js';
import { Bucket, kvStreamName } from '../../src/protocol/subjects.js';
import { ensureWorkerStream } from '../../src/infra/streams.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { spawnRole } from '../helpers/cli.js';
import { TestCluster } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

let cluster: TestCluster;
let svc: NatsConnection;
let callout: TestCallout;

async function presenceOf(room: string, user: string, nc: NatsConnection | KV = svc) {
  const kv = 'get' in nc ? nc : await openBucket(nc, Bucket.Presence, 3);
  const e = await kv.get(`${room}.${user}`);
  return e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
}
async function client(serverUrl: string, room: string, user: string): Promise<NatsConnection> {
  return connect({
    servers: serverUrl,
    token: await token(cluster.keys, { room, sub: user, role: 'student' }),
    inboxPrefix: `_INBOX.${room}.${user}`,
    reconnect: false,
    ignoreClusterUpdates: true,
  });
}

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  // svc on n1 only: n3 is the one that dies
  svc = await cluster
    .node(0)
    .connectService({ servers: [cluster.node(0).url, cluster.node(1).url] });
  await openBucket(svc, Bucket.Presence, 3);
  await openBucket(svc, Bucket.RoomState, 3);
  await openBucket(svc, Bucket.Blocks, 3);
  await openBucket(svc, Bucket.Rooms, 3);
  // Everything the data plane needs survives one node: R3 work queue, buckets and room stream.
  await ensureWorkerStream(await jetstreamManager(svc), 3);
  await publishRoom(svc, 'c1', { history: { replicas: 3 } });
  callout = await startCallout(cluster.keys, [cluster.node(0).url, cluster.node(1).url], {
    kvReplicas: 3,
  });
}, 90_000);
afterAll(async () => {
  await callout?.stop();
  await svc?.close();
  await cluster?.destroy();
});

/**
 * A node that is not the JetStream meta leader: losing the meta leader as well would test the
 * Raft election of nats-server rather than presence.
 */
async function notMetaLeader(): Promise<number> {
  const jsz = (await (
    await fetch(new URL('/jsz', cluster.node(0).process.ports.monitoring?.[0]))
  ).json()) as { meta_cluster?: { leader?: string } };
  return [2, 1, 0].find((i) => cluster.node(i).name !== jsz.meta_cluster?.leader) as number;
}

/** Presence grace of the node-kill test, in milliseconds: longer than a stream leader election. */
const GRACE_MS = 12_000;

test("a server killed with its clients: they become away, then left; other servers' users stay", async () => {
  const victimIndex = await notMetaLeader();
  const victim = cluster.node(victimIndex);
  const others = [0, 1, 2].filter((i) => i !== victimIndex).map((i) => cluster.node(i).url);
  const worker: TestWorker = await startWorker(cluster.keys, others, {
    kvReplicas: 3,
    presence: { graceMs: GRACE_MS, resyncMs: 2_000, consumerRetentionMs: 3_600_000 },
  });
  try {
    const onOther = await client(others[0] as string, 'c1', 'stays');
    const onVictim = await client(victim.url, 'c1', 'goes');
    await waitFor(
      'both online',
      async () =>
        (await presenceOf('c1', 'stays'))?.state === 'online' &&
        (await presenceOf('c1', 'goes'))?.state === 'online',
      { timeoutMs: 10_000 },
    );
    // Killing a node is only survivable once every replica has caught up.
    const jsm = await jetstreamManager(svc);
    await waitFor(
      'R3 buckets current on all nodes',
      async () => {
        for (const b of Object.values(Bucket).map(kvStreamName)) {
          const si = await jsm.streams.info(b);
          if (
            (si.cluster?.replicas ?? []).length !== 2 ||
            !si.cluster?.replicas?.every((r) => r.current)
          )
            return false;
        }
        return true;
      },
      { timeoutMs: 30_000 },
    );
    // Observe from a node that stays up, on a connection that never lived on the victim.
    const watcher = await cluster
      .node(victimIndex === 0 ? 1 : 0)
      .connectService({ reconnect: false });
    // Right after the kill, reads of a stream whose leader was on the victim go unanswered until
    // a new leader is elected (seconds on a busy machine): short read timeouts, and a grace period
    // long enough that the away state cannot pass unseen.
    const presence = await new Kvm(jetstream(watcher, { timeout: 1_000 })).open(Bucket.Presence);
    await victim.kill(); // no shutdown event, no DISCONNECT
    await waitFor(
      'away',
      async () => (await presenceOf('c1', 'goes', presence))?.state === 'away',
      { timeoutMs: GRACE_MS },
    );
    await waitFor(
      'left',
      async () => (await presenceOf('c1', 'goes', presence))?.state === 'left',
      {
        timeoutMs: 30_000,
      },
    );
    const stays = await waitFor('the other user read', () => presenceOf('c1', 'stays', presence));
    expect(stays).toMatchObject({ state: 'online' });
    expect(stays.connections).toHaveLength(1);
    await watcher.close();
    await onOther.close();
    await onVictim.close().catch(() => undefined);
  } finally {
    await worker.stop();
    await victim.start();
    await cluster.waitHealthy();
  }
}, 120_000);

test('a worker replica killed during a grace period: another replica finishes it', async () => {
  const urls = [cluster.node(0).url, cluster.node(1).url].join(',');
  const replicas: { proc: ChildProcess; port: number }[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      replicas.push(
        await spawnRole(
          [
            'worker',
            '--nats-url',
            urls,
            '--keys-dir',
            cluster.keys.dir,
            '--kv-replicas',
            '3',
            '--presence-grace',
            '3s',
          ],
          {
            readyTimeoutMs: 45_000,
          },
        ),
      );
    }
    const c = await client(cluster.node(0).url, 'c1', 'graceful');
    await waitFor('online', async () => (await presenceOf('c1', 'graceful'))?.state === 'online', {
      timeoutMs: 10_000,
    });
    (
      c as unknown as { protocol: { transport: { socket: { destroy(): void } } } }
    ).protocol.transport.socket.destroy();
    await waitFor('away', async () => (await presenceOf('c1', 'graceful'))?.state === 'away', {
      timeoutMs: 5_000,
    });
    replicas[0]?.proc.kill('SIGKILL');
    await waitFor(
      'left, finished by the surviving replica',
      async () => (await presenceOf('c1', 'graceful'))?.state === 'left',
      { timeoutMs: 15_000 },
    );
  } finally {
    for (const r of replicas) r.proc.kill('SIGTERM');
  }
}, 90_000);

test('a graceful server shutdown: its users go away, and come back, through the SHUTDOWN event', async () => {
  const victimIndex = await notMetaLeader();
  const victim = cluster.node(victimIndex);
  const others = [0, 1, 2].filter((i) => i !== victimIndex).map((i) => cluster.node(i).url);
  // The reconcile runs once at start and then not for 10 minutes: only the event can explain
  // what follows.
  const worker = await startWorker(cluster.keys, others, {
    kvReplicas: 3,
    presence: { graceMs: 60_000, resyncMs: 600_000, consumerRetentionMs: 3_600_000 },
  });
  const conns: NatsConnection[] = [];
  try {
    const away = await client(victim.url, 'c1', 'shut-away');
    conns.push(away);
    const back = await connect({
      servers: [victim.url, others[0] as string],
      token: await token(cluster.keys, { room: 'c1', sub: 'shut-back', role: 'student' }),
      inboxPrefix: '_INBOX.c1.shut-back',
      ignoreClusterUpdates: true,
      noRandomize: true, // on the victim first; the other server only after the stop
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    conns.push(back);
    await waitFor(
      'both online on the victim',
      async () =>
        (await presenceOf('c1', 'shut-away'))?.state === 'online' &&
        (await presenceOf('c1', 'shut-back'))?.connections.length === 1,
      { timeoutMs: 10_000 },
    );
    const before = await presenceOf('c1', 'shut-back');
    expect(back.info?.server_name).toBe(victim.name);
    await victim.stop(); // SIGTERM: the server announces its shutdown
    const watcher = await cluster
      .node(victimIndex === 0 ? 1 : 0)
      .connectService({ reconnect: false });
    const presence = await new Kvm(jetstream(watcher, { timeout: 1_000 })).open(Bucket.Presence);
    await waitFor(
      'the user without reconnect away',
      async () => (await presenceOf('c1', 'shut-away', presence))?.state === 'away',
      // A bucket whose leader was on the stopped node takes a leader election to write again.
      { timeoutMs: 30_000 },
    );
    const after = await waitFor(
      'the reconnected user on one connection, on another server',
      async () => {
        const r = await presenceOf('c1', 'shut-back', presence);
        return r?.state === 'online' &&
          r.connections.length === 1 &&
          r.connections[0]?.server !== before?.connections[0]?.server
          ? r
          : undefined;
      },
      { timeoutMs: 30_000 },
    ).catch(async (e: Error) => {
      const r = await presenceOf('c1', 'shut-back', presence).catch(() => undefined);
      throw new Error(
        `${e.message}; before ${JSON.stringify(before)}; now ${JSON.stringify(r)}; client on ${back.info?.server_name ?? '?'} (closed: ${back.isClosed()})`,
      );
    });
    expect(after.since).toBe(before?.since); // the same session: no left, no joined
    await watcher.close();
  } finally {
    for (const c of conns) await c.close().catch(() => undefined);
    await worker.stop();
    await victim.start();
    await cluster.waitHealthy();
  }
}, 120_000);
