/**
 * Per-connection bounds, attacked by a room client holding a valid token against a real
 * nats-server rendered by `renderNatsConfig` (what `torii nats-config` and `torii dev` ship):
 * subscriptions and payload size of a room connection, the Origin of websocket upgrades, and the
 * token claims the callout and the workers must bound (display name, `iat`). Every assertion is
 * on what the server did: its connz, what the room stream stored, what another member received,
 * the upgrade's HTTP status, the callout's rejection counters, the worker's answers.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SignJWT, decodeJwt, importJWK, type JWK } from 'jose';
import { RoomClient } from '../../src/client/index.js';
import { RequestEvent, answerEventName } from '../../src/protocol/events.js';
import { openBucket } from '../../src/infra/kv.js';
import { KeyFile } from '../../src/infra/keys.js';
import {
  DEFAULT_CLIENT_MAX_PAYLOAD,
  DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
} from '../../src/infra/natsconf.js';
import { memberKey, renewKey } from '../../src/domain/room-state.js';
import {
  Bucket,
  chatSubject,
  liveSubject,
  roleWorkerSubject,
  userAnswerSubject,
} from '../../src/protocol/subjects.js';
import { MAX_NAME_LENGTH } from '../../src/protocol/claims.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { websocketUpgrade } from '../helpers/assert-nats.js';
import { startNats, type TestKeys, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';
import { startWorker, type TestWorker } from '../helpers/worker.js';

/** The classroom page's origin the server under test lets open its websocket. */
const PAGE_ORIGIN = 'http://127.0.0.1:8090';
const ROOM = 'n5';

let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let callout: TestCallout;
let worker: TestWorker;
const conns: NatsConnection[] = [];
const closers: (() => Promise<unknown>)[] = [];

async function member(user: string): Promise<NatsConnection> {
  const nc = await connectClient(
    server.url,
    ROOM,
    user,
    await token(server.keys, { room: ROOM, sub: user, role: 'teacher' }),
  );
  conns.push(nc);
  return nc;
}

/** The server's view of one connection (monitoring endpoint `/connz`). */
async function connz(nc: NatsConnection): Promise<{ subscriptions: number } | undefined> {
  const mon = server.process.ports.monitoring?.[0];
  if (!mon) throw new Error('no monitoring port');
  const res = await fetch(new URL(`/connz?cid=${nc.info?.client_id}`, mon));
  const body = (await res.json()) as { connections?: { subscriptions: number }[] };
  return body.connections?.[0];
}

/** Every message the room stream holds on `subject` since `afterSeq`, with its size. */
async function stored(subject: string, afterSeq: number): Promise<{ seq: number; size: number }[]> {
  const out: { seq: number; size: number }[] = [];
  const info = await jsm.streams.info(ROOM);
  for (let seq = afterSeq + 1; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(ROOM, { seq }).catch(() => null);
    if (m && m.subject === subject) out.push({ seq, size: m.data.length });
  }
  return out;
}

async function lastSeq(): Promise<number> {
  return (await jsm.streams.info(ROOM)).state.last_seq;
}

/** Signs a room token with arbitrary claims and times (bypassing Torii's own minting checks). */
async function rawToken(
  keys: TestKeys,
  payload: Record<string, unknown>,
  iatIn: number,
): Promise<string> {
  const jwk = JSON.parse(readFileSync(path.join(keys.dir, KeyFile.TokenSigningJwk), 'utf8')) as JWK;
  const iat = Math.floor(Date.now() / 1000) + iatIn;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid })
    .setIssuer('torii')
    .setAudience('torii-nats')
    .setIssuedAt(iat)
    .setExpirationTime(Math.max(iat, Math.floor(Date.now() / 1000)) + 600)
    .sign(await importJWK(jwk, 'EdDSA'));
}

/**
 * A client that speaks the NATS protocol over TCP itself, as an attacker would: nats.js refuses
 * locally to publish more than the server announced, a modified client does not.
 */
class RawClient {
  private text = '';
  /** The server's id of this connection, from its INFO. */
  clientId = 0;
  /** Resolves when the server has closed the connection. */
  readonly closed: Promise<void>;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (b: Buffer) => (this.text += b.toString('latin1')));
    sock.on('error', () => undefined); // a reset after the server's close is expected
    this.closed = new Promise((resolve) => sock.once('close', () => resolve()));
  }

  /** Connects with `tokenValue` as `auth_token`, once the server has admitted it. */
  static async connect(url: string, tokenValue: string): Promise<RawClient> {
    const u = new URL(url);
    const c = new RawClient(net.connect(Number(u.port), u.hostname));
    const info = await c.next(/^INFO (.*)\r$/m);
    c.clientId = (JSON.parse(info) as { client_id: number }).client_id;
    c.sock.write(
      `CONNECT ${JSON.stringify({ auth_token: tokenValue, verbose: false, pedantic: false, protocol: 1, headers: true })}\r\nPING\r\n`,
    );
    const line = await c.next(/^(PONG|-ERR .*)\r$/m);
    if (line !== 'PONG') throw new Error(`not admitted: ${line}`);
    return c;
  }

  /**
   * Publishes and resolves with the server's response to a PING sent after it: `PONG` when it
   * took the message, its `-ERR` when it refused it, or `closed` when the connection ended first
   * (a server that closes while the payload is still arriving resets the socket, and the reset
   * can discard its `-ERR` before it is read).
   */
  publish(subject: string, payload: string): Promise<string> {
    this.sock.write(`PUB ${subject} ${Buffer.byteLength(payload)}\r\n${payload}\r\nPING\r\n`);
    const line = /^(PONG|-ERR .*)\r$/m;
    let ended = false;
    void this.closed.then(() => (ended = true));
    return waitFor('a PONG, an -ERR or the close', () => {
      const m = line.exec(this.text);
      if (m) {
        this.text = this.text.slice(m.index + m[0].length);
        return m[1] ?? m[0];
      }
      return ended ? 'closed' : undefined;
    });
  }

  /** The first line matching `re` the server sent since the last call; it and all before are consumed. */
  private async next(re: RegExp): Promise<string> {
    const m = await waitFor(`a line matching ${re}`, () => re.exec(this.text) ?? undefined);
    this.text = this.text.slice(m.index + m[0].length);
    return m[1] ?? m[0];
  }

  close(): Promise<void> {
    this.sock.destroy();
    return this.closed;
  }
}

beforeAll(async () => {
  server = await startNats({ websocket: true, config: { websocketAllowedOrigins: [PAGE_ORIGIN] } });
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  await publishRoom(svc, ROOM, { maxParticipants: 50 });
  callout = await startCallout(server.keys, [server.url]);
  worker = await startWorker(server.keys, [server.url]);
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await Promise.all(closers.map((c) => c()));
  await worker?.stop();
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

describe('subscriptions per room connection', () => {
  // Failed before: the server held all 101 (1,000 in the measurement) and delivered one
  // copy of a live update per subscription.
  test(`the ${DEFAULT_CLIENT_MAX_SUBSCRIPTIONS + 1}st subscription is refused; the server holds ${DEFAULT_CLIENT_MAX_SUBSCRIPTIONS} and delivers that many copies`, async () => {
    const attacker = await member('subs-attacker');
    const errors: string[] = [];
    void (async () => {
      for await (const s of attacker.status()) if (s.type === 'error') errors.push(s.error.message);
    })();
    const copies = new Map<string, number>();
    for (let i = 0; i <= DEFAULT_CLIENT_MAX_SUBSCRIPTIONS; i++)
      attacker.subscribe(liveSubject(ROOM, '*'), {
        callback: (_e, m) => {
          copies.set(m.string(), (copies.get(m.string()) ?? 0) + 1);
        },
      });
    await attacker.flush(); // the server has handled every SUB (and sent its -ERR) before the PONG
    expect((await connz(attacker))?.subscriptions).toBe(DEFAULT_CLIENT_MAX_SUBSCRIPTIONS);
    await waitFor('the refusal of the subscription past the bound', () =>
      errors.some((e) => /maximum subscriptions exceeded/i.test(e)),
    );
    expect(attacker.isClosed()).toBe(false); // refused, not disconnected

    // One live update reaches the attacker once per subscription it holds. The server hands out
    // every copy of one message before any of the next from the same sender: once the second
    // arrives, the first's copies are all in.
    const peer = await member('subs-peer');
    const first = JSON.stringify({ live: 1 });
    const second = JSON.stringify({ live: 2 });
    peer.publish(liveSubject(ROOM, 'subs-peer'), first);
    peer.publish(liveSubject(ROOM, 'subs-peer'), second);
    await waitFor('the second live update', () => copies.has(second));
    expect(copies.get(first)).toBe(DEFAULT_CLIENT_MAX_SUBSCRIPTIONS);
  });
});

describe('payload per room connection', () => {
  const sizes = [DEFAULT_CLIENT_MAX_PAYLOAD + 1, 900 * 1024];

  /** A room member that speaks the protocol itself, with a token of its own. */
  async function rawMember(user: string): Promise<RawClient> {
    const c = await RawClient.connect(
      server.url,
      await token(server.keys, { room: ROOM, sub: user, role: 'teacher' }),
    );
    closers.push(() => c.close());
    return c;
  }

  // Failed before: a 900 KiB chat was stored in the room stream.
  test.each(sizes)(
    'a chat of %i bytes is not stored; the server closes the connection',
    async (size) => {
      const user = `chat-attacker-${size}`;
      const attacker = await rawMember(user);
      const before = await lastSeq();
      const outcome = await attacker.publish(chatSubject(ROOM, user), 'x'.repeat(size));
      // a barrier: a chat within the bound, published after the attack, is stored
      const honest = await member(`chat-honest-${size}`);
      await jetstream(honest).publish(chatSubject(ROOM, `chat-honest-${size}`), 'hello');
      expect(await stored(chatSubject(ROOM, `chat-honest-${size}`), before)).toHaveLength(1);
      expect(await stored(chatSubject(ROOM, user), before)).toEqual([]);
      expect(["-ERR 'Maximum Payload Violation'", 'closed']).toContain(outcome);
      await attacker.closed;
      // Why the server closed it, from its own record of closed connections.
      const mon = server.process.ports.monitoring?.[0] ?? '';
      const reason = await waitFor('the closed connection in /connz', async () => {
        const res = await fetch(new URL(`/connz?state=closed&cid=${attacker.clientId}`, mon));
        const body = (await res.json()) as { connections?: { reason?: string }[] };
        return body.connections?.[0]?.reason;
      });
      expect(reason).toBe('Maximum Message Payload Exceeded');
    },
  );

  // Failed before: a member received a 921,611-byte live update.
  test.each(sizes)('a live update of %i bytes reaches no other member', async (size) => {
    const victim = await member(`live-victim-${size}`);
    const got: { from: string; size: number }[] = [];
    victim.subscribe(liveSubject(ROOM, '*'), {
      callback: (_e, m) => {
        got.push({ from: m.subject, size: m.data.length });
      },
    });
    await victim.flush();
    const user = `live-attacker-${size}`;
    const attacker = await rawMember(user);
    const outcome = await attacker.publish(
      liveSubject(ROOM, user),
      JSON.stringify({ live: 'x'.repeat(size) }),
    );
    const honest = await member(`live-honest-${size}`);
    honest.publish(liveSubject(ROOM, `live-honest-${size}`), JSON.stringify({ live: 1 }));
    await waitFor('the live update after the attack', () =>
      got.some((g) => g.from === liveSubject(ROOM, `live-honest-${size}`)),
    );
    expect(got.filter((g) => g.from === liveSubject(ROOM, user))).toEqual([]);
    expect(["-ERR 'Maximum Payload Violation'", 'closed']).toContain(outcome);
    await attacker.closed;
  });

  test("a live update at the bound reaches another member; a chat within the room stream's own bound is stored", async () => {
    const victim = await member('live-at-bound-victim');
    const sizes: number[] = [];
    victim.subscribe(liveSubject(ROOM, 'live-at-bound'), {
      callback: (_e, m) => {
        sizes.push(m.data.length);
      },
    });
    await victim.flush();
    const nc = await member('live-at-bound');
    const live = JSON.stringify({ live: 'x'.repeat(DEFAULT_CLIENT_MAX_PAYLOAD - 64) });
    nc.publish(liveSubject(ROOM, 'live-at-bound'), live);
    await waitFor('the live update at the bound', () => sizes.length === 1);
    expect(sizes).toEqual([Buffer.byteLength(live)]);

    // Chat is stored, so the room stream's max_msg_size (below the account's) bounds it.
    const { config } = await jsm.streams.info(ROOM);
    expect(config.max_msg_size).toBeLessThan(DEFAULT_CLIENT_MAX_PAYLOAD);
    const before = await lastSeq();
    const subject = chatSubject(ROOM, 'live-at-bound');
    // the stream counts headers too: leave room for them
    const size = (config.max_msg_size ?? 0) - 512;
    await jetstream(nc).publish(subject, 'x'.repeat(size));
    expect(await stored(subject, before)).toEqual([{ seq: expect.any(Number) as number, size }]);
  });
});

describe('websocket Origin', () => {
  const wsUrl = (): string => {
    const u = server.process.ports.websocket?.[0];
    if (!u) throw new Error('no websocket port');
    return u;
  };

  // Failed before: every Origin got 101 Switching Protocols.
  test.each(['https://evil.example', 'http://127.0.0.1:8091', 'null'])(
    'an upgrade from the foreign origin %s is refused',
    async (origin) => {
      expect(await websocketUpgrade(wsUrl(), origin)).toEqual({ status: 403 });
    },
  );

  test("an upgrade from the page's origin, or with no Origin (apps, servers), is accepted", async () => {
    expect(await websocketUpgrade(wsUrl(), PAGE_ORIGIN)).toEqual({ status: 101, info: 'INFO' });
    expect(await websocketUpgrade(wsUrl(), undefined)).toEqual({ status: 101, info: 'INFO' });
  });

  test('with no page origin configured, every browser origin is refused', async () => {
    const bare = await startNats({ keys: server.keys, websocket: true });
    closers.push(() => bare.destroy());
    const url = bare.process.ports.websocket?.[0] ?? '';
    expect(await websocketUpgrade(url, 'https://evil.example')).toEqual({ status: 403 });
    expect(await websocketUpgrade(url, PAGE_ORIGIN)).toEqual({ status: 403 });
    expect(await websocketUpgrade(url, undefined)).toEqual({ status: 101, info: 'INFO' });
  });
});

describe('token claims', () => {
  // Failed before: admitted, and every renewal answered RATE_LIMITED.
  test('a display name over the bound is refused at admission, under its own reason', async () => {
    const before = await callout.rejections('token_name_too_long');
    const claims = { sub: 'long-name', room: ROOM, role: 'student', name: 'x'.repeat(300) };
    await expect(
      connectClient(server.url, ROOM, 'long-name', await rawToken(server.keys, claims, 0)),
    ).rejects.toThrow(/authorization/i);
    expect(await callout.rejections('token_name_too_long')).toBe(before + 1);
  });

  test('a display name at the bound is admitted and renewed', async () => {
    const user = 'name-at-bound';
    const t = await token(server.keys, {
      room: ROOM,
      sub: user,
      role: 'student',
      name: 'x'.repeat(MAX_NAME_LENGTH),
    });
    const c = await RoomClient.connect({
      connect,
      servers: server.url,
      roomId: ROOM,
      userId: user,
      token: t,
      autoRenew: false,
    });
    closers.push(() => c.close());
    const renewed = decodeJwt((await c.renew()).token);
    expect(renewed).toMatchObject({ sub: user, name: 'x'.repeat(MAX_NAME_LENGTH) });
  });

  // Failed before: the first renewal stamped the rate limit, then failed to mint; every renewal
  // after it (and the event's own redelivery) answered RATE_LIMITED.
  test('renewal that cannot mint answers BAD_REQUEST, writes no rate stamp, and says so again', async () => {
    const user = 'legacy-long-name';
    const nc = await member(user);
    // A member record admitted before names were bounded at admission.
    const state = await openBucket(svc, Bucket.RoomState);
    await state.put(
      memberKey(ROOM, user),
      JSON.stringify({ roomId: ROOM, userId: user, role: 'teacher', name: 'y'.repeat(300) }),
    );
    const before = await lastSeq();
    for (const id of ['renew-1', 'renew-2']) {
      await jetstream(nc).publish(
        roleWorkerSubject(ROOM, user, 'teacher'),
        JSON.stringify({ event: RequestEvent.RenewToken, id, data: {} }),
        { msgID: id },
      );
      const answer = await waitFor(`the answer to ${id}`, async () => {
        for (const s of await stored(userAnswerSubject(ROOM, user), before)) {
          const m = await jsm.streams.getMessage(ROOM, { seq: s.seq });
          const a = m?.json<{
            event: string;
            id: string;
            ok: boolean;
            error?: { code: string; message: string };
          }>();
          if (a?.id === id) return a;
        }
        return undefined;
      });
      expect(answer).toMatchObject({
        event: answerEventName(RequestEvent.RenewToken),
        ok: false,
        error: { code: 'BAD_REQUEST', message: expect.stringMatching(/name/) as string },
      });
    }
    expect(await state.get(renewKey(ROOM, user))).toBeNull();
  });

  // Failed before: admitted.
  test('a token issued a year from now is refused, under its own reason; within the leeway it is admitted', async () => {
    const before = await callout.rejections('token_issued_in_future');
    const claims = { sub: 'future', room: ROOM, role: 'student' };
    await expect(
      connectClient(server.url, ROOM, 'future', await rawToken(server.keys, claims, 365 * 86_400)),
    ).rejects.toThrow(/authorization/i);
    expect(await callout.rejections('token_issued_in_future')).toBe(before + 1);
    const ok = await connectClient(
      server.url,
      ROOM,
      'future',
      await rawToken(server.keys, claims, 10),
    );
    conns.push(ok);
    expect(ok.isClosed()).toBe(false);
  });
});
