/**
 * One client process of bench/scale-out: it holds a share of the users (students, or the rooms'
 * teachers) as SDK `RoomClient`s, each on the node it was given, and obeys one JSON command per
 * line on stdin, answering each with one JSON line on stdout when done:
 *
 *   {"op":"join","users":[{"room","user","url","role"}],"concurrency":20}
 *        mints each user's token, connects it (first time or again), keeps it; answers with the
 *        latency of every join in ms and the errors
 *   {"op":"rejoin","concurrency":20,"resume":true}
 *        the same users again, after a drop; with `resume`, each from the last sequence it
 *        handed on (`resumeAfter`, what an app that keeps it does, and what the SDK does itself
 *        when its connection comes back), without it from where its consumer was last acked (a
 *        page reloaded without its history)
 *   {"op":"drop"}                      closes every connection without leaving (a network blip)
 *   {"op":"count"}                     chat deliveries counted so far (students)
 *   {"op":"take"}                      the count and each delivery's latency in ms, then resets
 *   {"op":"chat","rate":60,"seconds":20}
 *        the teachers chat, `rate` messages a second in all, round robin over the rooms; the text
 *        is the send time in epoch ms, which the students decode into a latency
 *
 * Environment: SCALE_KEYS_DIR (the bench's keys, to mint room tokens).
 */
import { createInterface } from 'node:readline';
import { connect } from '@nats-io/transport-node';
import { RoomClient, type RoomMessage } from '../../src/client/index.js';
import { loadTokenSigner, mintRoomToken } from '../../src/infra/tokens.js';
import { paced, pool } from '../lib.js';

const keysDir = process.env['SCALE_KEYS_DIR'];
if (!keysDir) throw new Error('SCALE_KEYS_DIR is not set');
const signer = await loadTokenSigner(keysDir);

interface User {
  room: string;
  user: string;
  url: string;
  role: string;
}
type Command =
  | { op: 'join'; users: User[]; concurrency: number }
  | { op: 'rejoin'; concurrency: number; resume: boolean }
  | { op: 'drop' }
  | { op: 'count' }
  | { op: 'take' }
  | { op: 'chat'; rate: number; seconds: number };

let users: User[] = [];
const tokens = new Map<string, string>();
let clients: (RoomClient | undefined)[] = [];
/** The last sequence each user's client handed on before the drop. */
let lastSeqs: number[] = [];
let delivered = 0;
let latencies: number[] = [];

const onMessage = (m: RoomMessage): void => {
  if (m.kind !== 'chat') return;
  delivered++;
  latencies.push(Date.now() - Number((m.body as { text: string }).text));
};

async function joinAll(concurrency: number, resume = false): Promise<Record<string, unknown>> {
  clients = new Array<RoomClient | undefined>(users.length);
  const r = await pool(users.length, concurrency, async (i) => {
    const u = users[i] as User;
    const key = `${u.room}/${u.user}`;
    let token = tokens.get(key);
    if (token === undefined) {
      token = await mintRoomToken(signer, { room: u.room, sub: u.user, role: u.role });
      tokens.set(key, token);
    }
    clients[i] = await RoomClient.connect({
      connect,
      servers: u.url,
      roomId: u.room,
      userId: u.user,
      token,
      autoRenew: false,
      // Each user stays on the node it was given, also when it reconnects.
      connection: { ignoreClusterUpdates: true, timeout: 20_000 },
      ...(u.role === 'student' ? { listener: onMessage } : {}),
      ...(resume && (lastSeqs[i] ?? 0) > 0 ? { resumeAfter: lastSeqs[i] } : {}),
    });
  });
  return { latencies: r.latencies, errors: r.errors, elapsedMs: r.elapsedMs };
}

async function run(c: Command): Promise<Record<string, unknown>> {
  switch (c.op) {
    case 'join':
      users = c.users;
      return joinAll(c.concurrency);
    case 'rejoin':
      return joinAll(c.concurrency, c.resume);
    case 'drop': {
      lastSeqs = clients.map((x) => x?.lastSequence ?? 0);
      const open = clients.filter((x): x is RoomClient => x !== undefined);
      await Promise.all(open.map((x) => x.close({ leave: false }).catch(() => undefined)));
      clients = [];
      return { closed: open.length };
    }
    case 'count':
      return { delivered };
    case 'take': {
      const out = { delivered, latencies };
      delivered = 0;
      latencies = [];
      return out;
    }
    case 'chat': {
      const teachers = clients.filter((x): x is RoomClient => x !== undefined);
      if (teachers.length === 0) throw new Error('no teacher joined');
      const r = await paced(Math.round(c.rate * c.seconds), c.rate, (i) =>
        (teachers[i % teachers.length] as RoomClient).chat(String(Date.now())),
      );
      return { sent: r.latencies.length, errors: r.errors, elapsedMs: r.elapsedMs };
    }
  }
}

process.stdout.write(JSON.stringify({ ready: true }) + '\n');
for await (const line of createInterface({ input: process.stdin })) {
  let answer: Record<string, unknown>;
  try {
    answer = await run(JSON.parse(line) as Command);
  } catch (e) {
    answer = { error: e instanceof Error ? e.message : String(e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await Promise.all(
  clients
    .filter((x): x is RoomClient => x !== undefined)
    .map((x) => x.close({ leave: false }).catch(() => undefined)),
);
process.exit(0);
