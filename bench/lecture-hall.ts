/**
 * Lecture hall: U SDK clients (`RoomClient`) join one Room of at least U seats at an aggregate
 * rate, spread over P child processes, against nats-server, `torii auth-callout` and `torii
 * worker` each in a process of its own (as deployed). Then a tenth of them leave (`REQ_LEAVE`).
 * Prints one JSON line.
 *
 *   npx tsx bench/lecture-hall.ts [--users 2000] [--procs 4] [--rate 100] [--root DIR]
 *
 * Per join: the time from the start of the connect to the `REQ_INITIAL_DATA` answer (p50, p99,
 * max) and whether every join was answered. Per member: the presence messages it received
 * (`EVT_PARTICIPANT_JOINED`/`_LEFT`, and the batches of large rooms), catch-up included, and
 * their payload bytes (max and mean over members): what others' joins and departures cost it.
 * CPU seconds of nats-server, the callout and the worker, and the server's delivered messages.
 *
 * `--root` runs the roles and the SDK of another checkout (a built baseline) with this file's
 * harness, so before and after are measured by the same code.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import type { RoomClient } from '../src/client/index.js';
import { PROJECT_ROOT } from '../src/runtime/version.js';
import { token } from '../test/helpers/callout.js';
import { startNats } from '../test/helpers/nats.js';
import { freePort, track, waitFor } from '../test/helpers/procs.js';
import { publishRoom } from '../test/helpers/room.js';
import { cpuSeconds, nowMs, r2, report, summary } from './lib.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    procs: { type: 'string', default: '4' },
    rate: { type: 'string', default: '100' },
    /** The fraction of members that leave once everyone is in. */
    leave: { type: 'string', default: '0.1' },
    root: { type: 'string', default: PROJECT_ROOT },
    /** Internal: run as a client process. */
    child: { type: 'boolean', default: false },
  },
});
const ROOT = path.resolve(values.root);
const ROOM = 'hall';
/** How long presence traffic must stay quiet before counting ends, in milliseconds. */
const SETTLE_QUIET_MS = 3_000;
/** Longest a phase may take, in milliseconds. */
const PHASE_TIMEOUT_MS = 300_000;

/** Presence broadcasts of either protocol version. */
const PRESENCE_EVENTS: ReadonlySet<string> = new Set([
  'EVT_PARTICIPANT_JOINED',
  'EVT_PARTICIPANT_LEFT',
  'EVT_PRESENCE_BATCH',
]);

type ToChild =
  | { type: 'join'; url: string; users: { userId: string; token: string; at: number }[] }
  | { type: 'leave'; userIds: string[] }
  | { type: 'report' };
type FromChild =
  | { type: 'joined'; latencies: number[]; errors: string[]; answerBytes: number[] }
  | { type: 'left'; errors: number }
  | { type: 'quietFor'; ms: number }
  | { type: 'counts'; msgs: number[]; bytes: number[] };

/** A client process: joins its share at its times, counts what each member receives. */
async function child(): Promise<void> {
  const sdk = (await import(path.join(ROOT, 'src', 'client', 'index.ts'))) as {
    RoomClient: typeof RoomClient;
  };
  type Client = RoomClient;
  const clients = new Map<string, Client>();
  const counts = new Map<string, { msgs: number; bytes: number }>();
  let lastPresenceAt = nowMs();
  const send = (m: FromChild): void => void process.send?.(m);
  const quiet = setInterval(() => send({ type: 'quietFor', ms: nowMs() - lastPresenceAt }), 500);
  process.on('message', (msg: ToChild) => {
    void (async () => {
      if (msg.type === 'join') {
        const latencies: number[] = [];
        const errors: string[] = [];
        const answerBytes: number[] = [];
        const origin = Date.now();
        await Promise.all(
          msg.users.map(async (u) => {
            const wait = u.at - (Date.now() - origin);
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            const c = { msgs: 0, bytes: 0 };
            counts.set(u.userId, c);
            const t0 = nowMs();
            try {
              const client = await sdk.RoomClient.connect({
                connect,
                servers: msg.url,
                token: u.token,
                roomId: ROOM,
                userId: u.userId,
                autoRenew: false,
                listener: (m) => {
                  const ev = (m.body as { event?: unknown } | null)?.event;
                  if (m.kind !== 'event' || typeof ev !== 'string' || !PRESENCE_EVENTS.has(ev))
                    return;
                  const about = (m.body as { data?: { userId?: unknown } }).data?.userId;
                  if (about === u.userId) return; // its own join is not another's
                  c.msgs++;
                  c.bytes += JSON.stringify(m.body).length;
                  lastPresenceAt = nowMs();
                },
              });
              clients.set(u.userId, client);
              const initial = await client.request('REQ_INITIAL_DATA', {}, 60_000);
              latencies.push(nowMs() - t0);
              answerBytes.push(JSON.stringify(initial).length);
            } catch (e) {
              counts.delete(u.userId); // a member that never joined receives nothing
              errors.push(e instanceof Error ? e.message : String(e));
            }
          }),
        );
        send({ type: 'joined', latencies, errors, answerBytes });
      } else if (msg.type === 'leave') {
        let errors = 0;
        await Promise.all(
          msg.userIds.map(async (id) => {
            const c = clients.get(id);
            clients.delete(id);
            counts.delete(id); // only members who stay are counted
            await c?.close().catch(() => errors++);
          }),
        );
        send({ type: 'left', errors });
      } else {
        clearInterval(quiet);
        const all = [...counts.values()];
        send({ type: 'counts', msgs: all.map((c) => c.msgs), bytes: all.map((c) => c.bytes) });
        await Promise.all([...clients.values()].map((c) => c.close({ leave: false })));
        process.exit(0);
      }
    })();
  });
}

/** Sends to a child and waits for its answer of one type. */
function ask<T extends FromChild['type']>(
  c: ChildProcess,
  msg: ToChild,
  type: T,
): Promise<Extract<FromChild, { type: T }>> {
  return new Promise((resolve) => {
    const on = (m: FromChild): void => {
      if (m.type !== type) return;
      c.off('message', on);
      resolve(m as Extract<FromChild, { type: T }>);
    };
    c.on('message', on);
    c.send(msg);
  });
}

async function main(): Promise<void> {
  const U = Number(values.users);
  const P = Number(values.procs);
  const RATE = Number(values.rate);
  const server = await startNats();
  const svc = await server.connectService();
  await publishRoom(svc, ROOM, { maxParticipants: Math.max(U + 100, 2_000) });
  const role = async (name: string): Promise<ChildProcess> => {
    const port = await freePort();
    const proc = track(
      spawn(
        process.execPath,
        [
          path.join(ROOT, 'dist', 'cli.js'),
          name,
          '--nats-url',
          server.url,
          '--keys-dir',
          server.keys.dir,
          '--http-port',
          String(port),
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      ),
    );
    await waitFor(
      `${name} ready`,
      async () =>
        (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200,
      { timeoutMs: 30_000 },
    );
    return proc;
  };
  const callout = await role('auth-callout');
  const worker = await role('worker');
  const users = await Promise.all(
    Array.from({ length: U }, async (_, i) => ({
      userId: `s${i}`,
      token: await token(server.keys, {
        room: ROOM,
        sub: `s${i}`,
        role: i === 0 ? 'teacher' : 'student',
      }),
      at: Math.round((i * 1000) / RATE),
    })),
  );
  const self = fileURLToPath(import.meta.url);
  const kids = Array.from({ length: P }, () =>
    track(
      fork(self, ['--child', '--root', ROOT], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      }),
    ),
  );
  const pids = {
    server: server.process.pid as number,
    callout: callout.pid as number,
    worker: worker.pid as number,
  };
  const monitoring = server.process.ports.monitoring?.[0] as string;
  const varz = async (): Promise<{ out_msgs: number; out_bytes: number }> =>
    (await (await fetch(new URL('/varz', monitoring))).json()) as {
      out_msgs: number;
      out_bytes: number;
    };
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const v0 = await varz();

  const quietFor = new Map<ChildProcess, number>();
  for (const k of kids)
    k.on('message', (m: FromChild) => {
      if (m.type === 'quietFor') quietFor.set(k, m.ms);
    });
  const settle = (): Promise<unknown> =>
    waitFor(
      'presence traffic quiet',
      () => kids.every((k) => (quietFor.get(k) ?? 0) >= SETTLE_QUIET_MS),
      { timeoutMs: PHASE_TIMEOUT_MS, intervalMs: 250 },
    );

  const t0 = nowMs();
  const joined = await Promise.all(
    kids.map((k, p) =>
      ask(
        k,
        { type: 'join', url: server.url, users: users.filter((_, i) => i % P === p) },
        'joined',
      ),
    ),
  );
  const joinMs = nowMs() - t0;
  quietFor.clear();
  await settle();
  const every = Math.round(1 / Number(values.leave));
  const leaves = (p: number): string[] =>
    users.filter((_, i) => i > 0 && i % every === 0 && i % P === p).map((u) => u.userId);
  const left = await Promise.all(
    kids.map((k, p) => ask(k, { type: 'leave', userIds: leaves(p) }, 'left')),
  );
  quietFor.clear();
  await settle();
  const cpu = Object.fromEntries(
    Object.entries(pids).map(([k, p]) => [k, r2(cpuSeconds(p) - (cpu0[k] as number))]),
  );
  const v1 = await varz();
  const counts = await Promise.all(kids.map((k) => ask(k, { type: 'report' }, 'counts')));
  const msgs = counts.flatMap((c) => c.msgs);
  const bytes = counts.flatMap((c) => c.bytes);
  const latencies = joined.flatMap((j) => j.latencies);
  const errors = joined.flatMap((j) => j.errors);
  const mean = (xs: number[]): number => r2(xs.reduce((a, b) => a + b, 0) / xs.length);
  report({
    bench: 'lecture-hall',
    root: ROOT,
    users: U,
    procs: P,
    ratePerSec: RATE,
    joinSeconds: r2(joinMs / 1000),
    answered: latencies.length,
    joinErrors: errors.length,
    firstErrors: errors.slice(0, 3),
    connectToInitialDataMs: summary(latencies),
    initialDataBytes: summary(joined.flatMap((j) => j.answerBytes)),
    left: kids.reduce((a, _, p) => a + leaves(p).length, 0),
    leaveErrors: left.reduce((a, l) => a + l.errors, 0),
    membersCounted: msgs.length,
    presenceMsgsPerMember: { max: Math.max(...msgs), mean: mean(msgs) },
    presenceBytesPerMember: { max: Math.max(...bytes), mean: mean(bytes) },
    serverDelivered: { msgs: v1.out_msgs - v0.out_msgs, bytes: v1.out_bytes - v0.out_bytes },
    cpuSeconds: cpu,
    targets: { answered: U, p99Ms: 2_000 },
  });
  for (const k of kids) k.kill('SIGTERM');
  callout.kill('SIGTERM');
  worker.kill('SIGTERM');
  await svc.close();
  await server.destroy();
}

if (values.child) await child();
else {
  await main();
  process.exit(0);
}
