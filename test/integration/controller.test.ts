/**
 * The Room controller against a real kube-apiserver + etcd and a real nats-server: apply, change,
 * validate, delete (both policies), drift repair, NATS outages.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { openBucket } from '../../src/infra/kv.js';
import { parseRoomConfig, type CompiledRoomConfig } from '../../src/domain/room-compile.js';
import { CONSUMERS_PER_SEAT } from '../../src/infra/streams.js';
import { Bucket, roomEventsSubject } from '../../src/protocol/subjects.js';
import { findTool } from '../../src/devtools/tools.js';
import { startController, type TestController } from '../helpers/controller.js';
import { kubeConfig, sharedControlPlane } from '../helpers/kube.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { runAsync, waitFor } from '../helpers/procs.js';
import { applyRoomCrd, ensureNamespace, Rooms } from '../helpers/rooms-k8s.js';

const NS = 'ctl-test';
let kc: KubeConfig;
let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let ctl: TestController;
let rooms: Rooms;

async function kvRoom(roomId: string): Promise<CompiledRoomConfig | undefined> {
  const kv = await openBucket(svc, Bucket.Rooms);
  const e = await kv.get(roomId);
  return e && e.operation === 'PUT' ? parseRoomConfig(e.json()) : undefined;
}

async function streamExists(name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  kc = await kubeConfig();
  await applyRoomCrd(kc);
  await ensureNamespace(kc, NS);
  rooms = new Rooms(kc, NS);
  server = await startNats();
  svc = await server.connectService({ maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  jsm = await jetstreamManager(svc);
  ctl = await startController(server.keys, [server.url], {
    kubeconfig: (await sharedControlPlane()).kubeconfig,
    namespace: NS,
  });
});

afterAll(async () => {
  await ctl?.stop();
  await svc?.close();
  await server?.destroy();
});

describe('apply', () => {
  test('a Room becomes a stream with its limits, a compiled KV config and Ready status', async () => {
    await rooms.create('n5-evening', {
      title: 'JLPT N5 — evening class',
      maxParticipants: 50,
      roles: {
        teacher: { chat: true, whiteboard: true, moderator: true, media: { canPublish: true } },
        student: { chat: true },
      },
      media: { livekitRoom: 'n5-evening', broadcast: true },
      history: { maxAge: '2h', maxMessages: 5000, maxBytes: '64Mi' },
    });
    const room = await rooms.waitReady('n5-evening');
    expect(room.status?.observedGeneration).toBe(room.metadata.generation);
    expect(room.status?.roomId).toBe('n5-evening');
    expect(room.metadata.finalizers).toContain('torii.io/cleanup');
    const types = room.status?.conditions?.map((c) => `${c.type}=${c.status}`).sort();
    expect(types).toEqual(['ConfigPublished=True', 'Ready=True', 'StreamReady=True']);
    expect(room.status?.stream).toEqual({ name: 'n5-evening', messages: 0, bytes: 0 });
    expect(room.status?.joinedParticipants).toBe(0);

    const si = await jsm.streams.info('n5-evening');
    expect(si.config).toMatchObject({
      subjects: [
        'room.n5-evening.chat.*',
        'room.n5-evening.wb.*',
        'room.n5-evening.evt',
        'room.n5-evening.evt.*',
        'room.n5-evening.user.*',
      ],
      max_msgs: 5000,
      max_age: 2 * 3600 * 1e9,
      max_bytes: 64 * 1024 * 1024,
      num_replicas: 1,
      max_consumers: 50 * CONSUMERS_PER_SEAT, // maxParticipants 50
    });
    expect(await streamExists('sysJsWorker')).toBe(true);

    const cfg = await kvRoom('n5-evening');
    expect(cfg).toMatchObject({
      roomId: 'n5-evening',
      title: 'JLPT N5 — evening class',
      maxParticipants: 50,
      media: { broadcast: true },
      source: `${NS}/n5-evening`,
    });
    expect(Object.keys(cfg?.roles ?? {}).sort()).toEqual(['student', 'teacher']);
    expect(cfg?.roles.student?.permissions.publish).toContain('room.{roomId}.chat.{userId}');
    expect(cfg?.roles.student?.permissions.publish).not.toContain('room.{roomId}.wb.{userId}');
  });

  test('kubectl get rooms shows the printer columns', async () => {
    const { kubeconfig } = await sharedControlPlane();
    const r = await runAsync(findTool('kubectl'), [
      '--kubeconfig',
      kubeconfig,
      'get',
      'rooms',
      '-n',
      NS,
      'n5-evening',
    ]);
    expect(r.stderr).toBe('');
    const [header, row] = r.stdout.trim().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['NAME', 'ROOM ID', 'READY', 'PARTICIPANTS', 'AGE']);
    expect(row?.split(/\s{2,}/).slice(0, 4)).toEqual(['n5-evening', 'n5-evening', 'True', '0']);
  });

  test('Normal Events are recorded', async () => {
    const events = await kc
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=n5-evening' });
    const reasons = events.items.map((e) => `${e.type}/${e.reason}`);
    expect(reasons).toContain('Normal/StreamCreated');
    expect(reasons).toContain('Normal/Reconciled');
  });
});

describe('change', () => {
  test('a spec change updates the stream and the KV config, is observed and announced', async () => {
    const before = await rooms.waitReady('n5-evening');
    const evt = svc.subscribe(roomEventsSubject('n5-evening'), { max: 1 });
    await svc.flush();
    await rooms.update('n5-evening', (s) => ({
      ...s,
      title: 'N5 — evening (moved)',
      history: { ...s.history, maxMessages: 7000 },
    }));
    const after = await waitFor('new generation observed', async () => {
      const r = await rooms.waitReady('n5-evening');
      return (r.metadata.generation ?? 0) > (before.metadata.generation ?? 0) ? r : undefined;
    });
    expect(after.status?.observedGeneration).toBe(after.metadata.generation);
    expect((await jsm.streams.info('n5-evening')).config.max_msgs).toBe(7000);
    expect((await kvRoom('n5-evening'))?.title).toBe('N5 — evening (moved)');
    // participants hear of it (EVT_ROOM_UPDATED), once, and it is stored for late joiners
    for await (const m of evt)
      expect(m.json()).toMatchObject({
        event: 'EVT_ROOM_UPDATED',
        data: { roomId: 'n5-evening', title: 'N5 — evening (moved)' },
      });
    const stored = await jsm.streams.getMessage('n5-evening', {
      last_by_subj: roomEventsSubject('n5-evening'),
    });
    expect(stored?.json<{ event: string }>().event).toBe('EVT_ROOM_UPDATED');
  });

  test('nothing is written while nothing changes', async () => {
    await rooms.waitReady('n5-evening');
    const writes = await ctl.writes();
    const reconciles = await ctl.reconciles();
    // several resyncs (1 s each in this test) go by
    await waitFor('three more reconciles', async () => (await ctl.reconciles()) >= reconciles + 3, {
      timeoutMs: 10_000,
    });
    expect(await ctl.writes()).toBe(writes);
  });
});

describe('validation', () => {
  test.each([
    ['maxParticipants 0 (schema)', { maxParticipants: 0 }, /maxParticipants/],
    ['unknown storage (schema)', { history: { storage: 'tape' } }, /storage/],
    ['bad roomId (schema)', { roomId: 'a.b' }, /roomId/],
    ['reserved roomId (CEL)', { roomId: 'torii_x' }, /reserved/],
    ['bad role name (CEL)', { roles: { 'a b': {} } }, /role names/],
  ])('the API server rejects %s', async (_name, spec, message) => {
    await expect(
      rooms.create(`bad-${Math.random().toString(36).slice(2, 8)}`, spec as never),
    ).rejects.toMatchObject({ code: 422, body: expect.stringMatching(message) as unknown });
  });

  test('a metadata.name that cannot be a roomId needs spec.roomId (CEL)', async () => {
    await expect(rooms.create('has.dots', {})).rejects.toMatchObject({
      code: 422,
      body: expect.stringMatching(/metadata.name is used as the roomId/) as unknown,
    });
    await rooms.create('has.dots', { roomId: 'has-dots' });
    expect((await rooms.waitReady('has.dots')).status?.roomId).toBe('has-dots');
  });

  test('roomId and history.storage are immutable (CEL)', async () => {
    await rooms.waitReady('n5-evening');
    await expect(
      rooms.update('n5-evening', (s) => ({ ...s, roomId: 'other' })),
    ).rejects.toMatchObject({
      code: 422,
      body: expect.stringMatching(/roomId is immutable/) as unknown,
    });
    await expect(
      rooms.update('n5-evening', (s) => ({ ...s, history: { ...s.history, storage: 'memory' } })),
    ).rejects.toMatchObject({
      code: 422,
      body: expect.stringMatching(/history.storage is immutable/) as unknown,
    });
  });

  test('what the schema cannot check is reported as InvalidSpec, with a Warning and no hot loop', async () => {
    await rooms.create('empty-age', { history: { maxAge: '' } });
    const r = await rooms.waitReady('empty-age', 'False', 'InvalidSpec');
    expect(r.status?.conditions?.find((c) => c.type === 'Ready')?.message).toMatch(
      /spec.history.maxAge/,
    );
    expect(await streamExists('empty-age')).toBe(false);
    const events = await kc
      .makeApiClient(CoreV1Api)
      .listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=empty-age' });
    expect(events.items.map((e) => `${e.type}/${e.reason}`)).toContain('Warning/InvalidSpec');
    const writes = await ctl.writes();
    const errors = await ctl.reconciles('error');
    const reconciles = await ctl.reconciles();
    await waitFor('resyncs pass', async () => (await ctl.reconciles()) >= reconciles + 4, {
      timeoutMs: 10_000,
    });
    expect(await ctl.writes()).toBe(writes); // no status rewrites
    expect(await ctl.reconciles('error')).toBe(errors); // no retry storm
    await rooms.update('empty-age', (s) => ({ ...s, history: { ...s.history, maxAge: '1h' } }));
    await rooms.waitReady('empty-age');
  });

  test('JetStream refusing the stream is reported as StreamCreateFailed and retried with backoff', async () => {
    await rooms.create('too-big', { history: { maxBytes: '100Ti' } });
    const r = await rooms.waitReady('too-big', 'False', 'StreamCreateFailed');
    expect(r.status?.conditions?.find((c) => c.type === 'Ready')?.message).toMatch(
      /JetStream refused to create stream too-big: .*insufficient/i,
    );
    await rooms.update('too-big', (s) => ({ ...s, history: { ...s.history, maxBytes: '1Mi' } }));
    await rooms.waitReady('too-big');
    expect((await jsm.streams.info('too-big')).config.max_bytes).toBe(1024 * 1024);
  });

  test('two Rooms cannot claim one roomId', async () => {
    await rooms.create('claim-b', { roomId: 'n5-evening' });
    const r = await rooms.waitReady('claim-b', 'False', 'RoomIdConflict');
    expect(r.status?.conditions?.find((c) => c.type === 'Ready')?.message).toContain(
      `${NS}/n5-evening`,
    );
    expect((await kvRoom('n5-evening'))?.source).toBe(`${NS}/n5-evening`);
    await rooms.delete('claim-b');
    await rooms.waitGone('claim-b');
    expect(await streamExists('n5-evening')).toBe(true); // the loser's deletion leaves the owner alone
    expect(await kvRoom('n5-evening')).toBeDefined();
  });
});

describe('delete', () => {
  test('Delete policy: session ended, stream and KV gone, finalizer released', async () => {
    await rooms.create('gone-soon', {});
    await rooms.waitReady('gone-soon');
    const evt = svc.subscribe('room.gone-soon.evt', { max: 1 });
    await svc.flush();
    await rooms.delete('gone-soon');
    await rooms.waitGone('gone-soon');
    for await (const m of evt)
      expect(m.json<{ event: string; data: { roomId: string } }>()).toMatchObject({
        event: 'EVT_SESSION_ENDED',
        data: { roomId: 'gone-soon' },
      });
    expect(await streamExists('gone-soon')).toBe(false);
    expect(await kvRoom('gone-soon')).toBeUndefined();
  });

  test('Retain policy: stream kept, KV gone', async () => {
    await rooms.create('kept', { deletionPolicy: 'Retain' });
    await rooms.waitReady('kept');
    await rooms.delete('kept');
    await rooms.waitGone('kept');
    expect(await streamExists('kept')).toBe(true);
    expect(await kvRoom('kept')).toBeUndefined();
    await jsm.streams.delete('kept');
  });
});

describe('drift and outages', () => {
  test('a stream deleted behind the controller comes back within a resync', async () => {
    await rooms.waitReady('n5-evening');
    await jsm.streams.delete('n5-evening');
    await waitFor('stream recreated', () => streamExists('n5-evening'), { timeoutMs: 10_000 });
    expect((await jsm.streams.info('n5-evening')).config.max_msgs).toBe(7000);
  });

  test('a KV entry deleted behind the controller comes back', async () => {
    const kv = await openBucket(svc, Bucket.Rooms);
    await kv.delete('n5-evening');
    await waitFor(
      'KV entry republished',
      async () => (await kvRoom('n5-evening'))?.roomId === 'n5-evening',
      { timeoutMs: 10_000 },
    );
  });

  test('NATS down: Ready=False NatsUnavailable; back with an empty store: streams and KV come back', async () => {
    await server.process.stop();
    await rooms.waitReady('n5-evening', 'False', 'NatsUnavailable', 30_000);
    await server.restart({ wipe: true });
    await rooms.waitReady('n5-evening', 'True', undefined, 30_000);
    await waitFor(
      'everything back',
      async () =>
        (await streamExists('n5-evening')) &&
        (await streamExists('has-dots')) &&
        (await streamExists('sysJsWorker')),
      { timeoutMs: 20_000 },
    );
    await waitFor(
      'KV back',
      async () =>
        (await kvRoom('n5-evening')) !== undefined && (await kvRoom('has-dots')) !== undefined,
      { timeoutMs: 20_000 },
    );
  }, 90_000);
});
