/**
 * Room fan-out: chat from one member to everyone in rooms of 25 and 200 students, through Torii
 * (a JetStream publish into the room stream; every student's RoomClient receives it) against core
 * NATS to the same number of subscribers on the same server, in one run. Prints one JSON line.
 *
 *   npx tsx bench/fanout.ts [--sizes 25,200] [--messages 2000] [--window 50] [--rate 1000]
 */
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { RoomClient } from '../src/client/index.js';
import { joinRoom, startCallout } from '../test/helpers/callout.js';
import { startNats } from '../test/helpers/nats.js';
import { publishRoom } from '../test/helpers/room.js';
import { nowMs, paced, pool, r2, report, summary, withCpu } from './lib.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '25,200' },
    messages: { type: 'string', default: '2000' },
    window: { type: 'string', default: '50' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
  },
});
const SIZES = values.sizes.split(',').map(Number);
const M = Number(values.messages);
const W = Number(values.window);
const RATE = Number(values.rate);

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

async function main(): Promise<void> {
  const server = await startNats({ config: { jetstreamMaxMemory: 2 * 1024 ** 3 } });
  const svc = await server.connectService();
  const callout = await startCallout(server.keys, [server.url]);
  const results: Record<string, unknown> = {};
  const pids = { benchProcess: undefined, nats: server.process.pid };

  for (const size of SIZES) {
    const room = `fan${size}`;
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
    const teacher = await joinRoom(server.url, server.keys, room, 'teacher', { role: 'teacher' });
    const chat = () => teacher.chat(String(Date.now()));

    // Core NATS: the same number of subscribers of one subject, same server.
    const core = new Receipts();
    const subs: NatsConnection[] = [];
    for (let i = 0; i < size; i++) {
      const nc = await connect({
        servers: server.url,
        user: 'torii-service',
        pass: server.keys.server.servicePassword,
      });
      nc.subscribe(`bench.fanout.${room}`, {
        callback: (_e, m) => core.add(m.json<{ at: number }>().at),
      });
      await nc.flush();
      subs.push(nc);
    }

    const run = async (r: Receipts, send: () => Promise<unknown>, flush?: () => Promise<void>) => {
      r.reset();
      const start = nowMs();
      await pool(M, W, () => send().then(() => undefined));
      await flush?.();
      await r.reached(M * size);
      const elapsedMs = nowMs() - start;
      return {
        deliveriesPerSec: r2((M * size * 1000) / elapsedMs),
        latencyMs: summary(r.latencies),
      };
    };
    await run(ours, chat); // warm up
    const { result: coreRun, cpu: coreCpu } = await withCpu(pids, () =>
      run(
        core,
        () =>
          Promise.resolve(svc.publish(`bench.fanout.${room}`, JSON.stringify({ at: Date.now() }))),
        () => svc.flush(),
      ),
    );
    const { result: ourRun, cpu: ourCpu } = await withCpu(pids, () => run(ours, chat));
    const entry: Record<string, unknown> = {
      students: size,
      messages: M,
      core: { ...coreRun, cpuSeconds: coreCpu },
      torii: { ...ourRun, cpuSeconds: ourCpu },
      ratio: r2(ourRun.deliveriesPerSec / coreRun.deliveriesPerSec),
    };
    if (size === SIZES[0]) {
      ours.reset();
      const n = RATE * Number(values.seconds);
      const steady = await paced(n, RATE, () => chat().then(() => undefined));
      await ours.reached(n * size);
      entry['paced'] = { perSec: RATE, latencyMs: summary(ours.latencies), errors: steady.errors };
    }
    results[`room${size}`] = entry;
    await Promise.all([...students, teacher].map((c) => c.close({ leave: false })));
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
