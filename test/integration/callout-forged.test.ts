/**
 * The callout's own input, from the attacker's side: authorization requests that did not come
 * from a server of this cluster, or not as configured. Each is dropped without an answer, counted
 * under its own reason, and the callout keeps answering.
 *
 * nats-server itself denies every user of the callout's account publishing on
 * `$SYS.REQ.USER.AUTH` (`server/auth.go`), so only a server can send these requests. To speak as
 * one, the test runs the callout against a server whose `authorization` block is left out: the
 * accounts and users are the ones Torii renders, and a second connection of the callout's account
 * sends the forgeries where the callout listens.
 */
import { createCurve, createServer, createUser } from '@nats-io/nkeys';
import { createInbox, headers, type NatsConnection } from '@nats-io/transport-node';
import { AUTH_REQUEST_AUDIENCE, SERVER_XKEY_HEADER } from '../../src/auth/callout.js';
import { encodeNatsJwt } from '../../src/infra/natsjwt.js';
import { NKeyPrefix, NKeySigner, XKey } from '../../src/infra/nkeys.js';
import { Sys } from '../../src/protocol/subjects.js';
import { startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';

const dec = new TextDecoder();
const enc = new TextEncoder();

/** One server's side: its nkey (signs requests) and its curve key (seals them). */
function serverKeys(): { signer: NKeySigner; xkey: XKey } {
  return {
    signer: new NKeySigner(dec.decode(createServer().getSeed()), NKeyPrefix.Server),
    xkey: new XKey(dec.decode(createCurve().getSeed())),
  };
}

interface Setup {
  server: TestNats;
  callout: TestCallout;
  auth: NatsConnection;
}

async function setup(withXkey: boolean): Promise<Setup> {
  const server = await startNats({
    rewrite: (c) => c.replace(/\nauthorization \{[\s\S]*?\n\}\n/, '\n'),
  });
  const svc = await server.connectService();
  await publishRoom(svc, 'n5');
  await svc.close();
  const callout = await startCallout(server.keys, [server.url], withXkey ? {} : { xkeySeed: '' });
  return { server, callout, auth: await server.connectAuth() };
}

let sealed: Setup;
let plain: Setup;

beforeAll(async () => {
  sealed = await setup(true);
  plain = await setup(false);
});
afterAll(async () => {
  for (const s of [sealed, plain]) {
    await s?.auth.close();
    await s?.callout.stop();
    await s?.server.destroy();
  }
});

interface Forgery {
  /** Claims of the request JWT, changed from a valid one. */
  claims?: (c: Record<string, unknown>, nats: Record<string, unknown>) => void;
  /** Signs with this key instead of the named server's. */
  signWith?: NKeySigner;
  /** How the payload travels: sealed to the callout (default with an xkey), plaintext, or sealed to another key. */
  seal?: 'callout' | 'none' | 'other';
  /** The `Nats-Server-Xkey` header, when it differs from the sealing key. */
  headerXkey?: string;
}

interface Sent {
  /** The `nats` claims of the answer (opened with the forger's key when sealed). */
  answer(): Promise<{ jwt?: string; error?: string }>;
  /** Whether an answer has arrived so far. */
  answered(): boolean;
}

/** Sends a request as a server would, changed by `f`. */
async function send(s: Setup, f: Forgery, withXkey: boolean): Promise<Sent> {
  const srv = serverKeys();
  const nats: Record<string, unknown> = {
    type: 'authorization_request',
    version: 2,
    server_id: { id: srv.signer.publicKey, name: 'forger', xkey: srv.xkey.publicKey },
    user_nkey: createUser().getPublicKey(),
    client_info: { kind: 'Client', type: 'client', host: '127.0.0.1', id: 1 },
    connect_opts: {
      auth_token: await token(s.server.keys, { room: 'n5', sub: 'hana', role: 'student' }),
    },
  };
  const claims: Record<string, unknown> = {
    iss: srv.signer.publicKey,
    sub: s.server.keys.server.issuerPublicKey,
    aud: AUTH_REQUEST_AUDIENCE,
    exp: Math.floor(Date.now() / 1000) + 5,
    nats,
  };
  f.claims?.(claims, nats);
  const jwt = enc.encode(
    encodeNatsJwt(
      claims as unknown as Parameters<typeof encodeNatsJwt>[0],
      f.signWith ?? srv.signer,
    ),
  );
  const mode = f.seal ?? (withXkey ? 'callout' : 'none');
  const h = headers();
  let payload: Uint8Array = jwt;
  if (mode !== 'none') {
    const to =
      mode === 'callout' ? s.server.keys.server.xkeyPublicKey : serverKeys().xkey.publicKey;
    payload = srv.xkey.seal(jwt, to);
    h.set(SERVER_XKEY_HEADER, f.headerXkey ?? srv.xkey.publicKey);
  }
  const inbox = createInbox();
  let got: Uint8Array | undefined;
  const arrived = new Promise<Uint8Array>((resolve) => {
    s.auth.subscribe(inbox, {
      max: 1,
      callback: (_e, m) => {
        got = m.data;
        resolve(m.data);
      },
    });
  });
  await s.auth.flush();
  s.auth.publish(Sys.AUTH_CALLOUT, payload, { reply: inbox, headers: h });
  return {
    answered: () => got !== undefined,
    answer: async () => {
      const data = await arrived;
      const opened =
        mode === 'none' ? data : srv.xkey.open(data, s.server.keys.server.xkeyPublicKey);
      const claims = dec.decode(opened).split('.')[1] ?? '';
      return (JSON.parse(Buffer.from(claims, 'base64url').toString()) as { nats: { jwt?: string } })
        .nats;
    },
  };
}

test('a well-formed request is answered (the forgeries below differ from it in one point each)', async () => {
  expect((await (await send(sealed, {}, true)).answer()).jwt).toEqual(expect.any(String));
  expect((await (await send(plain, {}, false)).answer()).jwt).toEqual(expect.any(String));
});

const other = serverKeys();
test.each<[string, string, Forgery]>([
  [
    'signed by another key than the server it names',
    'request_wrong_server',
    { claims: (c) => (c.iss = other.signer.publicKey), signWith: other.signer },
  ],
  ['a signature that does not verify', 'request_bad_signature', { signWith: other.signer }],
  ['a wrong aud', 'request_wrong_audience', { claims: (c) => (c.aud = 'someone-else') }],
  ['expired', 'request_expired', { claims: (c) => (c.exp = Math.floor(Date.now() / 1000) - 60) }],
  [
    'for another callout issuer (sub)',
    'request_wrong_subject',
    { claims: (c) => (c.sub = other.signer.publicKey) },
  ],
  ['plaintext to a callout with an xkey', 'request_not_encrypted', { seal: 'none' }],
  ['sealed to another key', 'decrypt_failed', { seal: 'other' }],
  [
    'a Nats-Server-Xkey header that differs from the signed server_id.xkey',
    'xkey_mismatch',
    {
      claims: (_c, n) => ((n.server_id as Record<string, unknown>).xkey = other.xkey.publicKey),
    },
  ],
  [
    'not an authorization request',
    'bad_request',
    { claims: (_c, n) => (n.type = 'something_else') },
  ],
])('xkey callout: %s is dropped, counted as %s', async (_what, reason, forgery) => {
  const before = await sealed.callout.rejections(reason);
  const sent = await send(sealed, forgery, true);
  // The callout counts a dropped request instead of answering it: once counted, no answer comes.
  await waitFor(reason, async () => (await sealed.callout.rejections(reason)) === before + 1);
  await sealed.auth.flush();
  expect(sent.answered()).toBe(false);
});

test('a sealed request to a callout without an xkey is dropped, counted as request_encrypted', async () => {
  const before = await plain.callout.rejections('request_encrypted');
  const sent = await send(plain, { seal: 'callout' }, false);
  await waitFor(
    'request_encrypted',
    async () => (await plain.callout.rejections('request_encrypted')) === before + 1,
  );
  await plain.auth.flush();
  expect(sent.answered()).toBe(false);
});

test('after all of them, both callouts still answer well-formed requests', async () => {
  expect((await (await send(sealed, {}, true)).answer()).jwt).toEqual(expect.any(String));
  expect((await (await send(plain, {}, false)).answer()).jwt).toEqual(expect.any(String));
});
