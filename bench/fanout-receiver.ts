/**
 * The receiving side of bench/fanout alone, in one process, with no socket and no server at work:
 * frames as nats-server writes them are fed straight to each connection's nats.js parser, and the
 * time per message is what the receiver spends from the bytes to its listener. Three receivers,
 * in the same run:
 *
 *   core    a core NATS subscriber: MSG, `m.json()`, the text decoded (bench/fanout's baseline);
 *   headers the same on a copy with the stream's headers (HMSG), which it ignores: what nats.js
 *           costs for a message with headers, the floor of any receiver of republished copies;
 *   torii   a student's RoomClient on the same copies: `on()` gets a RoomMessage, in order, once.
 *
 * The bodies are a chat's; each copy has its own sequence. Prints one JSON line: nanoseconds per
 * message (the best of `--rounds` batches of `--batch` messages) and bytes allocated per message.
 * The parser and subscription table are nats.js internals (3.x), read here only.
 *
 *   npx tsx bench/fanout-receiver.ts [--batch 1000] [--rounds 300]
 *   node --max-semi-space-size=64 --import tsx bench/fanout-receiver.ts --rounds 800
 */
import v8 from 'node:v8';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import type { RoomClient } from '../src/client/index.js';
import { joinRoom, startCallout } from '../test/helpers/callout.js';
import { startNats } from '../test/helpers/nats.js';
import { publishRoom } from '../test/helpers/room.js';
import { r2, report } from './lib.js';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '300' },
  },
});
const BATCH = Number(values.batch);
const ROUNDS = Number(values.rounds);
const ROOM = 'fan200';
const KINDS = ['core', 'headers', 'torii'] as const;
type Kind = (typeof KINDS)[number];

/** The nats.js 3.x internals this bench drives. */
interface Internals {
  protocol: {
    parser: { parse(b: Uint8Array): void };
    subscriptions: { all(): { subject: string; sid: number }[] };
  };
}
const internals = (nc: NatsConnection) => nc as unknown as Internals;
const sidOf = (nc: NatsConnection, subject: string): number => {
  const sub = internals(nc)
    .protocol.subscriptions.all()
    .find((s) => s.subject === subject);
  if (!sub) throw new Error(`no subscription to ${subject}`);
  return sub.sid;
};

async function main(): Promise<void> {
  const server = await startNats();
  const svc = await server.connectService();
  const callout = await startCallout(server.keys, [server.url]);
  await publishRoom(svc, ROOM, { maxParticipants: 10, history: { storage: 'memory' } });

  let received = 0;
  let sink = 0;
  const student: RoomClient = await joinRoom(server.url, server.keys, ROOM, 's1');
  student.on((m) => {
    if (m.kind !== 'chat') return;
    sink += Number((m.body as { text: string }).text) & 1;
    received++;
  });
  const plain = async (subject: string): Promise<NatsConnection> => {
    const nc = await server.connectService();
    nc.subscribe(subject, {
      callback: (_e, m) => {
        sink += Number(m.json<{ text: string }>().text) & 1;
        received++;
      },
    });
    await nc.flush();
    return nc;
  };
  const core = await plain('bench.fanout.x');
  const headers = await plain('bench.headers.rp.chat.*');
  const conns: Record<Kind, NatsConnection> = { core, headers, torii: student.nc };

  const now = Date.now();
  const body = JSON.stringify({ text: String(now), at: new Date(now).toISOString() });
  const bodyBytes = Buffer.byteLength(body);
  let seq = 0;
  /** One batch of frames for `kind`, as nats-server writes them (a copy: its stream headers). */
  const frames = (kind: Kind): Buffer => {
    const parts: string[] = [];
    for (let i = 0; i < BATCH; i++) {
      if (kind === 'core') {
        parts.push(
          `MSG bench.fanout.x ${sidOf(core, 'bench.fanout.x')} ${bodyBytes}\r\n${body}\r\n`,
        );
        continue;
      }
      const [stream, prefix, sid] =
        kind === 'torii'
          ? [ROOM, `room.${ROOM}`, sidOf(student.nc, `room.${ROOM}.rp.chat.*`)]
          : ['headers', 'bench.headers', sidOf(headers, 'bench.headers.rp.chat.*')];
      const n = ++seq;
      const block =
        `NATS/1.0\r\nNats-Stream: ${stream}\r\nNats-Subject: ${prefix}.chat.teacher\r\n` +
        `Nats-Sequence: ${n}\r\nNats-Time-Stamp: 2026-12-01T13:22:32.192180142Z\r\n` +
        `Nats-Last-Sequence: ${n - 1}\r\n\r\n`;
      const h = Buffer.byteLength(block);
      parts.push(
        `HMSG ${prefix}.rp.chat.teacher ${sid} ${h} ${h + bodyBytes}\r\n${block}${body}\r\n`,
      );
    }
    return Buffer.from(parts.join(''));
  };
  const feed = (kind: Kind, b: Buffer): void => {
    const before = received;
    internals(conns[kind]).protocol.parser.parse(b);
    if (received - before !== BATCH) throw new Error(`${kind}: ${received - before} of ${BATCH}`);
  };

  // Batches built up front (a copy's sequence only once), fed alternately, kind by kind.
  const batches = Object.fromEntries(
    KINDS.map((k) => [k, Array.from({ length: ROUNDS + 5 }, () => frames(k))]),
  ) as Record<Kind, Buffer[]>;
  const best: Record<Kind, number> = { core: Infinity, headers: Infinity, torii: Infinity };
  for (let r = 0; r < ROUNDS + 5; r++) {
    for (const k of KINDS) {
      const b = batches[k][r] as Buffer;
      const t = process.hrtime.bigint();
      feed(k, b);
      const ns = Number(process.hrtime.bigint() - t) / BATCH;
      if (r >= 5) best[k] = Math.min(best[k], ns); // the first 5: warm-up
    }
  }
  // Bytes allocated per message: one more batch each, the most of 5 tries (a collection during a
  // batch lowers the figure; `--max-semi-space-size=64` makes one unlikely).
  const allocated: Partial<Record<Kind, number>> = {};
  for (const k of KINDS) {
    let most = 0;
    for (let t = 0; t < 5; t++) {
      const b = frames(k);
      const h0 = v8.getHeapStatistics().used_heap_size;
      feed(k, b);
      most = Math.max(most, v8.getHeapStatistics().used_heap_size - h0);
    }
    allocated[k] = Math.round(most / BATCH);
  }

  report({
    bench: 'fanout-receiver',
    batch: BATCH,
    rounds: ROUNDS,
    nsPerMessage: Object.fromEntries(KINDS.map((k) => [k, Math.round(best[k])])),
    bytesPerMessage: allocated,
    ratio: { toriiToCore: r2(best.core / best.torii), headersToCore: r2(best.core / best.headers) },
    sink: sink & 1,
  });
  await student.close({ leave: false });
  await Promise.all([core.close(), headers.close()]);
  await callout.stop();
  await svc.close();
  await server.destroy();
}

await main();
process.exit(0);
