/**
 * `torii dev`: the embedded default. Runs a local nats-server configured for Torii (auth callout,
 * JetStream, websocket) from keys kept in a state folder, and stops it cleanly on Ctrl-C.
 * Later issues add the controller, callout, workers and presence to this process.
 */
import type { Command } from 'commander';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { configError, opt, portParser } from '../core/config.js';
import { generateKeys, KeyFile, loadServerKeys, readOptionalKeyFile } from '../core/keys.js';
import { createLogger, type LogLevel } from '../core/logger.js';
import { NatsServerProcess } from '../core/nats-server.js';
import {
  DEFAULT_NATS_HTTP_PORT,
  DEFAULT_NATS_PORT,
  DEFAULT_NATS_WEBSOCKET_PORT,
  renderNatsConfig,
  ServiceUser,
} from '../core/natsconf.js';
import { Shutdown } from '../core/shutdown.js';
import { addLogLevel, DEFAULT_STATE_DIR, examples } from './common.js';

interface DevFlags {
  stateDir: string;
  host: string;
  port: number;
  httpPort: number;
  websocketPort: number;
  logLevel: LogLevel;
}

/** Folder layout under `--state-dir`. */
export const DevLayout = { keys: 'keys', nats: 'nats', jetstream: 'nats/jetstream' } as const;

export function registerDev(program: Command): void {
  const cmd = program
    .command('dev')
    .description(
      'run Torii on this machine: a local nats-server with auth callout, JetStream and websocket; Ctrl-C stops everything',
    )
    .addOption(
      opt<string>(
        '--state-dir <dir>',
        'folder for keys and data; `torii token` run in the same folder mints tokens dev accepts',
        { default: DEFAULT_STATE_DIR },
      ),
    )
    .addOption(opt<string>('--host <addr>', 'listen address', { default: '127.0.0.1' }))
    .addOption(
      opt<number>('--port <port>', 'NATS client port', {
        default: DEFAULT_NATS_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>('--http-port <port>', 'NATS monitoring port', {
        default: DEFAULT_NATS_HTTP_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>('--websocket-port <port>', 'NATS websocket port; 0 disables', {
        default: DEFAULT_NATS_WEBSOCKET_PORT,
        parse: portParser(true),
      }),
    );
  addLogLevel(cmd).action(async (f: DevFlags) => {
    if (f.host !== '127.0.0.1' && f.host !== 'localhost' && f.host !== '::1') {
      // dev keys live in a plain folder and the websocket has no TLS: never expose them.
      configError(
        '--host',
        `dev mode listens on loopback only (got ${f.host}); use 'torii nats-config' for a real deployment`,
      );
    }
    const log = createLogger('dev', f.logLevel);
    const shutdown = new Shutdown(log);
    const keysDir = path.join(f.stateDir, DevLayout.keys);
    if ((await readOptionalKeyFile(keysDir, KeyFile.IssuerSeed)) === undefined) {
      const res = await generateKeys(keysDir);
      log.info({ dir: path.resolve(keysDir), issuer: res.issuerPublicKey }, 'generated dev keys');
    }
    const natsDir = path.join(f.stateDir, DevLayout.nats);
    await mkdir(natsDir, { recursive: true, mode: 0o700 });
    const config = renderNatsConfig({
      serverName: 'torii-dev',
      host: f.host,
      port: f.port,
      httpPort: f.httpPort,
      websocketPort: f.websocketPort,
      jetstreamDir: path.resolve(f.stateDir, DevLayout.jetstream),
      keys: await loadServerKeys(keysDir),
      portsFileDir: path.resolve(natsDir),
    });
    const natsLog = log.child({ component: 'nats-server' });
    const server = await NatsServerProcess.start({
      dir: natsDir,
      config,
      onLog: (line) => natsLog.debug(line),
    });
    shutdown.add('nats-server', () => server.stop());
    server.child.once('exit', (code, signal) => {
      if (shutdown.started) return;
      // Ctrl-C in a terminal signals the whole process group, nats-server included.
      const byUser = signal === 'SIGINT' || signal === 'SIGTERM';
      if (!byUser) log.error({ code, signal }, 'nats-server exited unexpectedly');
      void shutdown.run('nats-server exited').then(() => process.exit(byUser ? 0 : 1));
    });
    log.info(
      {
        url: server.url,
        websocket: server.ports.websocket?.[0],
        monitoring: server.ports.monitoring?.[0],
      },
      'nats-server ready',
    );
    printBanner(f, server, keysDir);
    shutdown.installSignalHandlers(() => process.exit(0));
  });
  examples(cmd, [
    'torii dev',
    'torii dev --port 4333 --websocket-port 0',
    'TORII_STATE_DIR=/tmp/torii torii dev --log-level debug',
  ]);
}

function printBanner(f: DevFlags, server: NatsServerProcess, keysDir: string): void {
  const keysFlag = f.stateDir === DEFAULT_STATE_DIR ? '' : ` --keys-dir ${keysDir}`;
  const lines = [
    '',
    'Torii dev is running. Ctrl-C stops it.',
    '',
    `  NATS        ${server.url}`,
    ...(server.ports.websocket?.[0] ? [`  WebSocket   ${server.ports.websocket[0]}`] : []),
    ...(server.ports.monitoring?.[0] ? [`  Monitoring  ${server.ports.monitoring[0]}`] : []),
    `  State       ${path.resolve(f.stateDir)}`,
    '',
    'Clients authenticate through the auth callout with a room token:',
    `  torii token --room demo --user hana --role student${keysFlag}`,
    'Platform services connect as the service user (bypasses the callout):',
    `  user ${ServiceUser.Service}, password in ${path.join(keysDir, KeyFile.ServicePassword)}`,
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
