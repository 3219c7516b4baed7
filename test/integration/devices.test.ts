/**
 * Delivery to every device of a user (docs/protocol.md): each device receives the whole room in
 * stream order, once; a device killed and restarted gets what it missed within a second of its
 * reconnect, and nothing twice. Each device has a consumer of its own, bounded per user.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { AuthorizationError, headers, type NatsConnection } from '@nats-io/transport-node';
import type { RoomClient, RoomMessage } from '../../src/client/index.js';
import { MAX_DEVICES_PER_USER } from '../../src/infra/streams.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { devicesKey } from '../../src/domain/room-state.js';
import { openBucket } from '../../src/infra/kv.js';
import { DEFAULT_ACCOUNTS } from '../../src/infra/natsconf.js';
import {
  Bucket,
  chatSubject,
  deviceConnectionName,
  whiteboardSubject,
  DEVICE_NAME_PREFIX,
  Sys,
} from '../../src/protocol/subjects.js';
import {
  connectClient,
  joinRoom,
  startCallout,
  token,
  type TestCallout,
} from '../helpers/callout.js';
import { toriiSpawn } from '../helpers/cli.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'devices';
let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;
const clients: RoomClient[] = [];

const roomToken = (user: string): Promise<string> =>
  token(server.keys, { room: ROOM, sub: user, role: 'student' }, { ttlMs: 600_000 });

async function device(user: string, deviceId?: string): Promise<RoomClient> {
  const c = await joinRoom(server.url, server.keys, ROOM, user, {
    ttlMs: 600_000,
    ...(deviceId !== undefined ? { deviceId } : {}),
  });
  clients.push(c);
  return c;
}

const chats = (got: RoomMessage[], from: string) =>
  got.filter((m) => m.kind === 'chat' && m.from === from);

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  await publishRoom(svc, ROOM, { maxParticipants: 50 });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
});
afterAll(async () => {
  for (const c of clients) await c.close({ leave: false }).catch(() => undefined);
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

test('two devices of one user each receive all of 50 messages, in stream order', async () => {
  const laptop = await device('hana', 'laptop');
  const phone = await device('hana', 'phone');
  const sender = await device('kenji');
  const onLaptop: RoomMessage[] = [];
  const onPhone: RoomMessage[] = [];
  laptop.on((m) => onLaptop.push(m));
  phone.on((m) => onPhone.push(m));
  for (let i = 0; i < 50; i++) await sender.chat(`m${i}`);
  for (const got of [onLaptop, onPhone]) {
    await waitFor('50 chats', () => chats(got, 'kenji').length === 50);
    const mine = chats(got, 'kenji');
    expect(mine.map((m) => (m.body as { text: string }).text)).toEqual(
      Array.from({ length: 50 }, (_, i) => `m${i}`),
    );
    const seqs = got.map((m) => m.seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b)); // in order, none twice
  }
  // Each device has a consumer of its own, as the callout stored it.
  for (const name of ['hana~laptop', 'hana~phone']) {
    const info = await jsm.consumers.info(ROOM, name);
    expect(info.config.filter_subjects).toEqual([
      `room.${ROOM}.chat.*`,
      `room.${ROOM}.wb.*`,
      `room.${ROOM}.evt`,
      `room.${ROOM}.evt.*`,
      `room.${ROOM}.user.hana`,
    ]);
    expect(info.config.mem_storage).toBe(true);
    expect(info.config.num_replicas).toBe(1);
  }
});

test('a chat carrying forged stream headers moves no one’s sequence: every later message still arrives', async () => {
  // The server appends its own Nats-Stream/Nats-Subject/Nats-Sequence after whatever headers the
  // publisher sent, so a republished copy of this chat carries the forged values first.
  const victim = await device('aoi');
  const honest = await device('sora');
  const got: RoomMessage[] = [];
  victim.on((m) => got.push(m));
  const nc = await connectClient(server.url, ROOM, 'mallory', await roomToken('mallory'));
  try {
    const h = headers();
    h.set('Nats-Stream', ROOM);
    h.set('Nats-Subject', chatSubject(ROOM, 'mallory'));
    h.set('Nats-Sequence', '999999999');
    nc.publish(chatSubject(ROOM, 'mallory'), JSON.stringify({ text: 'forged' }), { headers: h });
    await nc.flush();
    const forged = await waitFor('the forged chat stored', async () => {
      const m = await jsm.streams.getMessage(ROOM, { last_by_subj: chatSubject(ROOM, 'mallory') });
      return m ?? undefined;
    });
    for (let i = 0; i < 5; i++) await honest.chat(`after${i}`);
    await waitFor('5 chats after the forged one', () => chats(got, 'sora').length === 5);
    // The forged chat arrives at its true sequence, and the victim's position is the last one.
    expect(chats(got, 'mallory').map((m) => m.seq)).toEqual([forged.seq]);
    expect(victim.lastSequence).toBe(Math.max(...got.map((m) => m.seq)));
    expect(victim.lastSequence).toBeLessThan(999999999);
  } finally {
    await nc.close();
  }
});

test('forged stream headers that end in an empty line move no one’s sequence either', async () => {
  // The server keeps a publisher's header block as it came and appends its own lines after it:
  // a block with an empty line before its end leaves the forged values in front of that line,
  // the server's behind it. A reader that stopped at the first empty line took the forged ones.
  const victim = await device('mei');
  const honest = await device('riku');
  const got: RoomMessage[] = [];
  victim.on((m) => got.push(m));
  const nc = await connectClient(server.url, ROOM, 'mallory2', await roomToken('mallory2'));
  try {
    const block = new TextEncoder().encode(
      `NATS/1.0\r\nNats-Stream: ${ROOM}\r\nNats-Subject: ${chatSubject(ROOM, 'mallory2')}\r\n` +
        'Nats-Sequence: 999999999\r\n\r\nX-After: 1\r\n\r\n',
    );
    // nats.js writes whatever a headers object encodes to: a client is free to send any block.
    const raw = { encode: () => block } as unknown as ReturnType<typeof headers>;
    nc.publish(chatSubject(ROOM, 'mallory2'), JSON.stringify({ text: 'forged' }), { headers: raw });
    await nc.flush();
    const forged = await waitFor('the forged chat stored', async () => {
      const m = await jsm.streams.getMessage(ROOM, { last_by_subj: chatSubject(ROOM, 'mallory2') });
      return m ?? undefined;
    });
    for (let i = 0; i < 5; i++) await honest.chat(`after${i}`);
    await waitFor('5 chats after the forged one', () => chats(got, 'riku').length === 5);
    expect(chats(got, 'mallory2').map((m) => m.seq)).toEqual([forged.seq]);
    expect(victim.lastSequence).toBe(Math.max(...got.map((m) => m.seq)));
    expect(victim.lastSequence).toBeLessThan(999999999);
  } finally {
    await nc.close();
  }
});

test(`a user keeps at most ${MAX_DEVICES_PER_USER} devices: the oldest one's consumer goes`, async () => {
  const ids = Array.from({ length: MAX_DEVICES_PER_USER + 1 }, (_, i) => `d${i}`);
  for (const id of ids) await (await device('ren', id)).close({ leave: false });
  const names: string[] = [];
  for await (const c of jsm.consumers.list(ROOM)) names.push(c.name);
  expect(names.filter((n) => n.startsWith('ren~')).sort()).toEqual(
    ids.slice(1).map((id) => `ren~${id}`),
  );
  const kv = await openBucket(svc, Bucket.RoomState);
  expect((await kv.get(devicesKey(ROOM, 'ren')))?.json()).toEqual(ids.slice(1));
});

test('REQ_RESTORE_CONSUMER from a client: a served consumer is left as it is, a malformed or unknown device is refused and no consumer is made', async () => {
  const c = await device('restorer', 'laptop');
  const stream = ROOM;
  const before = await jsm.consumers.info(stream, 'restorer~laptop');
  // Served: nothing to restore, and the consumer is the one it was (same creation time).
  await expect(c.request(RequestEvent.RestoreConsumer, { deviceId: 'laptop' })).resolves.toEqual({
    consumer: 'restorer~laptop',
    restored: false,
  });
  expect((await jsm.consumers.info(stream, 'restorer~laptop')).created).toBe(before.created);
  // Malformed device ids: refused before JetStream is asked.
  for (const deviceId of ['a.b', '*', '>', 'x'.repeat(33), 7, '']) {
    await expect(c.request(RequestEvent.RestoreConsumer, { deviceId })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
  }
  // A device the callout never admitted: not found, and nothing created for it.
  await expect(
    c.request(RequestEvent.RestoreConsumer, { deviceId: 'never' }),
  ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  await expect(jsm.consumers.info(stream, 'restorer~never')).rejects.toThrow(/not found/);
  // Another user's consumer cannot be named: the user comes from the subject.
  await device('bystander');
  const other = await jsm.consumers.info(stream, 'bystander');
  await expect(
    c.request(RequestEvent.RestoreConsumer, { deviceId: 'bystander' }),
  ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  expect((await jsm.consumers.info(stream, 'bystander')).created).toBe(other.created);
});

test('a connection naming an invalid device is refused, counted as invalid_device', async () => {
  const before = await callout.rejections('invalid_device');
  await expect(
    connectClient(server.url, ROOM, 'taro', await roomToken('taro'), {
      name: `${DEVICE_NAME_PREFIX}not.valid`,
    }),
  ).rejects.toBeInstanceOf(AuthorizationError);
  expect(await callout.rejections('invalid_device')).toBe(before + 1);
  expect(deviceConnectionName('ok')).toBe(`${DEVICE_NAME_PREFIX}ok`);
});

test('a device SIGKILLed and restarted 10 times gets what it missed within 1 s of each reconnect, nothing twice', async () => {
  const USER = 'yuki';
  const sender = jetstream(svc);
  const publish = async (text: string): Promise<number> =>
    (
      await sender.publish(
        chatSubject(ROOM, 'kenji'),
        JSON.stringify({ text, at: new Date().toISOString() }),
      )
    ).seq;
  // When each of the device's connections is established, from the server's connect events.
  const sys = await server.connectSystem();
  const connects: number[] = [];
  sys.subscribe(Sys.connect(DEFAULT_ACCOUNTS.clients), {
    callback: (_e, m) => {
      const c = m.json<{ client: { user?: string } }>().client;
      if (c.user === `${ROOM}/${USER}`) connects.push(Date.now());
    },
  });
  await sys.flush();

  const shown = new Map<number, number>(); // seq → times shown
  const arrived = new Map<number, number>(); // seq → when first shown
  let last = 0;
  let missed: number[] = [];
  const catchUps: number[] = [];
  const tok = await roomToken(USER);
  try {
    for (let round = 0; round < 10; round++) {
      const proc: ChildProcess = toriiSpawn(
        [
          'client',
          '--json',
          '--nats-url',
          server.url,
          '--token',
          tok,
          '--device',
          'tab',
          ...(last > 0 ? ['--resume-after', String(last)] : []),
        ],
        { stdin: 'pipe' },
      );
      const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
      lines.on('line', (line) => {
        const m = JSON.parse(line) as { kind: string; seq?: number };
        if (m.kind !== 'chat' || m.seq === undefined) return;
        shown.set(m.seq, (shown.get(m.seq) ?? 0) + 1);
        if (!arrived.has(m.seq)) arrived.set(m.seq, Date.now());
        last = Math.max(last, m.seq);
      });
      await waitFor(`connection ${round + 1}`, () => connects.length === round + 1);
      const connectedAt = connects[round] as number;
      // What was published while it was down arrives, within a second of the reconnect.
      await waitFor(`round ${round}: missed messages`, () => missed.every((s) => shown.has(s)));
      if (missed.length > 0)
        catchUps.push(Math.max(...missed.map((s) => arrived.get(s) as number)) - connectedAt);
      // Traffic while it is up, then a kill without a clean close.
      const live: number[] = [];
      for (let i = 0; i < 5; i++) live.push(await publish(`r${round} live ${i}`));
      await waitFor(`round ${round}: live messages`, () => live.every((s) => shown.has(s)));
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
      missed = [];
      for (let i = 0; i < 5; i++) missed.push(await publish(`r${round} missed ${i}`));
    }
  } finally {
    await sys.close();
  }
  console.log(`devices: catch-up after reconnect (ms): ${catchUps.join(', ')}`);
  expect(catchUps).toHaveLength(9);
  for (const ms of catchUps) expect(ms).toBeLessThanOrEqual(1_000);
  expect([...shown.entries()].filter(([, n]) => n > 1)).toEqual([]); // nothing twice
}, 120_000);

test("after a user has left for the retention period, its consumer and its devices' consumers are gone", async () => {
  // A worker of its own with short grace and retention periods.
  await worker.stop();
  const quick = await startWorker(server.keys, [server.url], {
    presence: { graceMs: 500, resyncMs: 60_000, consumerRetentionMs: 500 },
  });
  try {
    const own = await device('mika');
    const tab = await device('mika', 'tab');
    const kv = await openBucket(svc, Bucket.RoomState);
    const names = async () => {
      const all: string[] = [];
      for await (const c of jsm.consumers.list(ROOM)) all.push(c.name);
      return all.filter((n) => n === 'mika' || n.startsWith('mika~')).sort();
    };
    expect(await names()).toEqual(['mika', 'mika~tab']);
    await own.close(); // REQ_LEAVE: left at once when the last connection closes
    await tab.close();
    await waitFor('consumers deleted', async () => (await names()).length === 0, {
      timeoutMs: 15_000,
    });
    await waitFor(
      'device list deleted',
      async () => (await kv.get(devicesKey(ROOM, 'mika')))?.operation !== 'PUT',
    );
  } finally {
    await quick.stop();
    worker = await startWorker(server.keys, [server.url]);
  }
}, 60_000);

test('a chat and a stroke sent while the room stream is away are stored once it is back, each once', async () => {
  const room = await publishRoom(svc, 'stormy');
  const c = await joinRoom(server.url, server.keys, 'stormy', 'writer', {
    ttlMs: 600_000,
    role: 'teacher', // the whiteboard is the teacher's
  });
  clients.push(c);
  // The stream goes (a server restarting, a leader being elected): publishes get no responder.
  const config = (await jsm.streams.info('stormy')).config;
  await jsm.streams.delete('stormy');
  // Sees the first tries, which reach no stream (unanswered here, so each one times out and is
  // tried again).
  const tries: string[] = [];
  const watch = svc.subscribe('room.stormy.>', { callback: (_e, m) => void tries.push(m.subject) });
  await svc.flush();
  const chat = c.chat('through the storm');
  const stroke = c.whiteboard({ points: [1, 2] });
  await waitFor('a first try of each', () => tries.length >= 2, { timeoutMs: 5_000 });
  watch.unsubscribe();
  // Back while both are still being tried.
  await jsm.streams.add(config);
  await Promise.all([chat, stroke]);
  const info = await jsm.streams.info('stormy');
  expect(info.state.messages).toBe(2);
  const subjects = Object.keys(
    (await jsm.streams.info('stormy', { subjects_filter: '>' })).state.subjects ?? {},
  ).sort();
  expect(subjects).toEqual(
    [chatSubject(room.roomId, 'writer'), whiteboardSubject(room.roomId, 'writer')].sort(),
  );
});
