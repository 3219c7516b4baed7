/**
 * Presence from the server's connection events: joins and leaves, the grace period after a
 * dropped connection, two tabs, reconnects, kicks and room deletion (worker grace period 2 s).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { RoomClient } from '../../src/client/index.js';
import { type RoomMessage } from '../../src/client/index.js';
import { openBucket } from '../../src/infra/kv.js';
import { parsePresence } from '../../src/domain/presence.js';
import { DEFAULT_ACCOUNTS } from '../../src/infra/natsconf.js';
import { handKey, memberKey } from '../../src/domain/room-state.js';
import { Bucket, kvStreamName, kvSubject, Sys } from '../../src/protocol/subjects.js';
import { joinRoom, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const GRACE_MS = 2_000;
let server: TestNats;
let svc: NatsConnection;
let callout: TestCallout;
let worker: TestWorker;
let observer: RoomClient;
const events: RoomMessage[] = [];
const clients: RoomClient[] = [];

async function join(room: string, user: string, role = 'student'): Promise<RoomClient> {
  const c = await joinRoom(server.url, server.keys, room, user, { role });
  clients.push(c);
  return c;
}
const seen = (event: string, userId: string): RoomMessage[] =>
  events.filter(
    (m) =>
      (m.body as { event: string; data: { userId: string } }).event === event &&
      (m.body as { data: { userId: string } }).data.userId === userId,
  );
async function presenceOf(room: string, user: string) {
  const e = await (await openBucket(svc, Bucket.Presence)).get(`${room}.${user}`);
  return e?.operation === 'PUT' ? parsePresence(e.json()) : undefined;
}
/** Destroys the client's socket: no goodbye, like a network that vanished. */
function dropSocket(nc: NatsConnection): void {
  (
    nc as unknown as { protocol: { transport: { socket: { destroy(): void } } } }
  ).protocol.transport.socket.destroy();
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  await publishRoom(svc, 'p1');
  await publishRoom(svc, 'doomed');
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
  observer = await join('p1', 'watcher', 'teacher');
  observer.on((m) => m.kind === 'event' && events.push(m));
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close({ leave: false }).catch(() => undefined)));
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

test('join, then leave with a clean close: both events within 1 s', async () => {
  const c = await join('p1', 'hana');
  await waitFor('joined', () => seen('EVT_PARTICIPANT_JOINED', 'hana').length === 1, {
    timeoutMs: 1_000,
  });
  const closedAt = Date.now();
  await c.close();
  await waitFor('left', () => seen('EVT_PARTICIPANT_LEFT', 'hana').length === 1, {
    timeoutMs: 1_500,
  });
  const at = Date.parse((seen('EVT_PARTICIPANT_LEFT', 'hana')[0]?.body as { at: string }).at);
  expect(at - closedAt).toBeLessThan(1_000);
  expect((await presenceOf('p1', 'hana'))?.state).toBe('left');
});

test('a dropped connection: away, then left after the grace period, and the hand is lowered', async () => {
  const c = await join('p1', 'kenji');
  await c.request('REQ_RAISE_HAND');
  await waitFor('joined', () => seen('EVT_PARTICIPANT_JOINED', 'kenji').length === 1);
  // no reconnect: the client is gone for good
  (c.nc as unknown as { options: { reconnect: boolean } }).options.reconnect = false;
  const droppedAt = Date.now();
  dropSocket(c.nc);
  await waitFor('away', async () => (await presenceOf('p1', 'kenji'))?.state === 'away', {
    timeoutMs: 1_000,
  });
  expect(seen('EVT_PARTICIPANT_LEFT', 'kenji')).toHaveLength(0);
  await waitFor('left after grace', () => seen('EVT_PARTICIPANT_LEFT', 'kenji').length === 1, {
    timeoutMs: GRACE_MS + 2_000,
  });
  const leftAt = Date.parse((seen('EVT_PARTICIPANT_LEFT', 'kenji')[0]?.body as { at: string }).at);
  expect(leftAt - droppedAt).toBeGreaterThanOrEqual(GRACE_MS - 100);
  expect(leftAt - droppedAt).toBeLessThan(GRACE_MS + 2_000);
  await waitFor('hand lowered', () => seen('EVT_HAND_LOWERED', 'kenji').length === 1);
  expect(seen('EVT_HAND_LOWERED', 'kenji')[0]?.body).toMatchObject({
    data: { userId: 'kenji', by: 'system' },
  });
  const initial = await observer.request<{
    participants: { userId: string }[];
    hands: { userId: string }[];
  }>('REQ_INITIAL_DATA');
  expect(initial.participants.map((p) => p.userId)).not.toContain('kenji');
  expect(initial.hands.map((h) => h.userId)).not.toContain('kenji');
});

test('reconnecting within the grace period sends neither left nor joined', async () => {
  const c = await join('p1', 'yuki');
  await waitFor('joined', () => seen('EVT_PARTICIPANT_JOINED', 'yuki').length === 1);
  let reconnected = false;
  void (async () => {
    for await (const s of c.nc.status()) if (s.type === 'reconnect') reconnected = true;
  })();
  const droppedAt = Date.now();
  dropSocket(c.nc); // nats.js reconnects at once, with a new connection id
  await waitFor('reconnected', () => reconnected);
  await waitFor('online again', async () => (await presenceOf('p1', 'yuki'))?.state === 'online');
  await waitFor('the grace period is over', () => Date.now() > droppedAt + GRACE_MS + 1_000, {
    timeoutMs: GRACE_MS + 3_000,
  });
  expect(seen('EVT_PARTICIPANT_LEFT', 'yuki')).toHaveLength(0);
  expect(seen('EVT_PARTICIPANT_JOINED', 'yuki')).toHaveLength(1);
  expect((await presenceOf('p1', 'yuki'))?.connections).toHaveLength(1);
});

test('two tabs: online until both close', async () => {
  const tab1 = await join('p1', 'taro');
  const tab2 = await join('p1', 'taro');
  await waitFor(
    'two connections',
    async () => (await presenceOf('p1', 'taro'))?.connections.length === 2,
  );
  await tab1.close();
  await waitFor(
    'one connection',
    async () => (await presenceOf('p1', 'taro'))?.connections.length === 1,
  );
  expect((await presenceOf('p1', 'taro'))?.state).toBe('online');
  expect(seen('EVT_PARTICIPANT_LEFT', 'taro')).toHaveLength(0);
  await tab2.close();
  await waitFor('left', () => seen('EVT_PARTICIPANT_LEFT', 'taro').length === 1, {
    timeoutMs: 1_500,
  });
  expect(seen('EVT_PARTICIPANT_JOINED', 'taro')).toHaveLength(1);
});

test("kick: the user's connections close within 1 s and its token is refused", async () => {
  const t = await token(server.keys, { room: 'p1', sub: 'troll', role: 'student' });
  const a = await connect({
    servers: server.url,
    token: t,
    inboxPrefix: '_INBOX.p1.troll',
    maxReconnectAttempts: 0,
  });
  const b = await connect({
    servers: server.url,
    token: t,
    inboxPrefix: '_INBOX.p1.troll',
    maxReconnectAttempts: 0,
  });
  await waitFor('tracked', async () => (await presenceOf('p1', 'troll'))?.connections.length === 2);
  const disconnected = (nc: NatsConnection): Promise<void> =>
    (async () => {
      for await (const st of nc.status()) if (st.type === 'disconnect') return;
    })();
  const kickedAt = Date.now();
  const r = (
    await svc.request(
      'torii.rooms.kick',
      JSON.stringify({ roomId: 'p1', userId: 'troll', reason: 'spam' }),
      { timeout: 5_000 },
    )
  ).json<{ kicked: number }>();
  expect(r.kicked).toBe(2);
  // The server closes both connections at once (its DISCONNECT events reach the tracker)...
  await waitFor(
    'server closed both',
    async () => (await presenceOf('p1', 'troll'))?.connections.length === 0,
    { timeoutMs: 1_000 },
  );
  expect(Date.now() - kickedAt).toBeLessThan(1_000);
  // ...and the clients see it (nats.js reports it after its reconnect wait).
  await Promise.all([disconnected(a), disconnected(b)]);
  await expect(
    connect({
      servers: server.url,
      token: t,
      inboxPrefix: '_INBOX.p1.troll',
      maxReconnectAttempts: 0,
    }),
  ).rejects.toThrow(/Authorization Violation/);
});

test('deleting the room disconnects all its clients and refuses their tokens', async () => {
  const t1 = await token(server.keys, { room: 'doomed', sub: 'a1', role: 'student' });
  const t2 = await token(server.keys, { room: 'doomed', sub: 'a2', role: 'teacher' });
  const c1 = await connect({
    servers: server.url,
    token: t1,
    inboxPrefix: '_INBOX.doomed.a1',
    maxReconnectAttempts: 0,
  });
  const c2 = await connect({
    servers: server.url,
    token: t2,
    inboxPrefix: '_INBOX.doomed.a2',
    maxReconnectAttempts: 0,
  });
  await waitFor(
    'tracked',
    async () =>
      (await presenceOf('doomed', 'a1'))?.state === 'online' &&
      (await presenceOf('doomed', 'a2'))?.state === 'online',
  );
  await (await openBucket(svc, Bucket.Rooms)).delete('doomed'); // what the controller does on deletion
  await Promise.all([c1.closed(), c2.closed()]);
  await expect(
    connect({
      servers: server.url,
      token: t1,
      inboxPrefix: '_INBOX.doomed.a1',
      maxReconnectAttempts: 0,
    }),
  ).rejects.toThrow(/Authorization Violation/);
});

test('the tracker repairs missed events from the servers (CONNZ)', async () => {
  const c = await join('p1', 'ghostly');
  await waitFor('online', async () => (await presenceOf('p1', 'ghostly'))?.state === 'online');
  // Someone wipes the record (a missed CONNECT, as far as the tracker can tell).
  await (await openBucket(svc, Bucket.Presence)).delete('p1.ghostly');
  await worker.tracker?.reconcile();
  await waitFor(
    'repaired',
    async () => (await presenceOf('p1', 'ghostly'))?.connections.length === 1,
  );
  await c.close();
});

test('deleting a Room through the controller: clients get EVT_SESSION_ENDED, then are disconnected', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { startController } = await import('../helpers/controller.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'torii-test-rooms-'));
  writeFileSync(
    path.join(dir, 'closing.yaml'),
    'apiVersion: torii.io/v1alpha1\nkind: Room\nmetadata: { name: closing }\nspec: { title: Closing soon }\n',
  );
  const ctl = await startController(server.keys, [server.url], { roomsDir: dir });
  try {
    await waitFor(
      'room published',
      async () => (await (await openBucket(svc, Bucket.Rooms)).get('closing'))?.operation === 'PUT',
    );
    const members = [await join('closing', 'm1', 'teacher'), await join('closing', 'm2')];
    const ended = members.map(() => false);
    members.forEach((c, i) =>
      c.on((m) => {
        if ((m.body as { event?: string }).event === 'EVT_SESSION_ENDED') ended[i] = true;
      }),
    );
    const gone = members.map(
      (c) =>
        new Promise<void>((resolve) => {
          void (async () => {
            for await (const s of c.nc.status()) if (s.type === 'disconnect') return resolve();
          })();
        }),
    );
    rmSync(path.join(dir, 'closing.yaml'));
    await waitFor('session ended for everyone', () => ended.every(Boolean), { timeoutMs: 10_000 });
    await Promise.all(gone);
    await expect(
      connect({
        servers: server.url,
        token: await token(server.keys, { room: 'closing', sub: 'm1', role: 'teacher' }),
        inboxPrefix: '_INBOX.closing.m1',
        maxReconnectAttempts: 0,
      }),
    ).rejects.toThrow(/Authorization Violation/);
  } finally {
    await ctl.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A CONNECT or DISCONNECT event as the server sends it, for a connection of `server`. */
const clientEvent = (server: string, cid: number, user: string): string =>
  JSON.stringify({
    type: 'io.nats.server.advisory.v1.client_connect',
    id: `ev-${server}-${cid}-${Math.random()}`,
    timestamp: new Date().toISOString(),
    server: { id: server, name: server },
    client: { id: cid, user, acc: DEFAULT_ACCOUNTS.clients },
  });

test('a DISCONNECT applied before its CONNECT leaves no ghost online', async () => {
  const sys = await server.connectSystem();
  try {
    const user = 'p1/ghost-order';
    // Connection 7 closes; its CONNECT comes late (another replica, a slow route). Then the
    // user opens connection 9, which shows when all three were applied.
    sys.publish(Sys.disconnect(DEFAULT_ACCOUNTS.clients), clientEvent('NORDER', 7, user));
    sys.publish(Sys.connect(DEFAULT_ACCOUNTS.clients), clientEvent('NORDER', 7, user));
    sys.publish(Sys.connect(DEFAULT_ACCOUNTS.clients), clientEvent('NORDER', 9, user));
    await sys.flush();
    const r = await waitFor('connection 9 recorded', async () => {
      const p = await presenceOf('p1', 'ghost-order');
      return p?.connections.some((c) => c.cid === 9) ? p : undefined;
    });
    expect(r.connections.map((c) => c.cid)).toEqual([9]);
  } finally {
    await sys.close();
  }
});

test('a server late to answer CONNZ keeps its users; a server with no responder loses them', async () => {
  const sys = await server.connectSystem();
  // A server of the cluster that exists (it answers its own CONNZ) but misses the 1 s window.
  const LATE = 'NLATESERVER';
  const late = sys.subscribe(Sys.serverConnz(LATE), {
    callback: (_e, m) => {
      setTimeout(() => {
        m.respond(
          JSON.stringify({
            server: { id: LATE, name: LATE },
            data: { connections: [{ cid: 5, authorized_user: 'p1/late-user' }] },
          }),
        );
      }, 2_000);
    },
  });
  try {
    sys.publish(Sys.connect(DEFAULT_ACCOUNTS.clients), clientEvent(LATE, 5, 'p1/late-user'));
    sys.publish(
      Sys.connect(DEFAULT_ACCOUNTS.clients),
      clientEvent('NGONESERVER', 6, 'p1/gone-user'),
    );
    await sys.flush();
    await waitFor(
      'both online',
      async () =>
        (await presenceOf('p1', 'late-user'))?.state === 'online' &&
        (await presenceOf('p1', 'gone-user'))?.state === 'online',
    );
    await worker.tracker?.reconcile();
    expect(await presenceOf('p1', 'late-user')).toMatchObject({
      state: 'online',
      connections: [expect.objectContaining({ server: LATE, cid: 5 })],
    });
    expect(await presenceOf('p1', 'gone-user')).toMatchObject({ state: 'away', connections: [] });
  } finally {
    late.unsubscribe();
    await sys.close();
  }
});

test('a user who left is deleted after the retention period, with its member record, hand and renewal stamp', async () => {
  await worker.stop();
  const quick = await startWorker(server.keys, [server.url], {
    presence: { graceMs: 500, resyncMs: 60_000, consumerRetentionMs: 1_000 },
  });
  try {
    const c = await join('p1', 'departed');
    await c.request('REQ_RAISE_HAND', {});
    const state = await openBucket(svc, Bucket.RoomState);
    const keys = [memberKey('p1', 'departed'), handKey('p1', 'departed')];
    for (const k of keys) expect((await state.get(k))?.operation).toBe('PUT');
    await c.close(); // REQ_LEAVE, then the close: left at once
    await waitFor('left', async () => (await presenceOf('p1', 'departed'))?.state === 'left');
    await waitFor(
      'the presence record deleted',
      async () => !(await presenceOf('p1', 'departed')),
      {
        timeoutMs: 15_000,
      },
    );
    for (const k of keys) expect((await state.get(k))?.operation ?? 'none').not.toBe('PUT');
    // The hand leaves no delete marker: every REQ_INITIAL_DATA reads all hand keys of the room,
    // and a marker stays an hour (before: one message left under the key).
    const jsm = await jetstreamManager(svc);
    const handSubject = kvSubject(Bucket.RoomState, handKey('p1', 'departed'));
    const info = await jsm.streams.info(kvStreamName(Bucket.RoomState), {
      subjects_filter: handSubject,
    });
    expect(info.state.subjects ?? {}).toEqual({});
    const presence = await openBucket(svc, Bucket.Presence);
    const listed: string[] = [];
    for await (const k of await presence.keys('p1.departed')) listed.push(k);
    expect(listed).toEqual([]);
  } finally {
    await quick.stop();
    worker = await startWorker(server.keys, [server.url]);
  }
}, 60_000);

test('what an admission writes while the departure is being cleaned up stays: a member record stored just before the cleanup survives it', async () => {
  const RETENTION_MS = 4_000;
  await worker.stop();
  const quick = await startWorker(server.keys, [server.url], {
    presence: { graceMs: 500, resyncMs: 60_000, consumerRetentionMs: RETENTION_MS },
  });
  try {
    const c = await join('p1', 'returning');
    await c.close();
    await waitFor('left', async () => (await presenceOf('p1', 'returning'))?.state === 'left');
    const left = await presenceOf('p1', 'returning');
    // Just before the cleanup is due, within the window it takes for a return in progress.
    const due = Date.parse(left?.changedAt ?? '') + RETENTION_MS;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now() - 500)));
    // The callout admits the user again and writes its member record before the server's
    // CONNECT reaches presence: the cleanup that comes due meanwhile must not take it.
    const state = await openBucket(svc, Bucket.RoomState);
    const back = { roomId: 'p1', userId: 'returning', role: 'student', name: 'Back again' };
    await state.put(memberKey('p1', 'returning'), JSON.stringify(back));
    await waitFor(
      'the presence record deleted',
      async () => !(await presenceOf('p1', 'returning')),
      { timeoutMs: 15_000 },
    );
    const e = await state.get(memberKey('p1', 'returning'));
    expect(e?.operation === 'PUT' ? e.json() : e?.operation).toEqual(back);
  } finally {
    await quick.stop();
    worker = await startWorker(server.keys, [server.url]);
  }
}, 60_000);
