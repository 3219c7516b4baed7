/**
 * nats-server ≥ 2.14 knows a second `$JS.ACK` format,
 * `$JS.ACK.{domain}.{account hash}.{stream}.{consumer}.{delivered}.{sseq}.{cseq}.{ts}.{pending}`,
 * which its `js_ack_fc_v2` feature flag turns on (and a later release makes the default). With it
 * on, every delivery's reply is in that form: a room client must still ack its own consumer, and
 * still only its own, in either form. Every consumer listens to both forms whatever the flag, so
 * the attacks run against a server with the flag on and one with the default.
 */
import { createHash } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { RoomClient, RoomMessage } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { openBucket } from '../../src/infra/kv.js';
import { DEFAULT_ACCOUNTS } from '../../src/infra/natsconf.js';
import {
  Bucket,
  chatSubject,
  JsApi,
  roomStreamName,
  userInboxPrefix,
} from '../../src/protocol/subjects.js';
import { expectViolation } from '../helpers/assert-nats.js';
import {
  connectClient,
  joinRoom,
  startCallout,
  token,
  type TestCallout,
} from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

/** The server's opt-in to the v2 ack format (`server/feature_flags.go`). */
const ACK_V2_ON = 'feature_flags: { js_ack_fc_v2: true }';
const ROOM = 'acks';
/** The victim's room in the attacks. */
const OTHER = 'other';
/**
 * `_` is a valid room id, and the domain token of every v2 ack on a server without a JetStream
 * domain.
 */
const UNDERSCORE = '_';

/**
 * The 8-character hash of an account's name in v2 acks (nats-server `getHash`): the first 8
 * bytes of its SHA-256, each mod 62 as a digit or letter.
 */
function accountHash(name: string): string {
  const digits = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const sum = createHash('sha256').update(name).digest();
  return [...sum.subarray(0, 8)].map((b) => digits[b % digits.length]).join('');
}

describe.each([
  ['the v2 ack format on', ACK_V2_ON],
  ['the default ack format', undefined],
])('nats-server with %s', (_what, extra) => {
  let server: TestNats;
  let svc: NatsConnection;
  let jsm: JetStreamManager;
  let callout: TestCallout;
  let worker: TestWorker;
  const raw: NatsConnection[] = [];

  beforeAll(async () => {
    server = await startNats(extra !== undefined ? { config: { extra } } : {});
    svc = await server.connectService();
    jsm = await jetstreamManager(svc);
    for (const b of Object.values(Bucket)) await openBucket(svc, b);
    await publishRoom(svc, ROOM, { maxParticipants: 20 });
    await publishRoom(svc, OTHER, { maxParticipants: 20 });
    await publishRoom(svc, UNDERSCORE, { maxParticipants: 20 });
    callout = await startCallout(server.keys, [server.url]);
    worker = await startWorker(server.keys, [server.url]);
  }, 60_000);
  afterAll(async () => {
    for (const nc of raw) await nc.close();
    raw.length = 0;
    await worker?.stop();
    await callout?.stop();
    await svc?.close();
    await server?.destroy();
  });

  async function rawClient(room: string, user: string): Promise<NatsConnection> {
    const t = await token(server.keys, { room, sub: user, role: 'student' });
    const nc = await connectClient(server.url, room, user, t);
    raw.push(nc);
    return nc;
  }

  const text = (m: RoomMessage): unknown => (m.body as { text?: unknown } | null)?.text;

  /** What the server says about a consumer's acks. */
  async function ackState(stream: string, consumer: string) {
    const i = await jsm.consumers.info(stream, consumer);
    return {
      delivered: i.delivered.stream_seq,
      ackFloor: i.ack_floor.stream_seq,
      ackPending: i.num_ack_pending,
      redelivered: i.num_redelivered,
    };
  }

  test('a client catches up, its acks are accepted, chat and answers flow', async () => {
    const teacher = await joinRoom(server.url, server.keys, ROOM, 'sensei', { role: 'teacher' });
    let student: RoomClient | undefined;
    try {
      for (let i = 0; i < 3; i++) await teacher.chat(`before ${i}`);
      student = await joinRoom(server.url, server.keys, ROOM, 'hana');
      const seen: RoomMessage[] = [];
      student.on((m) => seen.push(m));
      // Catch-up: the history arrives and every delivery is acked (one by one, explicit acks).
      await waitFor('the history reaches the student', () =>
        [0, 1, 2].every((i) => seen.some((m) => m.kind === 'chat' && text(m) === `before ${i}`)),
      );
      const last = Math.max(
        ...seen.filter((m) => m.kind === 'chat' && m.from === 'sensei').map((m) => m.seq),
      );
      await waitFor('the server counts every catch-up delivery acked', async () => {
        const s = await ackState(roomStreamName(ROOM), 'hana');
        if (s.delivered >= last && s.ackFloor === s.delivered && s.ackPending === 0) return s;
        throw new Error(`the server reports ${JSON.stringify(s)}, last chat at ${last}`);
      });

      // Chat both ways and an answer from the worker.
      const heard: RoomMessage[] = [];
      teacher.on((m) => heard.push(m));
      await student.chat('after');
      await waitFor('the teacher hears the student', () =>
        heard.some((m) => m.kind === 'chat' && m.from === 'hana' && text(m) === 'after'),
      );
      await teacher.chat('reply');
      await waitFor('the student hears the teacher', () =>
        seen.some((m) => m.kind === 'chat' && m.from === 'sensei' && text(m) === 'reply'),
      );
      await expect(student.request(RequestEvent.InitialData)).resolves.toBeDefined();
      // Live messages arrive as the stream's republished copies; whatever the consumer delivered
      // meanwhile is acked, none waits for redelivery.
      const after = await waitFor('nothing the consumer delivered waits for an ack', async () => {
        const s = await ackState(roomStreamName(ROOM), 'hana');
        return s.ackFloor === s.delivered && s.ackPending === 0 && s;
      });
      expect(after.redelivered).toBe(0);
    } finally {
      await student?.close({ leave: true });
      await teacher.close({ leave: true });
    }
  }, 60_000);

  test("a client cannot ack another user's consumer in either format, nor through a numeric name or room `_`", async () => {
    // The victim pulls one message and leaves it unacked.
    const victim = await rawClient(OTHER, 'kenji');
    await jetstream(svc).publish(chatSubject(OTHER, 'sensei'), JSON.stringify({ text: 'hi' }));
    // A raw pull, as any client may make of its own consumer: the delivery carries the ack reply.
    const inbox = `${userInboxPrefix(OTHER, 'kenji')}.pull`;
    const deliveries = victim.subscribe(inbox, { max: 1, timeout: 6_000 });
    victim.publish(
      JsApi.consumerNext(roomStreamName(OTHER), 'kenji'),
      JSON.stringify({ batch: 1, expires: 5_000_000_000 }),
      { reply: inbox },
    );
    let m: Msg | undefined;
    for await (const d of deliveries) m = d;
    if (!m?.reply) throw new Error(`the victim got no delivery (${m?.subject ?? 'none'})`);
    // Both forms of the victim's ack; the server's own is the reply.
    const hash = accountHash(DEFAULT_ACCOUNTS.app);
    const tail = m.reply.split('.').slice(extra !== undefined ? 4 : 2);
    expect(tail.slice(0, 2)).toEqual([roomStreamName(OTHER), 'kenji']);
    const v1 = ['$JS', 'ACK', ...tail].join('.');
    const v2 = ['$JS', 'ACK', '_', hash, ...tail].join('.'); // no JetStream domain: `_`
    expect(m.reply).toBe(extra !== undefined ? v2 : v1);
    const t = v2.split('.');
    const sseq = t[7] ?? '';
    const before = await ackState(roomStreamName(OTHER), 'kenji');
    expect(before.ackPending).toBe(1);

    // Attackers: one in the victim's room, one in another room whose user id is the victim's
    // pending stream sequence. For the second, a 9-token subject with its own room and consumer in
    // tokens 5 and 6 is the victim's v1 ack of that sequence: a permission that wildcards v2's
    // domain and hash tokens and ends in `>` would let it through.
    const sameRoom = await rawClient(OTHER, 'mallory');
    const otherRoom = await rawClient(ROOM, sseq);
    // Room `_`, user named like APP's account hash (8 letters and digits, a valid id): the v1
    // permission `$JS.ACK.{room}.{consumer}.>` would be every v2 ack of every consumer in APP.
    const hashRoom = await rawClient(UNDERSCORE, hash);
    const numeric = ['$JS', 'ACK', roomStreamName(OTHER), 'kenji', roomStreamName(ROOM), sseq]
      .concat(t.slice(8, 11))
      .join('.');
    const attacks: [NatsConnection, string, string][] = [
      [sameRoom, v2, ''],
      [sameRoom, v1, ''],
      [sameRoom, v2, '+TERM'],
      [sameRoom, v1, '+ACK'],
      [otherRoom, v2, ''],
      [otherRoom, v1, ''],
      [otherRoom, numeric, ''],
      [otherRoom, numeric, '+TERM'],
      [hashRoom, v2, ''],
      [hashRoom, v2, '+TERM'],
    ];
    for (const [nc, subject, body] of attacks) {
      await expectViolation(nc, 'publish', subject, () => nc.publish(subject, body));
    }
    // Each attacker's connection is still up (a denial, not a disconnect): a flush round-trips.
    await sameRoom.flush();
    await otherRoom.flush();
    await hashRoom.flush();
    expect(await ackState(roomStreamName(OTHER), 'kenji')).toEqual(before);

    // The crafted subjects are acks of the victim's consumer where nothing narrows them (the
    // service user in APP): only the permissions stand between them and the attackers.
    svc.publish(extra !== undefined ? numeric : v2, '');
    await waitFor('a crafted subject acks the victim when permitted', async () => {
      const s = await ackState(roomStreamName(OTHER), 'kenji');
      return s.ackPending === 0 && s.ackFloor === Number(sseq);
    });
  }, 60_000);
});
