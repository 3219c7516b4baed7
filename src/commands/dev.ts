/**
 * `torii dev`: the embedded default. One process runs a local nats-server configured for Torii
 * (auth callout, JetStream, websocket), the controller fed by a folder of Room YAML files, and the
 * auth callout; keys and data live in a state folder so that `torii token` run in the same folder
 * mints tokens dev accepts, and the workers (events, endpoints, presence). With `--media on` (the
 * default) it runs a LiveKit server on loopback too, with an API key and secret of its own in the
 * state folder, and the workers answer `REQ_MEDIA_SERVER_DATA` with it. It also serves the
 * classroom page (`dist/web`, built by `make web`) on `--web-port`, and prints its links. Ctrl-C
 * stops everything, in reverse order.
 */
import type { Command } from 'commander';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configError, opt, parseDuration, portParser } from '../runtime/config.js';
import { ToolError } from '../protocol/errors.js';
import {
  generateKeys,
  KeyFile,
  loadServerKeys,
  readOptionalKeyFile,
  SECRET_FILE_MODE,
} from '../infra/keys.js';
import {
  DEFAULT_MEDIA_PORT,
  DEFAULT_MEDIA_RTC_PORT,
  generateLiveKitKeys,
  LiveKitServerProcess,
  type LiveKitKeys,
} from '../devtools/livekit-server.js';
import { createLogger, type LogLevel } from '../runtime/logger.js';
import { NatsServerProcess } from '../devtools/nats-server.js';
import {
  DEFAULT_NATS_HTTP_PORT,
  DEFAULT_NATS_PORT,
  DEFAULT_NATS_WEBSOCKET_PORT,
  renderNatsConfig,
  ServiceUser,
} from '../infra/natsconf.js';
import { DEFAULT_OPS_PORT, Ops } from '../runtime/ops.js';
import { Shutdown } from '../runtime/shutdown.js';
import { PROJECT_ROOT } from '../runtime/version.js';
import { loadTokenSigner, mintRoomToken } from '../infra/tokens.js';
import {
  DEFAULT_WEB_PORT,
  hasWebBuild,
  startWebServer,
  WEB_DIST_DIR,
  type WebServer,
} from '../devtools/web-server.js';
import { runAuthCallout } from '../auth/index.js';
import { runController } from '../controller/index.js';
import { runWorker } from '../worker/index.js';
import { authCalloutConfig, registerAuthCallout, type AuthCalloutFlags } from './auth-callout.js';
import { controllerConfig, registerController, type ControllerFlags } from './controller.js';
import {
  DEFAULT_MEDIA_TOKEN_TTL_MS,
  registerWorker,
  workerConfig,
  type WorkerFlags,
} from './worker.js';
import { addLogLevel, cliInvocation, DEFAULT_STATE_DIR, defaultFlags, examples } from './common.js';
import { addClientLimitOptions, originListParser } from './nats-config.js';

interface DevFlags {
  stateDir: string;
  roomsDir: string;
  host: string;
  port: number;
  natsMonitorPort: number;
  websocketPort: number;
  httpPort: number;
  webPort: number;
  media: MediaMode;
  mediaPort: number;
  mediaRtcPort: number;
  mediaTokenTtl: number;
  maxSubscriptions: number;
  maxPayload: number;
  /** Undefined: the classroom page's own origins ({@link pageOrigins}). */
  websocketOrigins?: string[];
  logLevel: LogLevel;
}

/**
 * The origins a browser sends for the classroom page dev serves: the address it listens on, and
 * `localhost` for a loopback address (the banner's links name the address; people type either).
 */
export function pageOrigins(host: string, webPort: number): string[] {
  if (webPort === 0) return [];
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return [...new Set([`http://${bracketed}:${webPort}`, `http://localhost:${webPort}`])];
}

/** `--media`: run LiveKit or not. */
const MediaMode = { On: 'on', Off: 'off' } as const;
type MediaMode = (typeof MediaMode)[keyof typeof MediaMode];

/** Folder layout under `--state-dir`. */
const DevLayout = {
  keys: 'keys',
  nats: 'nats',
  jetstream: 'nats/jetstream',
  livekit: 'livekit',
} as const;
/** Files of the LiveKit key pair under `DevLayout.livekit` (the secret file is what workers read). */
const LiveKitKeyFile = { apiKey: 'api-key', apiSecret: 'api-secret' } as const;
/** The example Rooms shipped with Torii. */
const EXAMPLE_ROOMS_DIR = path.join(PROJECT_ROOT, 'examples', 'rooms');
/** The room the banner prints tokens for. */
const DEMO_ROOM = 'demo';
/** Resync period in dev: folder edits are also picked up by the watch. */
const DEV_RESYNC_MS = 10_000;
/** Lifetime of the tokens the banner prints. */
const BANNER_TOKEN_TTL_MS = 8 * 3_600_000;

export function registerDev(program: Command): void {
  const cmd = program
    .command('dev')
    .description(
      'run Torii on this machine: nats-server (auth callout, JetStream, websocket), a LiveKit media server, the controller on a folder of Rooms, the auth callout and the workers; Ctrl-C stops everything',
    )
    .addOption(
      opt<string>(
        '--state-dir <dir>',
        'folder for keys and data; `torii token` run in the same folder mints tokens dev accepts',
        { default: DEFAULT_STATE_DIR },
      ),
    )
    .addOption(
      opt<string>('--rooms-dir <dir>', 'folder of Room YAML files (watched)', {
        default: EXAMPLE_ROOMS_DIR,
        defaultDescription: 'examples/rooms',
      }),
    )
    .addOption(
      opt<string>('--host <addr>', 'listen address (loopback only)', { default: '127.0.0.1' }),
    )
    .addOption(
      opt<number>('--port <port>', 'NATS client port', {
        default: DEFAULT_NATS_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>('--nats-monitor-port <port>', 'NATS monitoring port', {
        default: DEFAULT_NATS_HTTP_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>('--websocket-port <port>', 'NATS websocket port; 0 disables', {
        default: DEFAULT_NATS_WEBSOCKET_PORT,
        parse: portParser(true),
      }),
    )
    .addOption(
      opt<string[]>(
        '--websocket-origins <origins>',
        "comma-separated origins of the pages whose browsers may use the NATS websocket; unset: the classroom page's, http://<host>:<web-port> and http://localhost:<web-port> (add your own app's, e.g. http://localhost:5173)",
        {
          parse: originListParser,
        },
      ),
    )
    .addOption(
      opt<number>('--http-port <port>', 'port of /healthz, /readyz and /metrics; 0 disables', {
        default: DEFAULT_OPS_PORT,
        parse: portParser(true),
      }),
    )
    .addOption(
      opt<number>(
        '--web-port <port>',
        'port of the classroom page (dist/web, `make web`); 0 disables; needs the websocket',
        { default: DEFAULT_WEB_PORT, parse: portParser(true) },
      ),
    )
    .addOption(
      opt<MediaMode>('--media <on|off>', 'run a LiveKit media server for REQ_MEDIA_SERVER_DATA', {
        default: MediaMode.On,
        choices: Object.values(MediaMode),
      }),
    )
    .addOption(
      opt<number>('--media-port <port>', 'LiveKit signalling port (HTTP and websocket)', {
        default: DEFAULT_MEDIA_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>('--media-rtc-port <port>', 'LiveKit WebRTC media port (UDP, on 127.0.0.1)', {
        default: DEFAULT_MEDIA_RTC_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>(
        '--media-token-ttl <duration>',
        'lifetime of the LiveKit tokens workers hand out',
        {
          default: DEFAULT_MEDIA_TOKEN_TTL_MS,
          defaultDescription: '2h',
          parse: parseDuration,
        },
      ),
    );
  addClientLimitOptions(cmd);
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
    const ops = new Ops(log);
    const keysDir = path.join(f.stateDir, DevLayout.keys);
    if ((await readOptionalKeyFile(keysDir, KeyFile.IssuerSeed)) === undefined) {
      const res = await generateKeys(keysDir);
      log.info({ dir: path.resolve(keysDir), issuer: res.issuerPublicKey }, 'generated dev keys');
    }
    const natsDir = path.join(f.stateDir, DevLayout.nats);
    await mkdir(natsDir, { recursive: true, mode: 0o700 });
    const serverKeys = await loadServerKeys(keysDir);
    const config = renderNatsConfig({
      serverName: 'torii-dev',
      host: f.host,
      port: f.port,
      httpPort: f.natsMonitorPort,
      websocketPort: f.websocketPort,
      jetstreamDir: path.resolve(f.stateDir, DevLayout.jetstream),
      keys: serverKeys,
      portsFileDir: path.resolve(natsDir),
      clientLimits: { maxSubscriptions: f.maxSubscriptions, maxPayload: f.maxPayload },
      websocketAllowedOrigins: f.websocketOrigins ?? pageOrigins(f.host, f.webPort),
    });
    shutdown.installSignalHandlers(() => process.exit(0));
    // What started before a failure (nats-server, LiveKit) must not outlive dev.
    try {
      if (f.httpPort !== 0) {
        await ops.listen(f.httpPort, f.host);
        shutdown.add('ops', () => ops.close());
      }
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

      const media = f.media === MediaMode.On ? await startMedia(f, shutdown, log) : undefined;

      // The roles exactly as their own commands configure them with default flags, on this server.
      const here = { natsUrl: [server.url], keysDir };
      await runController(
        await controllerConfig({
          ...defaultFlags<ControllerFlags>(registerController, 'controller'),
          ...here,
          roomsDir: f.roomsDir,
          resync: DEV_RESYNC_MS,
        }),
        log.child({ component: 'controller' }),
        ops,
        shutdown,
      );
      await runAuthCallout(
        await authCalloutConfig({
          ...defaultFlags<AuthCalloutFlags>(registerAuthCallout, 'auth-callout'),
          ...here,
        }),
        log.child({ component: 'auth-callout' }),
        ops,
        shutdown,
      );
      await runWorker(
        await workerConfig({
          ...defaultFlags<WorkerFlags>(registerWorker, 'worker'),
          ...here,
          mediaTokenTtl: f.mediaTokenTtl,
          ...(media
            ? {
                livekitUrl: media.server.url,
                livekitApiKey: media.server.keys.apiKey,
                livekitApiSecretFile: media.secretFile,
              }
            : {}),
        }),
        log.child({ component: 'worker' }),
        ops,
        shutdown,
      );
      const web = await serveClassroom(f, server, media?.server, log);
      if (web) shutdown.add('web', () => web.close());
      ops.markStarted();
      await printBanner(f, server, media?.server, keysDir, web);
    } catch (e) {
      await shutdown.run('start failed');
      throw e;
    }
  });
  examples(cmd, [
    'torii dev',
    'torii dev --rooms-dir ./my-rooms --port 4333 --websocket-port 0 --web-port 0',
    'torii dev --media off',
    'TORII_STATE_DIR=/tmp/torii torii dev --log-level debug',
  ]);
}

/** The state folder's LiveKit key pair, made on first use (never LiveKit's well-known dev pair). */
async function liveKitKeys(dir: string): Promise<{ keys: LiveKitKeys; secretFile: string }> {
  const keyFile = path.join(dir, LiveKitKeyFile.apiKey);
  const secretFile = path.join(dir, LiveKitKeyFile.apiSecret);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const keys = {
      apiKey: (await readFile(keyFile, 'utf8')).trim(),
      apiSecret: (await readFile(secretFile, 'utf8')).trim(),
    };
    return { keys, secretFile };
  } catch {
    const keys = generateLiveKitKeys();
    await writeFile(secretFile, keys.apiSecret + '\n', { mode: SECRET_FILE_MODE });
    await writeFile(keyFile, keys.apiKey + '\n', { mode: SECRET_FILE_MODE });
    return { keys, secretFile };
  }
}

/** Starts LiveKit on loopback; it stops with the rest, and its death stops dev like nats-server's. */
async function startMedia(
  f: DevFlags,
  shutdown: Shutdown,
  log: ReturnType<typeof createLogger>,
): Promise<{ server: LiveKitServerProcess; secretFile: string }> {
  const dir = path.join(f.stateDir, DevLayout.livekit);
  const { keys, secretFile } = await liveKitKeys(dir);
  const mediaLog = log.child({ component: 'livekit-server' });
  const server = await LiveKitServerProcess.start({
    dir,
    config: {
      host: f.host === 'localhost' ? '127.0.0.1' : f.host,
      port: f.mediaPort,
      rtcUdpPort: f.mediaRtcPort,
      keys,
    },
    onLog: (line) => mediaLog.debug(line),
  }).catch((e: unknown) => {
    throw new ToolError(
      `${e instanceof Error ? e.message : String(e)}\n(torii dev --media off runs without media)`,
      { cause: e },
    );
  });
  shutdown.add('livekit-server', () => server.stop());
  server.child.once('exit', (code, signal) => {
    if (shutdown.started) return;
    // LiveKit exits with 0 after a signal (Ctrl-C reaches the whole process group).
    const byUser = code === 0 || signal === 'SIGINT' || signal === 'SIGTERM';
    if (!byUser) log.error({ code, signal }, 'livekit-server exited unexpectedly');
    void shutdown.run('livekit-server exited').then(() => process.exit(byUser ? 0 : 1));
  });
  log.info({ url: server.url, rtcUdpPort: f.mediaRtcPort }, 'livekit-server ready');
  return { server, secretFile };
}

/**
 * Serves the classroom page when a web port is set and the page was built; its `config.json`
 * points the page at this server's websocket. Undefined when off (or nothing to serve).
 */
async function serveClassroom(
  f: DevFlags,
  server: NatsServerProcess,
  media: LiveKitServerProcess | undefined,
  log: ReturnType<typeof createLogger>,
): Promise<WebServer | undefined> {
  if (f.webPort === 0) return undefined;
  const websocket = server.ports.websocket?.[0];
  if (!websocket) {
    log.warn(
      'no classroom page: it connects over the websocket, which --websocket-port 0 turns off',
    );
    return undefined;
  }
  if (!(await hasWebBuild())) {
    log.warn({ dir: WEB_DIST_DIR }, "no classroom page: it is not built (run 'make web')");
    return undefined;
  }
  const web = await startWebServer({
    dir: WEB_DIST_DIR,
    host: f.host,
    port: f.webPort,
    generated: { '/config.json': JSON.stringify({ servers: [websocket] }) },
    // the page may open that websocket and the media server's (and ask the latter, over HTTP,
    // why a connection was refused), no other
    connectSrc: [websocket, ...(media ? [media.url, media.httpUrl] : [])],
  });
  log.info({ url: web.url }, 'classroom page ready');
  return web;
}

async function printBanner(
  f: DevFlags,
  server: NatsServerProcess,
  media: LiveKitServerProcess | undefined,
  keysDir: string,
  web: WebServer | undefined,
): Promise<void> {
  const signer = await loadTokenSigner(keysDir);
  const mint = (user: string, role: string, name: string): Promise<string> =>
    mintRoomToken(
      signer,
      { room: DEMO_ROOM, sub: user, role, name },
      { ttlMs: BANNER_TOKEN_TTL_MS },
    );
  const keysFlag = f.stateDir === DEFAULT_STATE_DIR ? '' : ` --keys-dir ${keysDir}`;
  const urlFlag = server.port === DEFAULT_NATS_PORT ? '' : ` --nats-url ${server.url}`;
  const torii = cliInvocation();
  const teacher = await mint('sensei', 'teacher', 'Tanaka Sensei');
  const hana = await mint('hana', 'student', 'Hana');
  const kenji = await mint('kenji', 'student', 'Kenji');
  // The token travels in the fragment (#), which browsers never send to a server.
  const page = (token: string): string => `${web?.url ?? ''}#token=${token}`;
  const lines = [
    '',
    'Torii dev is running. Ctrl-C stops it.',
    '',
    `  NATS        ${server.url}`,
    ...(server.ports.websocket?.[0] ? [`  WebSocket   ${server.ports.websocket[0]}`] : []),
    ...(server.ports.monitoring?.[0] ? [`  Monitoring  ${server.ports.monitoring[0]}`] : []),
    ...(f.httpPort ? [`  Ops         http://${f.host}:${f.httpPort}/readyz  /metrics`] : []),
    ...(media
      ? [`  Media       ${media.url} (LiveKit; WebRTC on UDP ${f.mediaRtcPort})`]
      : ['  Media       off (--media off: REQ_MEDIA_SERVER_DATA answers NOT_FOUND)']),
    ...(web ? [`  Classroom   ${web.url} (the links below carry the tokens)`] : []),
    `  Rooms       ${path.resolve(f.roomsDir)} (watched)`,
    `  State       ${path.resolve(f.stateDir)}`,
    '',
    `Tokens for room "${DEMO_ROOM}" (8h). Connect with the token as auth_token and inbox prefix _INBOX.${DEMO_ROOM}.<user>:`,
    `  teacher sensei:  ${teacher}`,
    `  student hana:    ${hana}`,
    `  student kenji:   ${kenji}`,
    '',
    ...(web
      ? [
          'Open the classroom in a browser, one window each:',
          `  as sensei (teacher):  ${page(teacher)}`,
          `  as hana (student):    ${page(hana)}`,
          `  as kenji (student):   ${page(kenji)}`,
          '',
        ]
      : []),
    'Join the class from another terminal (type to chat; /raise, /lower, /who, /media, /leave):',
    `  ${torii} client${urlFlag} --token ${teacher}`,
    'More participants (same folder, so the token is signed with these keys):',
    `  ${torii} client${urlFlag} --token "$(${torii} token --room ${DEMO_ROOM} --user aiko --role student${keysFlag})"`,
    'Published rooms:',
    `  ${torii} rooms${keysFlag}${urlFlag}`,
    'Platform services connect as the service user (bypasses the callout):',
    `  user ${ServiceUser.Service}, password in ${path.join(keysDir, KeyFile.ServicePassword)}`,
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
