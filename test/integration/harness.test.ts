/**
 * Proves the test harness runs real servers: a real nats-server with JetStream, a three-node
 * cluster that survives losing a node, and a real kube-apiserver that serves custom resources.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { ApiextensionsV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { TestCluster, startNats, type TestNats } from '../helpers/nats.js';
import { applyCrd, kubeConfig, sharedControlPlane } from '../helpers/kube.js';
import { isAlive, waitFor } from '../helpers/procs.js';

describe('nats-server harness', () => {
  let server: TestNats;
  beforeAll(async () => {
    server = await startNats({ websocket: true });
  });
  afterAll(async () => {
    await server?.destroy();
  });

  test('a JetStream stream round-trips a message', async () => {
    const nc = await server.connectService();
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'harness', subjects: ['harness.>'] });
      const js = jetstream(nc);
      const ack = await js.publish('harness.one', 'hello');
      expect(ack.stream).toBe('harness');
      const msg = await jsm.streams.getMessage('harness', { seq: ack.seq });
      expect(msg?.string()).toBe('hello');
    } finally {
      await nc.close();
    }
  });

  test('clients without credentials are not let in (auth callout configured, no callout running)', async () => {
    const { connect } = await import('@nats-io/transport-node');
    await expect(
      connect({
        servers: server.url,
        token: 'not-a-room-token',
        timeout: 3_000,
        maxReconnectAttempts: 0,
      }),
    ).rejects.toThrow();
  });

  test('the service user cannot act as the system account', async () => {
    const nc = await server.connectService();
    try {
      await expect(nc.request('$SYS.REQ.SERVER.PING', '', { timeout: 500 })).rejects.toThrow();
    } finally {
      await nc.close();
    }
    const sys = await server.connectSystem();
    try {
      const reply = await sys.request('$SYS.REQ.SERVER.PING', '', { timeout: 2_000 });
      expect(reply.json<{ server: { name: string } }>().server.name).toBe(server.name);
    } finally {
      await sys.close();
    }
  });

  test('destroy leaves no process behind', async () => {
    const extra = await startNats({ keys: server.keys });
    const pid = extra.process.pid;
    expect(pid).toBeDefined();
    expect(isAlive(pid as number)).toBe(true);
    await extra.destroy();
    await waitFor('nats-server exit', () => !isAlive(pid as number));
  });
});

describe('three-node nats cluster', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start(3);
  }, 60_000);
  afterAll(async () => {
    await cluster?.destroy();
  });

  test('an R3 stream stays writable with one node stopped, and the node rejoins', async () => {
    const nc = await cluster.node(0).connectService({ servers: cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'r3', subjects: ['r3.>'], num_replicas: 3 });
      const js = jetstream(nc);
      await js.publish('r3.a', 'before');

      const victim = cluster.node(2);
      const pid = victim.process.pid as number;
      await victim.stop();
      expect(isAlive(pid)).toBe(false);

      const ack = await waitFor(
        'publish with a node down',
        () => js.publish('r3.a', 'during', { timeout: 2_000 }),
        {
          timeoutMs: 20_000,
        },
      );
      expect(ack.seq).toBe(2);

      await victim.restart();
      await cluster.waitHealthy();
      const info = await waitFor(
        'replica caught up',
        async () => {
          const si = await jsm.streams.info('r3');
          const replicas = si.cluster?.replicas ?? [];
          return replicas.length === 2 && replicas.every((r) => r.current) ? si : undefined;
        },
        { timeoutMs: 20_000 },
      );
      expect(info.state.messages).toBe(2);
    } finally {
      await nc.close();
    }
  }, 90_000);
});

describe('kube-apiserver harness', () => {
  const group = 'harness.torii.io';

  test('accepts a CustomResourceDefinition and a resource of it', async () => {
    const kc = await kubeConfig();
    await applyCrd(kc, {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `widgets.${group}` },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: {
                  spec: { type: 'object', properties: { size: { type: 'integer', minimum: 1 } } },
                },
              },
            },
          },
        ],
      },
    });
    const api = kc.makeApiClient(CustomObjectsApi);
    const body = {
      apiVersion: `${group}/v1`,
      kind: 'Widget',
      metadata: { name: 'w1' },
      spec: { size: 3 },
    };
    await api.createNamespacedCustomObject({
      group,
      version: 'v1',
      namespace: 'default',
      plural: 'widgets',
      body,
    });
    const got = (await api.getNamespacedCustomObject({
      group,
      version: 'v1',
      namespace: 'default',
      plural: 'widgets',
      name: 'w1',
    })) as {
      spec: { size: number };
      metadata: { uid: string };
    };
    expect(got.spec.size).toBe(3);
    expect(got.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);

    // The schema is enforced by the real API server.
    await expect(
      api.createNamespacedCustomObject({
        group,
        version: 'v1',
        namespace: 'default',
        plural: 'widgets',
        body: { ...body, metadata: { name: 'w2' }, spec: { size: 0 } },
      }),
    ).rejects.toMatchObject({ code: 422 });
    await kc
      .makeApiClient(ApiextensionsV1Api)
      .deleteCustomResourceDefinition({ name: `widgets.${group}` });
  });

  test('RBAC is enforced: a user without bindings is forbidden', async () => {
    const state = await sharedControlPlane();
    const kc = await kubeConfig();
    kc.users[0] = { name: 'admin', token: state.unprivilegedToken };
    const { CoreV1Api } = await import('@kubernetes/client-node');
    await expect(
      kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: 'default' }),
    ).rejects.toMatchObject({ code: 403 });
  });
});
