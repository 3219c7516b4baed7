/**
 * Room fan-out: chat from one member to everyone in rooms of 25 and 200 students, through Torii
 * (a JetStream publish into the room stream; every student's RoomClient receives it) against core
 * NATS to the same number of subscribers on the same server, in one run. Prints one JSON line.
 * The sender runs in a process of its own (bench/helpers/fanout-sender.ts), as it is a device of
 * its own; the receivers share this one.
 *
 *   npx tsx bench/fanout.ts [--sizes 25,200] [--deliveries 1600000] [--window 50] [--rate 1000]
 *                           [--pairs 3] [--messages N]
 *
 * A run sends `--deliveries` / room size messages (8,000 into 200, 64,000 into 25: runs of the
 * same length whatever the size), or `--messages` into every room.
 * Each size runs core NATS then Torii back to back, `--pairs` times: the ratio is the median of
 * those pairs' (a pair's two runs see the same load of the machine), the pair reported in full
 * is the median one, and every pair's ratio is listed.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { RoomClient } from '../src/client/index.js';
import { joinRoom, startCallout, token } from '../test/helpers/callout.js';
import { startNats } from '../test/helpers/nats.js';
import { publishRoom } from '../test/helpers/room.js';
import { nowMs, r2, report, summary, withCpu } from './lib.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '25,200' },
    deliveries: { type: 'string', default: '1600000' },
    messages: { type: 'string' },
    window: { type: 'string', default: '50' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
    pairs: { type: 'string', default: '3' },
  },
});
const SIZES = values.sizes.split(',').map(Number);
/** Messages a run sends into a room of `size`. */
const messagesFor = (size: number): number =>
  values.messages !== undefined
    ? Number(values.messages)
    : Math.round(Number(values.deliveries) / size);
/** Messages of the warm-up run, at most. */
const WARM_UP = 8_000;
const W = Number(values.window);
const RATE = Number(values.rate);
const PAIRS = Number(values.pairs);

/** Deliveries counted by receivers, with the latency of each (from the `at` in the body). */
class Receipts {
  latencies: number[] = [];
  private waiters: { n: number; resolve: () => void }[] = [];
  /** `at`: when it was sent, in epoch milliseconds. */
  add(at: number): void {
    this.latencies.push(Date.now() - at);
    for (const w of this.waiters.filter((x) => this.latencies.length >= x.n)) w.resolve();
    this.waiters = this.waiters.filter((x) => this.latencies.length < x.n);
  }
  reached(n: number): Promise<void> {
    if (this.latencies.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
  reset(): void {
    this.latencies = [];
  }
}

/** The sender process: one command at a time, resolved when it has sent everything. */
interface Sender {
  send(command: Record<string, unknown>): Promise<{ errors: number }>;
  pid: number | undefined;
  stop(): void;
}

async function startSender(env: Record<string, string>): Promise<Sender> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./helpers/fanout-sender.ts', import.meta.url).pathname],
    { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const l = await lines.next();
    if (l.done) throw new Error('the sender exited');
    return JSON.parse(l.value) as Record<string, unknown>;
  };
  await next(); // ready
  return {
    pid: child.pid,
    async send(command) {
      child.stdin.write(JSON.stringify(command) + '\n');
      return (await next()) as { errors: number };
    },
    stop: () => child.kill(),
  };
}

async function main(): Promise<void> {
  const server = await startNats({ config: { jetstreamMaxMemory: 2 * 1024 ** 3 } });
  const svc = await server.connectService();
  const callout = await startCallout(server.keys, [server.url]);
  const results: Record<string, unknown> = {};

  for (const size of SIZES) {
    const room = `fan${size}`;
    const M = messagesFor(size);
    await publishRoom(svc, room, { maxParticipants: size + 10, history: { storage: 'memory' } });

    // Torii: every student's RoomClient; the teacher chats.
    const ours = new Receipts();
    const students: RoomClient[] = [];
    for (let i = 0; i < size; i++) {
      const c = await joinRoom(server.url, server.keys, room, `s${i}`);
      // The text is the send time, as a number: the same decoding as the core receivers'.
      c.on((m) => {
        if (m.kind === 'chat') ours.add(Number((m.body as { text: string }).text));
      });
      students.push(c);
    }
    const sender = await startSender({
      SENDER_SERVERS: server.url,
      SENDER_ROOM: room,
      SENDER_TOKEN: await token(server.keys, { room, sub: 'teacher', role: 'teacher' }),
      SENDER_SERVICE_PASS: server.keys.server.servicePassword,
    });
    const pids = { receivers: undefined, sender: sender.pid, nats: server.process.pid };

    // Core NATS: the same number of subscribers of one subject, same server.
    const core = new Receipts();
    const subs: NatsConnection[] = [];
    for (let i = 0; i < size; i++) {
      const nc = await connect({
        servers: server.url,
        user: 'torii-service',
        pass: server.keys.server.servicePassword,
      });
      // The body of a chat, parsed and decoded as the Torii receivers do theirs.
      nc.subscribe(`bench.fanout.${room}`, {
        callback: (_e, m) => core.add(Number(m.json<{ text: string }>().text)),
      });
      await nc.flush();
      subs.push(nc);
    }

    const run = async (r: Receipts, command: Record<string, unknown>, messages = M) => {
      r.reset();
      const start = nowMs();
      await sender.send({ messages, window: W, ...command });
      await r.reached(messages * size);
      const elapsedMs = nowMs() - start;
      return {
        deliveriesPerSec: r2((messages * size * 1000) / elapsedMs),
        latencyMs: summary(r.latencies),
      };
    };
    const torii = { path: 'torii' };
    await run(ours, torii, Math.min(M, WARM_UP)); // warm up
    /** CPU µs the receivers (this process) spent per delivery. */
    const perDelivery = (cpu: Record<string, number>) =>
      r2(((cpu['receivers'] ?? 0) * 1e6) / (M * size));
    const pairs: { core: object; torii: object; ratio: number }[] = [];
    for (let p = 0; p < PAIRS; p++) {
      const { result: coreRun, cpu: coreCpu } = await withCpu(pids, () =>
        run(core, { path: 'core', subject: `bench.fanout.${room}` }),
      );
      const { result: ourRun, cpu: ourCpu } = await withCpu(pids, () => run(ours, torii));
      pairs.push({
        core: { ...coreRun, cpuSeconds: coreCpu, receiverUsPerDelivery: perDelivery(coreCpu) },
        torii: { ...ourRun, cpuSeconds: ourCpu, receiverUsPerDelivery: perDelivery(ourCpu) },
        ratio: r2(ourRun.deliveriesPerSec / coreRun.deliveriesPerSec),
      });
    }
    const median = [...pairs].sort((a, b) => a.ratio - b.ratio)[Math.floor(pairs.length / 2)];
    if (!median) throw new Error('--pairs must be at least 1');
    const entry: Record<string, unknown> = {
      students: size,
      messages: M,
      ...median,
      ratios: pairs.map((p) => p.ratio),
    };
    if (size === SIZES[0]) {
      ours.reset();
      const n = RATE * Number(values.seconds);
      const steady = await sender.send({ ...torii, messages: n, paced: RATE });
      await ours.reached(n * size);
      entry['paced'] = { perSec: RATE, latencyMs: summary(ours.latencies), errors: steady.errors };
    }
    results[`room${size}`] = entry;
    sender.stop();
    await Promise.all(students.map((c) => c.close({ leave: false })));
    await Promise.all(subs.map((s) => s.close()));
  }

  report({
    bench: 'fanout',
    ...results,
    targets: { ratio: 0.5, pacedP99Ms: 25 },
  });
  await callout.stop();
  await svc.close();
  await server.destroy();
}

await main();
process.exit(0);
