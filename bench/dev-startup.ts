/**
 * `torii dev` from a cold folder to a working classroom: time to the banner (keys generated,
 * nats-server up with JetStream, example Rooms reconciled, callout and workers ready), to the first
 * student's initial data through the callout and a worker, and to a clean stop on Ctrl-C. Side by
 * side, in the same run: a bare nats-server with JetStream to /healthz. Prints one JSON line.
 *
 *   npx tsx bench/dev-startup.ts [--runs 5]
 */
import { connect as nodeConnect } from '@nats-io/transport-node';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { RoomClient } from '../src/client/index.js';
import { RequestEvent } from '../src/protocol/events.js';
import { NatsServerProcess } from '../src/devtools/nats-server.js';
import { CLI, cleanEnv } from '../test/helpers/cli.js';
import {
  freePort,
  processGroupMembers,
  tempDir,
  trackGroup,
  waitFor,
} from '../test/helpers/procs.js';
import { nowMs, r2, report, summary } from './lib.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const RUNS = Number(values.runs);

async function toriiDev(): Promise<{ bannerMs: number; joinMs: number; stopMs: number }> {
  const [port, monitor, ws, ops] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const t0 = nowMs();
  const dev = trackGroup(
    spawn(
      process.execPath,
      [
        CLI,
        'dev',
        '--port',
        String(port),
        '--nats-monitor-port',
        String(monitor),
        '--websocket-port',
        String(ws),
        '--http-port',
        String(ops),
        '--web-port',
        '0',
        '--media',
        'off',
      ],
      {
        cwd: tempDir('bench-dev'),
        env: cleanEnv(),
        stdio: ['ignore', 'pipe', 'ignore'],
        detached: true,
      },
    ),
  );
  let out = '';
  dev.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  await waitFor('banner', () => out.includes('Torii dev is running'), {
    timeoutMs: 60_000,
    intervalMs: 5,
  });
  const bannerMs = nowMs() - t0;
  const token = /student hana:\s+(\S+)/.exec(out)?.[1] ?? '';
  const client = await RoomClient.connect({
    connect: nodeConnect,
    servers: `nats://127.0.0.1:${port}`,
    token,
    roomId: 'demo',
    userId: 'hana',
    autoRenew: false,
  });
  await client.request(RequestEvent.InitialData);
  const joinMs = nowMs() - t0;
  await client.close();
  const pgid = dev.pid as number;
  const t1 = nowMs();
  process.kill(-pgid, 'SIGINT');
  await waitFor('group gone', () => processGroupMembers(pgid).length === 0, {
    timeoutMs: 30_000,
    intervalMs: 5,
  });
  return { bannerMs, joinMs, stopMs: nowMs() - t1 };
}

async function bareNats(): Promise<number> {
  const dir = tempDir('bench-nats');
  const t0 = nowMs();
  const s = await NatsServerProcess.start({
    dir,
    config: [
      `listen: 127.0.0.1:${await freePort()}`,
      `http: 127.0.0.1:${await freePort()}`,
      `ports_file_dir: ${JSON.stringify(dir)}`,
      `jetstream { store_dir: ${JSON.stringify(path.join(dir, 'js'))} }`,
    ].join('\n'),
  });
  const ms = nowMs() - t0;
  await s.stop();
  return ms;
}

const dev: { bannerMs: number; joinMs: number; stopMs: number }[] = [];
const raw: number[] = [];
for (let i = 0; i < RUNS; i++) {
  raw.push(await bareNats());
  dev.push(await toriiDev());
}
const banner = summary(dev.map((d) => d.bannerMs));
const nats = summary(raw);
report({
  bench: 'dev-startup',
  runs: RUNS,
  torii: {
    bannerMs: banner,
    firstJoinMs: summary(dev.map((d) => d.joinMs)),
    stopMs: summary(dev.map((d) => d.stopMs)),
  },
  raw: { natsServerReadyMs: nats },
  // How much of dev's start is nats-server itself.
  ratioRawToTorii: r2(nats.p50 / banner.p50),
});
process.exit(0);
