/**
 * The attacker's side of the room stream's history (docs/security.md, "Limits"). Members of a
 * room try to wipe what late joiners and reconnecting devices catch up from: a student floods
 * chat with big and many messages, an observer floods malformed requests whose answers used to
 * echo their ids, a student chats with every message id it could derive from the system's
 * broadcasts, and anyone asks the stream for the subjects it holds. Everything is judged from
 * what the server stored, read back from the stream.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { RoomClient, RoomRequestError, type RoomMessage } from '../../src/client/index.js';
import { Broadcast, RequestEvent } from '../../src/protocol/events.js';
import { openBucket } from '../../src/infra/kv.js';
import { presenceKey } from '../../src/domain/presence.js';
import {
  Bucket,
  chatSubject,
  JsApi,
  kvStreamName,
  roleWorkerSubject,
  roomEventsSubject,
  userAnswerSubject,
  userEventsSubject,
  WORKER_CONSUMER,
  WORKER_STREAM,
} from '../../src/protocol/subjects.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startController, type TestController } from '../helpers/controller.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { tempDir, waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

const ROOM = 'hist';
const TITLE = 'History under attack';
let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;
let controller: TestController;
let roomsDir: string;
const closers: (() => Promise<unknown>)[] = [];

/** The Room as a platform team writes it: no history settings, the defaults apply. */
function writeRoom(title: string): void {
  writeFileSync(
    path.join(roomsDir, `${ROOM}.yaml`),
    [
      'apiVersion: torii.io/v1alpha1',
      'kind: Room',
      `metadata: { name: ${ROOM}, namespace: classes }`,
      `spec: { title: ${JSON.stringify(title)}, maxParticipants: 20 }`,
      '',
    ].join('\n'),
  );
}

async function roomToken(user: string, role: string): Promise<string> {
  return token(server.keys, { room: ROOM, sub: user, role }, { ttlMs: 600_000 });
}

async function raw(user: string, role: string): Promise<NatsConnection> {
  const nc = await connectClient(server.url, ROOM, user, await roomToken(user, role));
  closers.push(() => nc.close());
  return nc;
}

async function sdk(
  user: string,
  role: string,
  o: { resumeAfter?: number; listener?: (m: RoomMessage) => void } = {},
): Promise<RoomClient> {
  const c = await RoomClient.connect({
    connect,
    servers: server.url,
    roomId: ROOM,
    userId: user,
    token: await roomToken(user, role),
    autoRenew: false,
    ...o,
  });
  closers.push(() => c.close({ leave: false }));
  return c;
}

const roomConfig = async (): Promise<StreamConfig> => (await jsm.streams.info(ROOM)).config;

/** Every message the room stream holds on `subject` (direct gets, no consumer), in order. */
async function stored(subject: string): Promise<StoredMsg[]> {
  const out: StoredMsg[] = [];
  for (let seq = 1; ;) {
    const m = await jsm.direct.getMessage(ROOM, { seq, next_by_subj: subject });
    if (!m) return out;
    out.push(m);
    seq = m.seq + 1;
  }
}

/** The last message the room stream holds on `subject`. */
async function lastOn(subject: string): Promise<StoredMsg> {
  const m = await jsm.direct.getMessage(ROOM, { last_by_subj: subject });
  if (!m) throw new Error(`nothing stored on ${subject}`);
  return m;
}

/** Broadcasts the room stream holds (about the room and about each user), in stream order. */
async function storedBroadcasts(): Promise<{ seq: number; event: string; data: unknown }[]> {
  const all = [
    ...(await stored(roomEventsSubject(ROOM))),
    ...(await stored(userEventsSubject(ROOM, '*'))),
  ].sort((a, b) => a.seq - b.seq);
  return all.map((m) => {
    const b = m.json<{ event: string; data: unknown }>();
    return { seq: m.seq, event: b.event, data: b.data };
  });
}

/** Messages and bytes the stream holds on one subject, read back. */
async function footprint(subject: string): Promise<{ messages: number; bytes: number }> {
  const all = await stored(subject);
  return { messages: all.length, bytes: all.reduce((n, m) => n + m.data.length, 0) };
}

/** Publishes in batches of `batch`, each awaited; returns how many the stream stored. */
async function flood(
  js: JetStreamClient,
  subject: string,
  n: number,
  body: (i: number) => Uint8Array | string,
  msgID?: (i: number) => string,
  batch = 50,
): Promise<{ stored: number; refused: number; errors: Set<string> }> {
  let stored = 0;
  let refused = 0;
  const errors = new Set<string>();
  for (let i = 0; i < n; i += batch) {
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(batch, n - i) }, (_, j) =>
        js.publish(subject, body(i + j), msgID ? { msgID: msgID(i + j) } : {}),
      ),
    );
    for (const r of results) {
      if (r.status === 'fulfilled') stored++;
      else {
        refused++;
        errors.add((r.reason as Error).message);
      }
    }
  }
  return { stored, refused, errors };
}

/** Waits until the workers have taken every event of the work queue. */
async function queueDrained(): Promise<void> {
  await waitFor(
    'the work queue drained',
    async () => {
      const i = await jsm.consumers.info(WORKER_STREAM, WORKER_CONSUMER);
      return i.num_pending === 0 && i.num_ack_pending === 0;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  roomsDir = tempDir('abuse-history-rooms');
  writeRoom(TITLE);
  controller = await startController(server.keys, [server.url], { roomsDir });
  await waitFor('the room published', async () => {
    const kv = await openBucket(svc, Bucket.Rooms);
    return (await kv.get(ROOM))?.operation === 'PUT';
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

describe('a history no member can evict alone', () => {
  test("a student flooding chat and an observer flooding bad requests leave the teacher's message and a broadcast in the stream, and a late joiner gets both", async () => {
    const teacher = await sdk('sensei', 'teacher');
    await teacher.chat('Homework: page 12');
    const kept = await lastOn(chatSubject(ROOM, 'sensei'));
    const hana = await sdk('hana', 'student');
    await hana.request(RequestEvent.RaiseHand, { note: 'question' });
    const raised = await waitFor('the hand-raise broadcast stored', async () =>
      (await storedBroadcasts()).find(
        (b) => b.event === Broadcast.HandRaised && (b.data as { userId: string }).userId === 'hana',
      ),
    );
    const config = await roomConfig();
    const perSubject = config.max_msgs_per_subject ?? -1;
    const maxSize = config.max_msg_size ?? -1;
    console.log(
      `abuse-history: room stream max_bytes ${config.max_bytes}, max_msgs ${config.max_msgs}, max_msgs_per_subject ${perSubject}, max_msg_size ${maxSize}`,
    );

    // 1. A student: 140 chats of 250 KiB (35 MB against the 32 MiB budget), then, as an attacker
    //    who knows the limits, more chats of the largest size the stream takes than its share.
    const mallory = jetstream(await raw('mallory', 'student'));
    const big = new Uint8Array(250 * 1024).fill(0x61);
    const t0 = Date.now();
    const bigs = await flood(mallory, chatSubject(ROOM, 'mallory'), 140, () => big, undefined, 20);
    const size = maxSize > 0 ? maxSize - 256 : 250 * 1024;
    const many = perSubject > 0 ? perSubject + 100 : 1_000;
    const sized = new Uint8Array(size).fill(0x62);
    const manys = await flood(mallory, chatSubject(ROOM, 'mallory'), many, () => sized);
    console.log(
      `abuse-history: student stored ${bigs.stored} of 140 chats of 250 KiB and ${manys.stored} of ${many} of ${size} bytes in ${Date.now() - t0} ms; refusals: ${[...bigs.errors, ...manys.errors].join(' | ')}`,
    );

    // 2. An observer (no chat, no live): 3,000 requests with a 16 KiB id, and more requests with a
    //    well-formed id (each answered with an error) than its share. The work queue holds 1,000
    //    events of a user at a time, so the observer sends in rounds as the workers take them.
    const owl = jetstream(await raw('owl', 'observer'));
    const longId = 'x'.repeat(16 * 1024);
    const t1 = Date.now();
    let queued = 0;
    for (let round = 0; round < 6; round++) {
      const r = await flood(
        owl,
        roleWorkerSubject(ROOM, 'owl', 'observer'),
        500,
        (i) => JSON.stringify({ event: RequestEvent.RaiseHand, id: `${longId}${round}-${i}` }),
        undefined,
        250,
      );
      queued += r.stored;
      await queueDrained();
    }
    const answered = perSubject > 0 ? perSubject + 100 : 1_000;
    const unknown = await flood(
      owl,
      roleWorkerSubject(ROOM, 'owl', 'observer'),
      answered,
      (i) => JSON.stringify({ event: 'REQ_NOTHING', id: `owl-${i}` }),
      undefined,
      250,
    );
    await queueDrained();
    console.log(
      `abuse-history: observer queued ${queued} requests with a 16 KiB id and ${unknown.stored} of ${answered} with a valid one; handled in ${Date.now() - t1} ms`,
    );

    // The teacher's message and the broadcast are still there.
    const info = await jsm.streams.info(ROOM);
    console.log(
      `abuse-history: after the floods the stream holds ${info.state.messages} messages, ${info.state.bytes} bytes, first seq ${info.state.first_seq} (teacher's chat at ${kept.seq}, broadcast at ${raised.seq})`,
    );
    const stillKept = await jsm.streams.getMessage(ROOM, { seq: kept.seq }).catch(() => null);
    expect(stillKept?.subject).toBe(chatSubject(ROOM, 'sensei'));
    const stillRaised = await jsm.streams.getMessage(ROOM, { seq: raised.seq }).catch(() => null);
    expect(stillRaised?.subject).toBe(userEventsSubject(ROOM, 'hana'));

    // Each attacker's footprint is bounded by the room's share of one subject, and is at most
    // half of the stream's budget: the rest of the room keeps the other half.
    const chat = await footprint(chatSubject(ROOM, 'mallory'));
    const answers = await footprint(userAnswerSubject(ROOM, 'owl'));
    console.log(
      `abuse-history: stored for the student ${chat.messages} chats / ${chat.bytes} bytes; for the observer ${answers.messages} answers / ${answers.bytes} bytes`,
    );
    expect(perSubject).toBeGreaterThan(0);
    expect(chat.messages).toBeLessThanOrEqual(perSubject);
    expect(chat.bytes).toBeLessThanOrEqual(perSubject * maxSize);
    expect(chat.bytes * 2).toBeLessThanOrEqual(config.max_bytes);
    expect(answers.messages).toBeLessThanOrEqual(perSubject);
    // No answer echoes the long ids: every stored answer is small.
    expect(answers.bytes).toBeLessThanOrEqual(answers.messages * 512);

    // A late joiner replaying the room from the start gets both.
    const seen: RoomMessage[] = [];
    await sdk('late', 'student', { resumeAfter: 0, listener: (m) => seen.push(m) });
    await waitFor("the late joiner got the teacher's chat and the broadcast", () =>
      [kept.seq, raised.seq].every((s) => seen.some((m) => m.seq === s)),
    );
    const chatSeen = seen.find((m) => m.seq === kept.seq);
    expect(chatSeen).toMatchObject({ kind: 'chat', from: 'sensei' });
    expect(seen.find((m) => m.seq === raised.seq)).toMatchObject({
      kind: 'event',
      body: { event: Broadcast.HandRaised },
    });
  }, 180_000);

  test('a member raising and lowering its hand past the per-subject share pushes out only broadcasts about itself', async () => {
    const kumi = await sdk('kumi', 'student');
    await kumi.request(RequestEvent.RaiseHand, { note: 'before the yo-yo' });
    const before = await waitFor('the hand-raise broadcast stored', async () => {
      const m = await jsm.direct
        .getMessage(ROOM, { last_by_subj: userEventsSubject(ROOM, 'kumi') })
        .catch(() => null);
      return m?.json<{ event: string }>().event === Broadcast.HandRaised ? m : undefined;
    });
    const perSubject = (await roomConfig()).max_msgs_per_subject ?? -1;
    expect(perSubject).toBeGreaterThan(0);
    const yoyo = await sdk('yoyo', 'student');
    const t0 = Date.now();
    let refused = 0;
    for (let i = 0; i < Math.ceil(perSubject / 2) + 10; i++) {
      for (const e of [RequestEvent.RaiseHand, RequestEvent.LowerHand])
        await yoyo.request(e, {}).catch(() => refused++);
    }
    const own = await footprint(userEventsSubject(ROOM, 'yoyo'));
    console.log(
      `abuse-history: a hand raised and lowered ${Math.ceil(perSubject / 2) + 10} times in ${Date.now() - t0} ms (${refused} refused): ${own.messages} broadcasts about it kept`,
    );
    expect(own.messages).toBeLessThanOrEqual(perSubject);
    const kept = await jsm.streams.getMessage(ROOM, { seq: before.seq }).catch(() => null);
    expect(kept?.subject).toBe(userEventsSubject(ROOM, 'kumi'));
  }, 60_000);

  test('a request with a malformed id gets no answer, and a request with a well-formed id gets one that names it', async () => {
    const nc = await raw('quill', 'observer');
    const js = jetstream(nc);
    const before = (await footprint(userAnswerSubject(ROOM, 'quill'))).messages;
    for (const id of ['has space', 'x'.repeat(65), 'dot.ted', '', 42])
      await js.publish(
        roleWorkerSubject(ROOM, 'quill', 'observer'),
        JSON.stringify({ event: RequestEvent.InitialData, id }),
      );
    await js.publish(roleWorkerSubject(ROOM, 'quill', 'observer'), 'not json');
    await js.publish(
      roleWorkerSubject(ROOM, 'quill', 'observer'),
      JSON.stringify({ event: 'REQ_NOTHING', id: 'quill-1' }),
    );
    await queueDrained();
    const answer = await lastOn(userAnswerSubject(ROOM, 'quill'));
    expect(answer.json()).toMatchObject({ id: 'quill-1', ok: false });
    expect((await footprint(userAnswerSubject(ROOM, 'quill'))).messages).toBe(before + 1);
  }, 60_000);
});

describe('system message ids no member can pre-empt', () => {
  test('chats carrying every id a student could derive do not swallow a departure, a hand lowered by the system, a room update or the answer and broadcast of its own request', async () => {
    const mallory = jetstream(await raw('eve', 'student'));
    const victim = await sdk('kaito', 'student');
    await victim.request(RequestEvent.RaiseHand, { note: 'me' });
    await waitFor('the victim is present', async () =>
      (await storedBroadcasts()).some(
        (b) =>
          b.event === Broadcast.HandRaised && (b.data as { userId: string }).userId === 'kaito',
      ),
    );
    const seqBefore = (await jsm.streams.info(ROOM)).state.last_seq;

    // The old schemes: `room-updated-{room}-{revision}` for the next thousand revisions, and the
    // ids the pool derived from a request (its id, its queue sequence) for its own next request.
    const rev = (await jsm.streams.info(kvStreamName(Bucket.Rooms))).state.last_seq;
    const ids = Array.from({ length: 1_000 }, (_, i) => `room-updated-${ROOM}-${rev + 1 + i}`);
    const requestId = 'eve-raise-1';
    const queueSeq = (await jsm.streams.info(WORKER_STREAM)).state.last_seq + 1;
    for (const base of [requestId, `${queueSeq}`])
      ids.push(`ans-${base}`, `evt-${base}-0`, `evt-${base}-1`);
    const first = await flood(
      mallory,
      chatSubject(ROOM, 'eve'),
      ids.length,
      () => '',
      (i) => String(ids[i]),
    );
    // The victim's connection drops. Its departure comes when the grace period ends (2 s here),
    // at a time the old scheme put in its ids (`left-`/`lowered-{room}-{user}-{ISO time}`): the
    // attacker, who sees the victim's live updates stop, takes every millisecond around it.
    await victim.close({ leave: false });
    const gone = Date.now();
    const times = Array.from({ length: 2_200 }, (_, i) => new Date(gone + 1_800 + i).toISOString());
    const guesses = [
      ...times.map((t) => `left-${ROOM}-kaito-${t}`),
      ...times.map((t) => `lowered-${ROOM}-kaito-${t}`),
    ];
    const second = await flood(
      mallory,
      chatSubject(ROOM, 'eve'),
      guesses.length,
      () => '',
      (i) => String(guesses[i]),
      1_100,
    );
    console.log(
      `abuse-history: ${first.stored + second.stored} chats with derived ids stored, the departure's ${second.stored} within ${Date.now() - gone} ms of the drop`,
    );
    // The room is updated; the attacker raises its own hand with the request id it pre-empted.
    writeRoom(`${TITLE} (updated)`);
    await mallory.publish(
      roleWorkerSubject(ROOM, 'eve', 'student'),
      JSON.stringify({ event: RequestEvent.RaiseHand, id: requestId }),
    );

    const want = (b: { event: string; data: unknown }): string | undefined => {
      const d = b.data as { userId?: string; by?: string; title?: string };
      if (b.event === Broadcast.ParticipantLeft && d.userId === 'kaito') return 'left';
      if (b.event === Broadcast.HandLowered && d.userId === 'kaito' && d.by === 'system')
        return 'lowered';
      if (b.event === Broadcast.RoomUpdated && d.title === `${TITLE} (updated)`) return 'updated';
      if (b.event === Broadcast.HandRaised && d.userId === 'eve') return 'raised';
      return undefined;
    };
    let found = new Set<string>();
    try {
      await waitFor(
        'the departure, the lowering, the room update and the raise stored',
        async () => {
          found = new Set(
            (await storedBroadcasts())
              .filter((b) => b.seq > seqBefore)
              .map(want)
              .filter((w) => w !== undefined),
          );
          return found.size === 4;
        },
        { timeoutMs: 20_000, intervalMs: 250 },
      );
    } finally {
      console.log(
        `abuse-history: broadcasts stored after the pre-empting chats: ${[...found].join(', ')}`,
      );
    }
    const answer = await waitFor('the answer to the raise stored', async () => {
      const m = await jsm.streams
        .getMessage(ROOM, { last_by_subj: userAnswerSubject(ROOM, 'eve') })
        .catch(() => null);
      return m?.json<{ id: string }>().id === requestId ? m : undefined;
    });
    expect(answer.seq).toBeGreaterThan(seqBefore);
  }, 90_000);
});

describe('what STREAM.INFO tells a member', () => {
  test('no member learns from the stream which users got answers (observers and departed users included)', async () => {
    const shy = await sdk('shy-owl', 'observer');
    await shy.request(RequestEvent.InitialData);
    await shy.close();
    const nc = await raw('snoop', 'observer');
    let listed: string[] = [];
    let refused = '';
    try {
      const r = await nc.request(JsApi.streamInfo(ROOM), JSON.stringify({ subjects_filter: '>' }), {
        timeout: 2_000,
      });
      const body = r.json<{ state?: { subjects?: Record<string, number> } }>();
      listed = Object.keys(body.state?.subjects ?? {});
    } catch (e) {
      refused = (e as Error).message;
    }
    console.log(
      `abuse-history: STREAM.INFO listed ${listed.length} subjects (${listed.filter((s) => s.includes('.user.')).join(', ')})${refused ? `; refused: ${refused}` : ''}`,
    );
    expect(listed.filter((s) => s.includes('shy-owl'))).toEqual([]);
    expect(listed.filter((s) => s.startsWith(`room.${ROOM}.user.`))).toEqual([]);
    expect(nc.isClosed()).toBe(false);
  }, 30_000);
});

/** Joins `room` with the SDK as a student, with a display name when given. */
async function member(room: string, user: string, name?: string): Promise<RoomClient> {
  const c = await RoomClient.connect({
    connect,
    servers: server.url,
    roomId: room,
    userId: user,
    token: await token(server.keys, {
      room,
      sub: user,
      role: 'student',
      ...(name !== undefined ? { name } : {}),
    }),
    autoRenew: false,
  });
  closers.push(() => c.close({ leave: false }));
  return c;
}

/** A control character is six bytes of JSON (`\u0001`): text as wide as it gets. */
const wide = (n: number): string => '\u0001'.repeat(n);

describe('the initial data and the largest message a room stream takes', () => {
  test('members raising hands with the longest notes do not make it too large for everyone: the answer leaves the notes out', async () => {
    await publishRoom(svc, 'notes', { maxParticipants: 4, history: { maxMessageSize: '4Ki' } });
    const users = await Promise.all(['n1', 'n2', 'n3', 'n4'].map((u) => member('notes', u)));
    // Four notes of 1.2 KB: 5 KB of hands in a 4 KiB stream message.
    for (const u of users)
      await expect(u.request(RequestEvent.RaiseHand, { note: wide(200) })).resolves.toEqual({});
    const data = await users[0]?.request<{
      hands: { userId: string; note: string }[];
      notesOmitted?: boolean;
    }>(RequestEvent.InitialData);
    expect(data?.notesOmitted).toBe(true);
    expect(data?.hands.map((h) => [h.userId, h.note]).sort()).toEqual([
      ['n1', ''],
      ['n2', ''],
      ['n3', ''],
      ['n4', ''],
    ]);
  }, 30_000);

  test('an answer still larger than the stream takes is refused at once with INTERNAL instead of being retried, and the next request is answered', async () => {
    // The platform's longest display names and the operator's widest title: about 5 KB.
    await publishRoom(svc, 'tiny', {
      maxParticipants: 4,
      title: wide(200),
      history: { maxMessageSize: '4Ki' },
    });
    expect((await jsm.streams.info('tiny')).config.max_msg_size).toBe(4096);
    const names = ['t1', 't2', 't3', 't4'];
    const [c] = await Promise.all(names.map((u) => member('tiny', u, wide(128))));
    const presence = await openBucket(svc, Bucket.Presence);
    await waitFor('all four present', async () => {
      for (const u of names) {
        const e = await presence.get(presenceKey('tiny', u));
        if (e?.operation !== 'PUT' || e.json<{ state: string }>().state !== 'online') return false;
      }
      return true;
    });
    const t0 = Date.now();
    const e: unknown = await c?.request(RequestEvent.InitialData).catch((x: unknown) => x);
    const took = Date.now() - t0;
    console.log(`abuse-history: an initial data answer over max_msg_size refused in ${took} ms`);
    expect(e).toBeInstanceOf(RoomRequestError);
    expect((e as RoomRequestError).code).toBe('INTERNAL');
    expect((e as RoomRequestError).message).toMatch(/maxMessageSize/);
    // The first redelivery would have come a second later.
    expect(took).toBeLessThan(1_000);
    await expect(c?.request(RequestEvent.RaiseHand)).resolves.toEqual({});
  }, 30_000);
});
