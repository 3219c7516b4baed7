/**
 * Capacity: what a connected user costs nats-server and the Torii roles, against a plain
 * connection with the same subscriptions on a server of the same binary, in one run. Prints one
 * JSON line.
 *
 *   npx tsx bench/capacity.ts [--users 1000] [--procs 4] [--devices on|off] [--rest 150]
 *                             [--concurrency 50] [--profile-dir DIR]
 *
 * Started as deployed, each its own process: a nats-server with Torii's config (profiling port
 * and monitoring on), `torii auth-callout` and `torii worker` against it, and a second
 * nats-server with plain token auth. `--users` SDK clients (`RoomClient`, as the page holds one:
 * its inbox, the room's republished copies and the live subjects; with `--devices on` each names
 * a device id) join one Room; the same number of plain connections, each subscribed to the same
 * subjects, connect to the plain server. Both sets are spread over `--procs` child processes
 * (this file, with `--child`), so no one event loop is the bottleneck.
 *
 * nats-server RSS (`/proc/<pid>/status`) is read before, right after the joins and after `--rest`
 * seconds at rest; per user = growth / users. The roles' RSS is read the same way, with their V8
 * heap in use (`torii_nodejs_heap_size_used_bytes` on their /metrics), which is less noisy. With `--profile-dir`, the Torii server's heap and
 * goroutine profiles (prof_port), `/connz?subs=1`, `/subsz`, `/jsz?consumers=1` and `/accountz`
 * are saved there at rest, for attribution (`go tool pprof -top DIR/heap.pb.gz`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { RoomClient } from '../src/client/index.js';
import { connectionPermissions } from '../src/domain/permissions.js';
import { compileRoom } from '../src/domain/room-compile.js';
import {
  deviceConsumerName,
  liveSubject,
  republishedSubject,
  userConsumerFilters,
  userInboxPrefix,
} from '../src/protocol/subjects.js';
import { token } from '../test/helpers/callout.js';
import { spawnRole } from '../test/helpers/cli.js';
import { startNats, testKeys } from '../test/helpers/nats.js';
import { freePort, track, waitFor } from '../test/helpers/procs.js';
import { publishRoom } from '../test/helpers/room.js';
import { startPlainServer } from './helpers/plain-server.js';
import { nowMs, pool, r2, report, rssKiB } from './lib.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '1000' },
    procs: { type: 'string', default: '4' },
    devices: { type: 'string', default: 'off' },
    rest: { type: 'string', default: '150' },
    concurrency: { type: 'string', default: '50' },
    'profile-dir': { type: 'string' },
    child: { type: 'boolean', default: false },
  },
});

const ROOM = 'capacity';
const PLAIN_TOKEN = 'bench-plain-token-0123456789abcdef';

/**
 * Who connects: SDK users to Torii; plain connections with the same subscriptions, by token
 * (`plain`) or each as its own user with the permissions Torii's callout grants it (`perms`).
 */
type Kind = 'torii' | 'plain' | 'perms';

/** A batch of users a child connects. */
interface JoinCommand {
  kind: Kind;
  url: string;
  users: { userId: string; token: string; deviceId?: string }[];
  concurrency: number;
}
type ChildReply = { joined: number; errors: number; firstError?: string } | { closed: true };

// ---------------------------------------------------------------- child: holds connections

/** The subjects a RoomClient subscribes to, for the plain connection of the same user. */
function plainSubjects(userId: string): string[] {
  return [
    ...userConsumerFilters(ROOM, userId).map(republishedSubject),
    liveSubject(ROOM, '*'),
    // the two request muxes of nats.js the SDK's connection holds (its own and JetStream's)
    `${userInboxPrefix(ROOM, userId)}.mux1.*`,
    `${userInboxPrefix(ROOM, userId)}.mux2.*`,
  ];
}

function child(): void {
  const held: { close(): Promise<void> }[] = [];
  const send = (m: ChildReply): void => void process.send?.(m);
  process.on('message', (m: JoinCommand | { close: true }) => {
    if ('close' in m) {
      void Promise.all(held.map((h) => h.close().catch(() => undefined))).then(() => {
        send({ closed: true });
        process.exit(0);
      });
      return;
    }
    let firstError: string | undefined;
    void pool(m.users.length, m.concurrency, async (i) => {
      const u = m.users[i] as JoinCommand['users'][number];
      try {
        if (m.kind === 'torii') {
          const c = await RoomClient.connect({
            connect,
            servers: m.url,
            roomId: ROOM,
            userId: u.userId,
            token: u.token,
            autoRenew: false,
            connection: { timeout: 20_000 },
            ...(u.deviceId !== undefined ? { deviceId: u.deviceId } : {}),
          });
          held.push({ close: () => c.close() });
        } else {
          const nc: NatsConnection = await connect({
            servers: m.url,
            ...(m.kind === 'perms' ? { user: u.userId, pass: u.token } : { token: u.token }),
            inboxPrefix: userInboxPrefix(ROOM, u.userId),
            timeout: 20_000,
          });
          for (const s of plainSubjects(u.userId)) nc.subscribe(s, { callback: () => undefined });
          await nc.flush();
          held.push({ close: () => nc.close() });
        }
      } catch (e) {
        firstError ??= e instanceof Error ? e.message : String(e);
        throw e;
      }
    }).then((r) =>
      send({
        joined: r.latencies.length,
        errors: r.errors,
        ...(firstError ? { firstError } : {}),
      }),
    );
  });
}

// ---------------------------------------------------------------- parent

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return (await r.json()) as T;
}

interface Varz {
  mem: number;
  connections: number;
  subscriptions: number;
}
interface Jsz {
  consumers: number;
  api: { total: number; errors: number };
  memory: number;
}

/** What the monitoring port says about a server. */
async function serverView(httpUrl: string, profPort?: number) {
  const v = await getJson<Varz>(`${httpUrl}/varz`);
  const js = await getJson<Jsz>(`${httpUrl}/jsz`);
  let goroutines: number | undefined;
  if (profPort !== undefined) {
    const text = await (
      await fetch(`http://127.0.0.1:${profPort}/debug/pprof/goroutine?debug=1`)
    ).text();
    goroutines = Number(/goroutine profile: total (\d+)/.exec(text)?.[1]);
  }
  return {
    connections: v.connections,
    subscriptions: v.subscriptions,
    consumers: js.consumers,
    jsApi: js.api,
    ...(goroutines !== undefined ? { goroutines } : {}),
  };
}

/** The Go heap in use after a forced collection (`HeapAlloc` of the runtime's MemStats), in KiB. */
async function liveHeapKiB(profPort: number): Promise<number> {
  await (await fetch(`http://127.0.0.1:${profPort}/debug/pprof/heap?gc=1`)).arrayBuffer();
  const text = await (await fetch(`http://127.0.0.1:${profPort}/debug/pprof/heap?debug=1`)).text();
  return Math.round(Number(/^# HeapAlloc = (\d+)/m.exec(text)?.[1]) / 1024);
}

/** Saves the attribution material of the Torii server. */
async function saveProfiles(dir: string, httpUrl: string, profPort: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const save = async (file: string, url: string): Promise<void> => {
    const r = await fetch(url);
    writeFileSync(path.join(dir, file), Buffer.from(await r.arrayBuffer()));
  };
  await save('heap.pb.gz', `http://127.0.0.1:${profPort}/debug/pprof/heap?gc=1`);
  await save('goroutine.txt', `http://127.0.0.1:${profPort}/debug/pprof/goroutine?debug=1`);
  // the runtime's MemStats (heap in use, idle, released; stacks) at its end
  await save('heap.txt', `http://127.0.0.1:${profPort}/debug/pprof/heap?debug=1`);
  await save('connz.json', `${httpUrl}/connz?subs=1&limit=3&acc=CLIENTS`);
  await save('subsz.json', `${httpUrl}/subsz`);
  await save('jsz.json', `${httpUrl}/jsz?consumers=1&accounts=1`);
  await save('accountz.json', `${httpUrl}/accountz`);
  await save('accountz-clients.json', `${httpUrl}/accountz?acc=CLIENTS`);
  await save('accountz-app.json', `${httpUrl}/accountz?acc=APP`);
}

/** Spreads `users` over the children; resolves when all joined, with the rate. */
async function joinAll(
  children: ChildProcess[],
  kind: Kind,
  url: string,
  users: JoinCommand['users'],
  concurrency: number,
): Promise<{
  joined: number;
  errors: number;
  perSec: number;
  seconds: number;
  firstError?: string;
}> {
  const per = Math.ceil(users.length / children.length);
  const t0 = nowMs();
  const replies = await Promise.all(
    children.map(
      (c, k) =>
        new Promise<ChildReply>((resolve) => {
          c.once('message', (m: ChildReply) => resolve(m));
          c.send({
            kind,
            url,
            users: users.slice(k * per, (k + 1) * per),
            concurrency: Math.max(1, Math.round(concurrency / children.length)),
          } satisfies JoinCommand);
        }),
    ),
  );
  const seconds = (nowMs() - t0) / 1000;
  let joined = 0;
  let errors = 0;
  let firstError: string | undefined;
  for (const r of replies) {
    if ('closed' in r) continue;
    joined += r.joined;
    errors += r.errors;
    firstError ??= r.firstError;
  }
  return {
    joined,
    errors,
    perSec: r2(joined / seconds),
    seconds: r2(seconds),
    ...(firstError ? { firstError } : {}),
  };
}

function startChildren(n: number): ChildProcess[] {
  return Array.from({ length: n }, () =>
    track(
      fork(process.argv[1] as string, ['--child'], {
        execArgv: process.execArgv,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      }),
    ),
  );
}

async function closeChildren(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.send({ close: true });
        }),
    ),
  );
}

async function main(): Promise<void> {
  const N = Number(values.users);
  const PROCS = Number(values.procs);
  const DEVICES = values.devices === 'on';
  const REST_S = Number(values.rest);
  const C = Number(values.concurrency);
  if (!['on', 'off'].includes(values.devices)) throw new Error('--devices: on or off');
  const keys = await testKeys();

  // Plain: the same binary and JetStream, token auth, no accounts, no callout.
  const plainProfPort = await freePort();
  const plain = await startPlainServer({
    name: 'plain',
    token: PLAIN_TOKEN,
    keys,
    extra: `\nprof_port: ${plainProfPort}\n`,
  });
  const plainHttpUrl = (plain.ports.monitoring?.[0] as string).replace(/\/$/, '');
  // Plain with permissions: each connection its own user with the publish and subscribe
  // permissions the callout grants a student of the Room, filled in for that user (what the
  // isolation costs nats-server per connection, without JetStream, accounts or the callout).
  const student = compileRoom(ROOM, {}).roles['student'];
  if (!student) throw new Error('no student role');
  const permsProfPort = await freePort();
  const perms = await startPlainServer({
    name: 'perms',
    token: PLAIN_TOKEN,
    keys,
    extra: `\nprof_port: ${permsProfPort}\n`,
    users: Array.from({ length: N }, (_, i) => {
      const userId = `u${i}`;
      const consumer = DEVICES ? deviceConsumerName(userId, `d${i}`) : userId;
      return {
        user: userId,
        password: PLAIN_TOKEN,
        permissions: connectionPermissions({
          roomId: ROOM,
          userId,
          consumer,
          roleName: 'student',
          templates: student.permissions,
          sharedInbox: false,
        }),
      };
    }),
  });
  const permsHttpUrl = (perms.ports.monitoring?.[0] as string).replace(/\/$/, '');

  const profPort = await freePort();
  const server = await startNats({ keys, rewrite: (c) => `${c}\nprof_port: ${profPort}\n` });
  const httpUrl = (server.process.ports.monitoring?.[0] as string).replace(/\/$/, '');
  const svc = await server.connectService();
  await publishRoom(svc, ROOM, { maxParticipants: Math.max(10_000, N) });
  await svc.close();

  // Each role as its own process, as deployed, ready before the joins (test/helpers/cli.ts).
  const role = (name: string) =>
    spawnRole([
      name,
      '--nats-url',
      server.url,
      '--keys-dir',
      keys.dir,
      ...(process.env.BENCH_ROLE_ARGS ?? '').split(' ').filter(Boolean),
    ]);
  const [calloutRole, workerRole] = await Promise.all([role('auth-callout'), role('worker')]);
  const callout = calloutRole.proc;
  const worker = workerRole.proc;
  const opsPorts = { callout: calloutRole.port, worker: workerRole.port };
  /** V8 heap in use of both roles, in KiB (their /metrics): less noisy than their RSS. */
  const rolesHeapKiB = async (): Promise<number> => {
    let sum = 0;
    for (const port of Object.values(opsPorts)) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      sum += Number(/^torii_nodejs_heap_size_used_bytes (\d+)/m.exec(text)?.[1]) / 1024;
    }
    return Math.round(sum);
  };

  const tokens = await Promise.all(
    Array.from({ length: N + 1 }, (_, i) =>
      token(keys, { room: ROOM, sub: `u${i}`, role: 'student' }),
    ),
  );
  // Ready when a probe user (not counted) joins; it leaves before the measure.
  await waitFor(
    'callout and worker ready',
    async () => {
      const c = await RoomClient.connect({
        connect,
        servers: server.url,
        roomId: ROOM,
        userId: `u${N}`,
        token: tokens[N] as string,
        autoRenew: false,
        connection: { maxReconnectAttempts: 0 },
      });
      await c.close();
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );

  const children = startChildren(PROCS);
  const settle = async (): Promise<void> => {
    // Let the server settle (goroutines of closed connections, GC) before a reading.
    await new Promise((r) => setTimeout(r, 3_000));
  };
  await settle();
  const rolesKiB = (): { callout: number; worker: number } => ({
    callout: rssKiB(callout.pid),
    worker: rssKiB(worker.pid),
  });
  const reading = async () => ({
    torii: rssKiB(server.process.pid),
    plain: rssKiB(plain.pid),
    perms: rssKiB(perms.pid),
    roles: rolesKiB(),
    rolesHeap: await rolesHeapKiB(),
    toriiServer: await serverView(httpUrl, profPort),
    plainServer: await serverView(plainHttpUrl, plainProfPort),
    permsServer: await serverView(permsHttpUrl, permsProfPort),
  });
  const before = await reading();
  // Live heap before the joins (after a collection): RSS is read first, so forcing one changes
  // no RSS reading of this run before its own.
  const liveBefore = {
    torii: await liveHeapKiB(profPort),
    plain: await liveHeapKiB(plainProfPort),
    perms: await liveHeapKiB(permsProfPort),
  };

  const plainJoin = await joinAll(
    children,
    'plain',
    plain.url,
    Array.from({ length: N }, (_, i) => ({ userId: `u${i}`, token: PLAIN_TOKEN })),
    C,
  );
  const permsJoin = await joinAll(
    children,
    'perms',
    perms.url,
    Array.from({ length: N }, (_, i) => ({ userId: `u${i}`, token: PLAIN_TOKEN })),
    C,
  );
  const toriiJoin = await joinAll(
    children,
    'torii',
    server.url,
    Array.from({ length: N }, (_, i) => ({
      userId: `u${i}`,
      token: tokens[i] as string,
      ...(DEVICES ? { deviceId: `d${i}` } : {}),
    })),
    C,
  );
  await settle();
  const joined = await reading();

  await new Promise((r) => setTimeout(r, REST_S * 1000));
  const rest = await reading();
  // After every RSS reading: a collection first, then what is live.
  const liveRest = {
    torii: await liveHeapKiB(profPort),
    plain: await liveHeapKiB(plainProfPort),
    perms: await liveHeapKiB(permsProfPort),
  };
  if (values['profile-dir']) {
    await saveProfiles(values['profile-dir'], httpUrl, profPort);
    await saveProfiles(path.join(values['profile-dir'], 'plain'), plainHttpUrl, plainProfPort);
    await saveProfiles(path.join(values['profile-dir'], 'perms'), permsHttpUrl, permsProfPort);
  }

  const perUser = (after: number, b: number): number => r2((after - b) / N);
  const toriiJoinedPer = perUser(joined.torii, before.torii);
  const toriiRestPer = perUser(rest.torii, before.torii);
  const plainJoinedPer = perUser(joined.plain, before.plain);
  const plainRestPer = perUser(rest.plain, before.plain);
  const permsJoinedPer = perUser(joined.perms, before.perms);
  const permsRestPer = perUser(rest.perms, before.perms);
  const livePer = (k: keyof typeof liveRest): number => perUser(liveRest[k], liveBefore[k]);
  const rolesPer = (at: { callout: number; worker: number }) =>
    r2((at.callout - before.roles.callout + at.worker - before.roles.worker) / N);
  report({
    bench: 'capacity',
    users: N,
    procs: PROCS,
    devices: DEVICES,
    restSeconds: REST_S,
    joins: { torii: toriiJoin, plain: plainJoin, perms: permsJoin },
    natsRssKiB: { before, joined, rest },
    perUserKiB: {
      torii: { joined: toriiJoinedPer, rest: toriiRestPer },
      plain: { joined: plainJoinedPer, rest: plainRestPer },
      perms: { joined: permsJoinedPer, rest: permsRestPer },
      // at rest, against the plain connection at rest
      ratio: { joined: r2(toriiJoinedPer / plainJoinedPer), rest: r2(toriiRestPer / plainRestPer) },
      // against a plain connection with the same permissions
      ratioPerms: {
        joined: r2(toriiJoinedPer / permsJoinedPer),
        rest: r2(toriiRestPer / permsRestPer),
      },
      roles: { joined: rolesPer(joined.roles), rest: rolesPer(rest.roles) },
      rolesHeap: {
        joined: r2((joined.rolesHeap - before.rolesHeap) / N),
        rest: r2((rest.rolesHeap - before.rolesHeap) / N),
      },
    },
    /** Go heap in use after a collection at rest, per user (less noisy than RSS). */
    liveHeapKiBPerUser: {
      torii: livePer('torii'),
      plain: livePer('plain'),
      perms: livePer('perms'),
      ratio: r2(livePer('torii') / livePer('plain')),
      ratioPerms: r2(livePer('torii') / livePer('perms')),
    },
    usersPerGiB: {
      torii: Math.round((1024 * 1024) / toriiRestPer),
      plain: Math.round((1024 * 1024) / plainRestPer),
      perms: Math.round((1024 * 1024) / permsRestPer),
    },
    targets: { ratioRest: 2, rolesKiBPerUser: 10 },
  });

  await closeChildren(children);
  callout.kill('SIGTERM');
  worker.kill('SIGTERM');
  await server.destroy();
  await plain.stop();
  await perms.stop();
}

if (values.child) child();
else {
  await main();
  process.exit(0);
}
