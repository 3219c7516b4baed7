/**
 * A user consumer has one replica (in memory, docs/protocol.md): when its server dies, JetStream keeps
 * its name but nobody serves it. A device that was on that server reconnects elsewhere and must
 * still get what it missed; a device that connects afterwards must still be admitted. Three
 * nodes, an R3 room stream; every node the consumers were placed on is SIGKILLed.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { connect as nodeConnect, type NatsConnection } from '@nats-io/transport-node';
import { RoomClient, type RoomMessage } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { ensureWorkerStream } from '../../src/infra/streams.js';
import { deviceConsumerName, roomStreamName } from '../../src/protocol/subjects.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { TestCluster, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'restore';
/** Chat messages sent while the consumers' server is down. */
const MISSED = 20;

let cluster: TestCluster;
let svc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  cluster = await TestCluster.start(3);
  ({ nc: svc, jsm } = await cluster.connectApp());
  await publishRoom(svc, ROOM, { history: { replicas: 3 } });
  await ensureWorkerStream(jsm, 3);
}, 90_000);
afterAll(async () => {
  await svc?.close();
  await cluster?.destroy();
});

interface Device {
  userId: string;
  deviceId?: string;
  client: RoomClient;
  got: RoomMessage[];
}

async function connect(
  userId: string,
  servers: string[],
  o: { deviceId?: string; resumeAfter?: number } = {},
): Promise<Device> {
  const client = await RoomClient.connect({
    connect: nodeConnect,
    servers,
    roomId: ROOM,
    userId,
    token: await token(cluster.keys, { room: ROOM, sub: userId, role: 'student' }),
    autoRenew: false,
    // In this order: the first server is the one to be on.
    connection: { reconnectTimeWait: 250, timeout: 10_000, noRandomize: true },
    ...o,
  });
  const d: Device = { userId, client, got: [], ...(o.deviceId ? { deviceId: o.deviceId } : {}) };
  client.on((m) => d.got.push(m));
  return d;
}

/** The server a consumer's (only) replica is on. */
async function placement(name: string): Promise<string | undefined> {
  return (await jsm.consumers.info(roomStreamName(ROOM), name)).cluster?.leader;
}

/**
 * Connects a device to `node` until the consumer the callout made for it lands on that node too
 * (JetStream places it on any of the stream's servers): deletes a misplaced one and tries again.
 */
async function connectPlacedOn(node: TestNats, userId: string, deviceId?: string): Promise<Device> {
  const name = deviceConsumerName(userId, deviceId);
  const urls = [node.url, ...cluster.nodes.filter((n) => n !== node).map((n) => n.url)];
  for (let i = 0; i < 30; i++) {
    const d = await connect(userId, urls, deviceId ? { deviceId } : {});
    if (d.client.nc.info?.server_name === node.name && (await placement(name)) === node.name)
      return d;
    await d.client.close({ leave: false });
    await jsm.consumers.delete(roomStreamName(ROOM), name);
  }
  throw new Error(`consumer ${name} never placed on ${node.name}`);
}

const chats = (d: Device): string[] =>
  d.got.filter((m) => m.kind === 'chat').map((m) => (m.body as { text: string }).text);

test("a device whose consumer's one server died gets everything it missed, and a device connecting later is admitted and catches up", async () => {
  // Not the meta leader: its election would come on top of what is measured.
  const jsz = (await (
    await fetch(new URL('/jsz', cluster.node(0).process.ports.monitoring?.[0]))
  ).json()) as { meta_cluster?: { leader?: string } };
  const victim = cluster.nodes.find((n) => n.name !== jsz.meta_cluster?.leader) as TestNats;
  const others = cluster.nodes.filter((n) => n !== victim).map((n) => n.url);
  let callout: TestCallout = await startCallout(cluster.keys, others, { kvReplicas: 3 });
  const worker: TestWorker = await startWorker(cluster.keys, others, { kvReplicas: 3 });
  const open: Device[] = [];
  try {
    const sender = await connect('sender', others);
    open.push(sender);
    // Stays connected through the kill: its callout remembers its consumer, so the worker
    // restores it (REQ_RESTORE_CONSUMER).
    const stays = await connectPlacedOn(victim, 'stays');
    open.push(stays);
    // Away during the kill, then admitted by a callout that never saw its consumer, which finds
    // it offline and restores it while admitting.
    const away = await connectPlacedOn(victim, 'away', 'tab');
    await sender.client.chat('before');
    await waitFor('the chat before, on both', () =>
      [stays, away].every((d) => chats(d).includes('before')),
    );
    const awayLast = away.client.lastSequence;
    await away.client.close({ leave: false });

    await victim.kill();
    const killedAt = Date.now();
    for (let i = 0; i < MISSED; i++) await sender.client.chat(`missed ${i}`);
    // The stranded device's own request: its answer is stored while it cannot catch up.
    const raised = stays.client.request(RequestEvent.RaiseHand, {}, 60_000);
    const expected = ['before', ...Array.from({ length: MISSED }, (_, i) => `missed ${i}`)];
    await waitFor(
      'the stranded device has every chat',
      () => chats(stays).length >= expected.length,
      {
        timeoutMs: 60_000,
        intervalMs: 20,
      },
    );
    const staysMs = Date.now() - killedAt;
    await raised;

    // A fresh callout (nothing cached) admits the device that was away.
    await callout.stop();
    callout = await startCallout(cluster.keys, others, { kvReplicas: 3 });
    const connectStarted = Date.now();
    const back = await connect('away', others, { deviceId: 'tab', resumeAfter: awayLast });
    open.push(back);
    await waitFor(
      'the returning device has every missed chat',
      () => chats(back).length >= MISSED,
      {
        timeoutMs: 30_000,
        intervalMs: 20,
      },
    );
    const backMs = Date.now() - connectStarted;
    console.log(`consumer-restore: ${JSON.stringify({ victim: victim.name, staysMs, backMs })}`);

    // Each got everything, in stream order, once.
    expect(chats(stays)).toEqual(expected);
    expect(chats(back)).toEqual(expected.slice(1));
    for (const d of [stays, back]) {
      const seqs = d.got.map((m) => m.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(new Set(seqs).size).toBe(seqs.length);
    }
    // Both consumers live on a server that is up: the worker restored one, the callout the other.
    for (const name of [deviceConsumerName('stays'), deviceConsumerName('away', 'tab')]) {
      const p = await placement(name);
      expect(p === undefined || p === victim.name ? `${name} on ${String(p)}` : 'moved').toBe(
        'moved',
      );
    }
    const restores = await worker.ops.registry.getSingleMetric('torii_worker_events_total')?.get();
    expect(
      restores?.values.some(
        (v) => v.labels.event === RequestEvent.RestoreConsumer && v.labels.outcome === 'ok',
      ),
    ).toBe(true);
    const ensured = await callout.ops.registry
      .getSingleMetric('torii_auth_consumer_ensure_total')
      ?.get();
    // One restore, shared by every admission attempt that waited for it.
    expect(ensured?.values.find((v) => v.labels.result === 'restored')?.value).toBeGreaterThan(0);
  } finally {
    await Promise.all(open.map((d) => d.client.close({ leave: false })));
    await worker.stop();
    await callout.stop();
    await victim.start();
    await cluster.waitHealthy(60_000);
  }
}, 180_000);
