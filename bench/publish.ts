/**
 * The cost of a stored publish to the sender: the SDK's publisher (src/client/pubacks.ts, one
 * inbox subscription for every acknowledgement) against nats.js's `js.publish` (a request per
 * publish), alternately in one run, same server, same stream, same body and window.
 *
 *   npx tsx bench/publish.ts [--messages 20000] [--window 50] [--pairs 3]
 *
 * Prints one JSON line: per pair, CPU µs per message of this process and messages per second,
 * and the median pair's ratio of the two CPU costs.
 */
import { parseArgs } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { StoredPublisher } from '../src/client/pubacks.js';
import { startNats } from '../test/helpers/nats.js';
import { nowMs, percentile, r2, report } from './lib.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '20000' },
    window: { type: 'string', default: '50' },
    pairs: { type: 'string', default: '3' },
  },
});
const MESSAGES = Number(values.messages);
const WINDOW = Number(values.window);
const PAIRS = Number(values.pairs);

const server = await startNats();
const nc = await server.connectService();
try {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'bench', subjects: ['bench.>'], max_msgs: 2_000 });
  const js = jetstream(nc);
  const publisher = new StoredPublisher(nc, '_INBOX.bench');
  const body = JSON.stringify({ text: 'hello there', at: new Date().toISOString() });
  let id = 0;

  /** Publishes MESSAGES with WINDOW in flight; CPU µs per message and messages per second. */
  const run = async (one: () => Promise<unknown>): Promise<{ cpuUs: number; perS: number }> => {
    const cpu0 = process.cpuUsage();
    const t0 = nowMs();
    let sent = 0;
    await Promise.all(
      Array.from({ length: WINDOW }, async () => {
        while (sent < MESSAGES) {
          sent++;
          await one();
        }
      }),
    );
    const cpu = process.cpuUsage(cpu0);
    return {
      cpuUs: r2((cpu.user + cpu.system) / MESSAGES),
      perS: Math.round(MESSAGES / ((nowMs() - t0) / 1000)),
    };
  };
  const pairs: {
    natsjs: { cpuUs: number; perS: number };
    torii: { cpuUs: number; perS: number };
    ratio: number;
  }[] = [];
  for (let p = 0; p < PAIRS; p++) {
    const natsjs = await run(() =>
      js.publish('bench.chat', body, { msgID: `n${++id}`, timeout: 5_000 }),
    );
    const torii = await run(() => publisher.publish('bench.chat', body, `t${++id}`, 5_000));
    pairs.push({ natsjs, torii, ratio: r2(torii.cpuUs / natsjs.cpuUs) });
  }
  publisher.close();
  report({
    bench: 'publish',
    messages: MESSAGES,
    window: WINDOW,
    pairs,
    // CPU per message, SDK publisher / js.publish: lower is better
    cpuRatio: percentile(
      pairs.map((p) => p.ratio),
      50,
    ),
  });
} finally {
  await nc.close();
  await server.destroy();
}
