/**
 * Which JetStream API calls room joins make, and which of them fail: N SDK clients
 * (`RoomClient`, each with a device id unless `--no-device`) join one room through the auth
 * callout with a worker running, and every JetStream API call the server answers is counted by
 * its subject and error code, from the server's own audit advisories
 * (`$JS.EVENT.ADVISORY.API`, one per call) and its `/jsz` counters. Prints one JSON line.
 *
 *   npx tsx bench/join-api-calls.ts [--clients 1000] [--concurrency 20] [--no-device] [--rejoin]
 *
 * `--rejoin` closes the clients and joins them all once more (reconnecting users).
 */
import { parseArgs } from 'node:util';
import type { RoomClient } from '../src/client/index.js';
import { JsAdvisory } from '../src/protocol/subjects.js';
import { joinRoom, startCallout } from '../test/helpers/callout.js';
import { startNats } from '../test/helpers/nats.js';
import { publishRoom } from '../test/helpers/room.js';
import { startWorker } from '../test/helpers/worker.js';
import { pool, report } from './lib.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '20' },
    'no-device': { type: 'boolean', default: false },
    rejoin: { type: 'boolean', default: false },
  },
});
const N = Number(values.clients);
const C = Number(values.concurrency);

interface Audit {
  subject?: string;
  response?: string;
}

/** `$JS.API.CONSUMER.INFO.room.u1~d1` → `CONSUMER.INFO`; KV and stream names kept. */
function apiKind(subject: string): string {
  const parts = subject.split('.').slice(2);
  const kind = parts.slice(0, parts[0] === 'STREAM' && parts[1] === 'MSG' ? 3 : 2).join('.');
  const stream = parts[kind.split('.').length];
  return stream?.startsWith('KV_') ? `${kind} ${stream}` : kind;
}

async function jsz(url: string): Promise<{ total: number; errors: number }> {
  const r = (await (await fetch(new URL('/jsz', url))).json()) as {
    api: { total: number; errors: number };
  };
  return r.api;
}

async function main(): Promise<void> {
  const server = await startNats();
  const monitoring = server.process.ports.monitoring?.[0] as string;
  const svc = await server.connectService();
  await publishRoom(svc, 'bench', { maxParticipants: 10_000 });
  const callout = await startCallout(server.keys, [server.url]);
  const worker = await startWorker(server.keys, [server.url]);

  const calls = new Map<string, { calls: number; errors: Record<string, number> }>();
  let phase = 'join';
  const audit = svc.subscribe(JsAdvisory.apiAudit(), {
    callback: (err, m) => {
      if (err) return;
      const a = m.json<Audit>();
      const kind = `${phase} ${apiKind(a.subject ?? '')}`;
      let c = calls.get(kind);
      if (!c) calls.set(kind, (c = { calls: 0, errors: {} }));
      c.calls++;
      let code: number | undefined;
      let description = '';
      try {
        const r = JSON.parse(a.response ?? '{}') as {
          error?: { err_code?: number; description?: string };
        };
        code = r.error?.err_code;
        description = r.error?.description ?? '';
      } catch {
        code = undefined;
      }
      if (code !== undefined) {
        const k = `${code} ${description}`;
        c.errors[k] = (c.errors[k] ?? 0) + 1;
      }
    },
  });
  await svc.flush();

  const before = await jsz(monitoring);
  const clients: RoomClient[] = [];
  const failures: Record<string, number> = {};
  const join = (): ReturnType<typeof pool> =>
    pool(N, C, async (i) => {
      try {
        clients.push(
          await joinRoom([server.url], server.keys, 'bench', `u${i}`, {
            ...(values['no-device'] ? {} : { deviceId: `d${i}` }),
          }),
        );
      } catch (e) {
        const k = e instanceof Error ? e.message : String(e);
        failures[k] = (failures[k] ?? 0) + 1;
        throw e;
      }
    });
  const first = await join();
  let again: Awaited<ReturnType<typeof pool>> | undefined;
  if (values.rejoin) {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    phase = 'rejoin';
    again = await join();
  }
  // The audit advisories trail the answers: wait until they account for /jsz's count.
  const after = await jsz(monitoring);
  const deadline = Date.now() + 10_000;
  const counted = (): number => [...calls.values()].reduce((a, c) => a + c.calls, 0);
  while (counted() < after.total - before.total && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  audit.unsubscribe();

  const metric = async (name: string): Promise<Record<string, number>> =>
    Object.fromEntries(
      ((await callout.ops.registry.getSingleMetric(name)?.get())?.values ?? []).map((v) => [
        Object.values(v.labels).join(','),
        v.value,
      ]),
    );
  report({
    calloutRequests: await metric('torii_auth_requests_total'),
    calloutRejections: await metric('torii_auth_rejections_total'),
    bench: 'join-api-calls',
    clients: N,
    devices: !values['no-device'],
    joinErrors: first.errors,
    rejoinErrors: again?.errors,
    failures,
    jsz: { calls: after.total - before.total, errors: after.errors - before.errors },
    audited: counted(),
    byCall: Object.fromEntries([...calls].sort(([a], [b]) => a.localeCompare(b))),
  });

  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await worker.stop();
  await callout.stop();
  await svc.close();
  await server.destroy();
}

await main();
process.exit(0);
