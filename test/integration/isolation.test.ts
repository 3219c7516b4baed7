/**
 * The attacker's side of isolation (docs/decisions.md, "Account layout", docs/security.md). A teacher of one room (the
 * role with the most rights) makes every request its permissions allow, each with the reply aimed
 * at every subject it must never reach. Afterwards no stream or bucket holds anything but what the
 * attacker may publish itself, no other client received anything its application sees, and every
 * role restarted afterwards becomes ready and admits users.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { createInbox, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { LiveMessage, RoomClient, RoomMessage } from '../../src/client/index.js';
import { parseLive } from '../../src/client/live.js';
import { readCopy, received, roomCopies } from '../../src/client/republished.js';
import { blockKey } from '../../src/domain/blocks.js';
import { DEFAULT_ACCOUNTS } from '../../src/infra/natsconf.js';
import { presenceKey } from '../../src/domain/presence.js';
import { memberKey } from '../../src/domain/room-state.js';
import {
  Bucket,
  chatSubject,
  JsApi,
  kvSubject,
  liveSubject,
  roomEventsSubject,
  ServiceSubject,
  Sys,
  userAnswerSubject,
  userEventsSubject,
  republishedSubject,
  userConsumerFilters,
  userInboxPrefix,
  whiteboardSubject,
  roleWorkerSubject,
} from '../../src/protocol/subjects.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  connectClient,
  joinRoom,
  startCallout,
  token,
  type TestCallout,
} from '../helpers/callout.js';
import { startController, type TestController } from '../helpers/controller.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { tempDir, waitFor } from '../helpers/procs.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'n5';
const OTHER = 'other';
const ATTACKER = 'mallory';
const VICTIM = 'hana';

let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;
let controller: TestController;
let roomsDir: string;
const closers: (() => Promise<unknown>)[] = [];

/** Every subject a reply must never reach. */
const TARGETS: [string, string][] = [
  ["another room's chat", chatSubject(OTHER, 'olga')],
  ["another room's whiteboard", whiteboardSubject(OTHER, 'olga')],
  ["another room's events", roomEventsSubject(OTHER)],
  ["another room's answers", userAnswerSubject(OTHER, 'olga')],
  ["another room's live subject", liveSubject(OTHER, 'olga')],
  ['the room config bucket', kvSubject(Bucket.Rooms, OTHER)],
  ['the presence bucket', kvSubject(Bucket.Presence, presenceKey(ROOM, VICTIM))],
  ['the room state bucket', kvSubject(Bucket.RoomState, memberKey(ROOM, VICTIM))],
  ['the blocks bucket', kvSubject(Bucket.Blocks, blockKey(ROOM, VICTIM))],
  ["another user's events", roleWorkerSubject(ROOM, VICTIM, 'student')],
  ["another user's events as teacher", roleWorkerSubject(ROOM, VICTIM, 'teacher')],
  ["another room's events queue", roleWorkerSubject(OTHER, 'olga', 'student')],
  ["another user's answers", userAnswerSubject(ROOM, VICTIM)],
  ["another user's inbox", `_INBOX.${ROOM}.${VICTIM}.x`],
  ["another user's inbox prefix", `_INBOX.${ROOM}.${VICTIM}`],
  ['chat as another user', chatSubject(ROOM, VICTIM)],
  ['whiteboard as another user', whiteboardSubject(ROOM, VICTIM)],
  ["the own room's events", roomEventsSubject(ROOM)],
  ["the own room's broadcasts about another user", userEventsSubject(ROOM, VICTIM)],
  ['a live subject of another user', liveSubject(ROOM, VICTIM)],
  ["another user's republished answers", republishedSubject(userAnswerSubject(ROOM, VICTIM))],
  ['republished chat as another user', republishedSubject(chatSubject(ROOM, VICTIM))],
  ["another room's republished events", republishedSubject(roomEventsSubject(OTHER))],
  [
    'republished broadcasts about another user',
    republishedSubject(userEventsSubject(ROOM, VICTIM)),
  ],
  ["another user's pull requests", JsApi.consumerNext(ROOM, VICTIM)],
  ['stream deletion', `$JS.API.STREAM.DELETE.${OTHER}`],
  ['stream purge', `$JS.API.STREAM.PURGE.${ROOM}`],
  ['consumer deletion', `$JS.API.CONSUMER.DELETE.${ROOM}.${VICTIM}`],
  ['connection lists', '$SYS.REQ.ACCOUNT.PING.CONNZ'],
  ['server pings', '$SYS.REQ.SERVER.PING'],
  ['the auth callout', Sys.AUTH_CALLOUT],
  ['connect events', Sys.connect(DEFAULT_ACCOUNTS.clients)],
  ['kicks', ServiceSubject.RoomsKick],
  ['token issuing', ServiceSubject.TokensIssue],
  ['platform events', 'torii.events.participant.joined'],
];

async function roomToken(room: string, user: string, role: string): Promise<string> {
  return token(server.keys, { room, sub: user, role }, { ttlMs: 600_000 });
}

async function raw(room: string, user: string, role = 'student'): Promise<NatsConnection> {
  const nc = await connectClient(server.url, room, user, await roomToken(room, user, role));
  closers.push(() => nc.close());
  return nc;
}

async function sdk(room: string, user: string, role = 'student'): Promise<RoomClient> {
  const c = await joinRoom(server.url, server.keys, room, user, { role, ttlMs: 600_000 });
  closers.push(() => c.close({ leave: false }));
  return c;
}

/** A member who only listens, as the SDK does: a request inbox and the room's live subjects. */
interface Listener {
  nc: NatsConnection;
  live: Msg[];
  /** What arrived on the republished copies of the room stream. */
  room: Msg[];
  /** Every message the connection received since the last reset, whatever the subscription. */
  received(): number;
  /** Forgets what arrived so far (before the attack). */
  reset(): void;
}

async function listener(room: string, user: string): Promise<Listener> {
  const nc = await raw(room, user);
  const live: Msg[] = [];
  const copies: Msg[] = [];
  nc.subscribe(liveSubject(room, '*'), {
    callback: (_e, m) => {
      live.push(m);
    },
  });
  for (const filter of userConsumerFilters(room, user))
    nc.subscribe(republishedSubject(filter), {
      callback: (_e, m) => {
        copies.push(m);
      },
    });
  // the request inbox nats.js creates (`_INBOX.{room}.{user}.{nuid}.*`), as the SDK has one
  await nc.request(JsApi.consumerInfo(room, user), '', { timeout: 2_000 });
  let base = nc.stats().inMsgs;
  return {
    nc,
    live,
    room: copies,
    received: () => nc.stats().inMsgs - base,
    reset: () => {
      live.length = 0;
      copies.length = 0;
      base = nc.stats().inMsgs;
    },
  };
}

/** Pulls `n` messages of the attacker's own consumer into its own inbox. */
async function pull(nc: NatsConnection, n: number): Promise<Msg[]> {
  const inbox = createInbox(userInboxPrefix(ROOM, ATTACKER));
  const sub = nc.subscribe(inbox, { max: n, timeout: 5_000 });
  nc.publish(JsApi.consumerNext(ROOM, ATTACKER), JSON.stringify({ batch: n, expires: 5e9 }), {
    reply: inbox,
  });
  const got: Msg[] = [];
  for await (const m of sub) got.push(m);
  return got;
}

function rooms(): void {
  const yaml = (name: string): string =>
    [
      'apiVersion: torii.io/v1alpha1',
      'kind: Room',
      `metadata: { name: ${name}, namespace: classes }`,
      'spec: { maxParticipants: 20 }',
      '',
    ].join('\n');
  writeFileSync(path.join(roomsDir, `${ROOM}.yaml`), yaml(ROOM));
  writeFileSync(path.join(roomsDir, `${OTHER}.yaml`), yaml(OTHER));
}

async function ready(ops: { markStarted(): void; readiness(): { ready: boolean } }, what: string) {
  ops.markStarted();
  await waitFor(`${what} ready`, () => ops.readiness().ready, { timeoutMs: 15_000 });
}

/** `last_seq` of every stream in APP. */
async function lastSeqs(): Promise<Map<string, number>> {
  const seqs = new Map<string, number>();
  for await (const si of jsm.streams.list()) seqs.set(si.config.name, si.state.last_seq);
  return seqs;
}

/** Subjects of the messages a stream stored after `from`. */
async function storedSince(stream: string, from: number): Promise<string[]> {
  const last = (await jsm.streams.info(stream)).state.last_seq;
  const subjects: string[] = [];
  for (let seq = from + 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (m) subjects.push(m.subject);
  }
  return subjects;
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  roomsDir = tempDir('isolation-rooms');
  rooms();
  controller = await startController(server.keys, [server.url], { roomsDir });
  await waitFor('rooms published', async () => {
    const names: string[] = [];
    for await (const n of jsm.streams.names()) names.push(n);
    return names.includes(ROOM) && names.includes(OTHER);
  });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
}, 60_000);

afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  await worker?.stop();
  await callout?.stop();
  await controller?.stop();
  await svc?.close();
  await server?.destroy();
});

describe('an attacker naming reply subjects', () => {
  let attacker: NatsConnection;
  let victim: Listener;
  let stranger: Listener;
  let bystander: RoomClient;
  const bystanderSaw: LiveMessage[] = [];
  const bystanderGot: RoomMessage[] = [];
  let before: Map<string, number>;
  let ownWrites: { chat: number; wb: number; events: number };

  beforeAll(async () => {
    attacker = await raw(ROOM, ATTACKER, 'teacher');
    victim = await listener(ROOM, VICTIM);
    stranger = await listener(OTHER, 'olga');
    bystander = await sdk(ROOM, 'kenji');
    bystander.onLive((m) => bystanderSaw.push(m));
    bystander.on((m) => bystanderGot.push(m));
    // Workers down: the work queue keeps what arrives, so all of it can be read back.
    await worker.stop();
    before = await lastSeqs();
    await Promise.all([victim.nc.flush(), stranger.nc.flush(), bystander.nc.flush()]);
    victim.reset();
    stranger.reset();
    bystanderGot.length = 0;

    const js = jetstream(attacker);
    const send = (subject: string, data: string, reply: string) =>
      attacker.publish(subject, data, { reply });
    ownWrites = { chat: 0, wb: 0, events: 0 };
    // 1. Publishes the attacker may make: events, chat, whiteboard, live.
    for (const [, reply] of TARGETS) {
      send(roleWorkerSubject(ROOM, ATTACKER, 'teacher'), 'not json', reply);
      send(chatSubject(ROOM, ATTACKER), JSON.stringify({ text: 'hi' }), reply);
      send(whiteboardSubject(ROOM, ATTACKER), JSON.stringify({ line: [0, 1] }), reply);
      send(liveSubject(ROOM, ATTACKER), JSON.stringify({ live: { x: 1 } }), reply);
      ownWrites.events++;
      ownWrites.chat++;
      ownWrites.wb++;
    }
    await attacker.flush();
    // 2. Acks with a reply (double acks), one delivered message per target.
    const acks: string[] = [];
    for (const m of await pull(attacker, TARGETS.length)) if (m.reply) acks.push(m.reply);
    expect(acks).toHaveLength(TARGETS.length);
    TARGETS.forEach(([, reply], i) => send(acks[i] as string, '+ACK', reply));
    // 3. Pulls, stream info, consumer info; requests to the platform's endpoints.
    for (const [, reply] of TARGETS) {
      send(JsApi.consumerNext(ROOM, ATTACKER), JSON.stringify({ batch: 2, no_wait: true }), reply);
      send(JsApi.streamInfo(ROOM), '', reply);
      send(JsApi.consumerInfo(ROOM, ATTACKER), '', reply);
      for (const endpoint of Object.values(ServiceSubject)) send(endpoint, '{}', reply);
    }
    // A forged request-info header does not change whose request it is.
    const forged = headers();
    forged.set('Nats-Request-Info', JSON.stringify({ acc: 'APP', service: 'SYS' }));
    attacker.publish(JsApi.streamInfo(OTHER), '', { reply: chatSubject(OTHER, 'olga') });
    attacker.publish(JsApi.streamInfo(ROOM), '', {
      reply: chatSubject(OTHER, 'olga'),
      headers: forged,
    });

    // Barrier: one of each kind, answered to the attacker's own inbox. Each kind is handled in
    // order, so once these are answered every earlier one of its kind has been.
    await js.publish(chatSubject(ROOM, ATTACKER), JSON.stringify({ text: 'last' }));
    ownWrites.chat++;
    await js.publish(roleWorkerSubject(ROOM, ATTACKER, 'teacher'), 'not json');
    ownWrites.events++;
    await attacker.request(JsApi.consumerInfo(ROOM, ATTACKER), '', { timeout: 5_000 });
    const [m] = await pull(attacker, 1);
    if (m?.reply) await attacker.request(m.reply, '+ACK', { timeout: 5_000 });
    await Promise.all([victim.nc.flush(), stranger.nc.flush(), bystander.nc.flush()]);
  }, 60_000);

  test('the attacker is still connected: every refusal was a permission error', () => {
    expect(attacker.isClosed()).toBe(false);
  });

  test('no stream and no bucket stored anything but what the attacker may publish itself', async () => {
    const after = await lastSeqs();
    const allowed: Record<string, string[]> = {
      [ROOM]: [chatSubject(ROOM, ATTACKER), whiteboardSubject(ROOM, ATTACKER)],
      sysJsWorker: [roleWorkerSubject(ROOM, ATTACKER, 'teacher')],
    };
    const changes: Record<string, string[]> = {};
    for (const [stream, seq] of before) {
      const stored = await storedSince(stream, seq);
      const foreign = stored.filter((s) => !(allowed[stream] ?? []).includes(s));
      if (foreign.length > 0) changes[stream] = foreign;
    }
    expect(changes).toEqual({});
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    const room = await storedSince(ROOM, before.get(ROOM) as number);
    expect(room.filter((s) => s === chatSubject(ROOM, ATTACKER))).toHaveLength(ownWrites.chat);
    expect(room.filter((s) => s === whiteboardSubject(ROOM, ATTACKER))).toHaveLength(ownWrites.wb);
    const queue = await storedSince('sysJsWorker', before.get('sysJsWorker') as number);
    expect(queue).toHaveLength(ownWrites.events);
  });

  /** What the SDK would hand to the application out of what a listener's live subscription got. */
  const handedOn = (room: string, l: Listener) =>
    l.live.filter((m) => parseLive(room, received(m)));

  /** What the SDK would hand on out of what arrived on a listener's republished subscriptions. */
  const copiesHandedOn = (room: string, l: Listener) =>
    l.room.flatMap((m) => {
      const r = readCopy(roomCopies(room), m);
      return r ? [r] : [];
    });

  test('a member of the room: nothing reached its inbox; the SDK hands on no answer that reached a live subscription, and of the room copies only what the attacker really stored', async () => {
    // Everything it received came through the live subscription (answers aimed at a live
    // subject, deliveries keeping their stream subject, the attacker's own live publishes) or
    // the room stream's copies.
    expect(victim.received()).toBe(victim.live.length + victim.room.length);
    expect(victim.live.length).toBeGreaterThan(0);
    expect(handedOn(ROOM, victim)).toEqual([]);
    const copies = copiesHandedOn(ROOM, victim);
    const own = [chatSubject(ROOM, ATTACKER), whiteboardSubject(ROOM, ATTACKER)];
    expect(copies.filter((c) => !own.includes(c.subject))).toEqual([]);
    expect(copies).toHaveLength(ownWrites.chat + ownWrites.wb);
    expect(new Set(copies.map((c) => c.seq)).size).toBe(copies.length);
    for (const c of copies)
      expect((await jsm.streams.getMessage(ROOM, { seq: c.seq }))?.subject).toBe(c.subject);
    const forged = victim.room.length - copies.length;
    console.log(
      `isolation: ${victim.live.length} messages reached a live subscription and ${forged} forged ones a room copy subscription in the room; 0 passed the SDK`,
    );
  });

  test('a member of another room: nothing reached its inbox, and the SDK hands on nothing', () => {
    expect(stranger.received()).toBe(stranger.live.length + stranger.room.length);
    expect(handedOn(OTHER, stranger)).toEqual([]);
    expect(copiesHandedOn(OTHER, stranger)).toEqual([]);
    console.log(
      `isolation: ${stranger.live.length + stranger.room.length} messages reached live or room copy subscriptions of another room, 0 passed the SDK`,
    );
  });

  test("an SDK client in the room handed on the attacker's own chat and whiteboard, once each, and nothing else", async () => {
    await waitFor(
      "the attacker's messages reached the SDK client",
      () => bystanderGot.length >= ownWrites.chat + ownWrites.wb,
    );
    const kinds = bystanderGot.map((m) => `${m.kind}:${m.from ?? ''}`);
    expect(kinds.filter((k) => k === `chat:${ATTACKER}`)).toHaveLength(ownWrites.chat);
    expect(kinds.filter((k) => k === `whiteboard:${ATTACKER}`)).toHaveLength(ownWrites.wb);
    expect(bystanderGot).toHaveLength(ownWrites.chat + ownWrites.wb);
    expect(new Set(bystanderGot.map((m) => m.seq)).size).toBe(bystanderGot.length);
  });

  test('an SDK client in the room handed no live update to its application', () => {
    // Not even the attacker's own: each carried a reply, which no live message has.
    expect(bystanderSaw).toEqual([]);
  });

  test('every role restarted afterwards becomes ready and admits users', async () => {
    worker = await startWorker(server.keys, [server.url]);
    await ready(worker.ops, 'worker');
    await callout.stop();
    callout = await startCallout(server.keys, [server.url]);
    await ready(callout.ops, 'callout');
    await controller.stop();
    controller = await startController(server.keys, [server.url], { roomsDir });
    await ready(controller.ops, 'controller');
    const newcomer = await sdk(ROOM, 'newcomer');
    const data = await newcomer.request<{ me: { userId: string } }>('REQ_INITIAL_DATA');
    expect(data.me.userId).toBe('newcomer');
    const elsewhere = await sdk(OTHER, 'olga2');
    await expect(elsewhere.request('REQ_INITIAL_DATA')).resolves.toMatchObject({
      room: { id: OTHER },
    });
  }, 60_000);
});

describe('request ids', () => {
  test("no other user can pre-empt a client's requests by publishing their ids first", async () => {
    const victim = await sdk(ROOM, 'yuki');
    const attacker = jetstream(await raw(ROOM, 'ren'));
    // Ids a simple client would use, and ids of the SDK's shape with guessed prefixes.
    const guesses = [
      ...Array.from({ length: 20 }, (_, i) => `c-${i + 1}`),
      ...Array.from({ length: 20 }, (_, i) => `AAAAAAAAAAAAAAAAAAAAAA-${i + 1}`),
    ];
    for (const id of guesses)
      await attacker.publish(
        roleWorkerSubject(ROOM, 'ren', 'student'),
        JSON.stringify({ event: 'REQ_RAISE_HAND', id }),
        {
          msgID: id,
        },
      );
    for (let i = 0; i < 20; i++)
      await expect(victim.request('REQ_INITIAL_DATA')).resolves.toMatchObject({
        me: { userId: 'yuki' },
      });
  }, 30_000);
});
