/**
 * Runs a LiveKit server child process for `torii dev` and the tests: a generated API key and
 * secret, a config that keeps it on loopback (signalling on `host:port`, WebRTC media on one UDP
 * port of 127.0.0.1, no TCP, no TURN, no STUN lookups), and a wait until it answers.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { ServerChild } from './server-process.js';
import { findTool } from './tools.js';

/** Signalling (HTTP and websocket) port of `torii dev`'s LiveKit: LiveKit's own default. */
export const DEFAULT_MEDIA_PORT = 7880;
/** UDP port of `torii dev`'s LiveKit for WebRTC media: LiveKit's own development default. */
export const DEFAULT_MEDIA_RTC_PORT = 7882;
/** How long to wait for a started server to answer, in milliseconds. */
const DEFAULT_LIVEKIT_START_TIMEOUT_MS = 30_000;
/** How long a server may take to exit after SIGTERM before it is killed, in milliseconds. */
const DEFAULT_LIVEKIT_STOP_TIMEOUT_MS = 10_000;
/** Wait before signalling a stopping server again (the second signal skips the drain), in milliseconds. */
const SIGNAL_AGAIN_MS = 300;
/** Poll interval while waiting for the server, in milliseconds. */
const POLL_MS = 100;

/** A LiveKit API key and its secret. */
export interface LiveKitKeys {
  apiKey: string;
  apiSecret: string;
}

/** A fresh key (`API` + 12 hex digits) and a 256-bit secret (43 base64url characters). */
export function generateLiveKitKeys(): LiveKitKeys {
  return {
    apiKey: `API${randomBytes(6).toString('hex')}`,
    apiSecret: randomBytes(32).toString('base64url'),
  };
}

/** Options of {@link renderLiveKitConfig}. */
interface LiveKitConfigOptions {
  /** Signalling listen address (loopback). */
  host: string;
  /** Signalling (HTTP and websocket) port. */
  port: number;
  /** The one UDP port WebRTC media uses, on 127.0.0.1. */
  rtcUdpPort: number;
  keys: LiveKitKeys;
  /** LiveKit's log level (`debug`, `info`, `warn`, `error`). Default `info`. */
  logLevel?: string;
}

/**
 * The server's YAML config. Media stays on loopback: candidates are 127.0.0.1 only (node_ip and
 * the IP filter; loopback candidates allowed, which LiveKit otherwise drops), no external-IP
 * discovery (it would ask public STUN servers), no TCP port (LiveKit's TCP listener ignores the
 * bind address and would listen on every interface) and no TURN.
 */
function renderLiveKitConfig(o: LiveKitConfigOptions): string {
  return stringify({
    port: o.port,
    bind_addresses: [o.host],
    keys: { [o.keys.apiKey]: o.keys.apiSecret },
    log_level: o.logLevel ?? 'info',
    logging: { json: true },
    rtc: {
      udp_port: o.rtcUdpPort,
      tcp_port: 0,
      node_ip: '127.0.0.1',
      use_external_ip: false,
      enable_loopback_candidate: true,
      ips: { includes: ['127.0.0.1/32'] },
    },
    turn: { enabled: false },
    // The classroom's rooms come and go with their participants; Torii names them.
    room: { auto_create: true },
  });
}

/** Options of {@link LiveKitServerProcess.start}. */
interface StartLiveKitOptions {
  /** Folder for the config file (it holds the secret: mode 0600). */
  dir: string;
  config: LiveKitConfigOptions;
  /** livekit-server binary; found with {@link findTool} when omitted. */
  binary?: string;
  startTimeoutMs?: number;
  /** Receives the server's log lines. */
  onLog?: (line: string) => void;
}

/** A livekit-server child process. */
export class LiveKitServerProcess {
  private constructor(
    private readonly proc: ServerChild,
    readonly configFile: string,
    readonly options: LiveKitConfigOptions,
  ) {}

  get child(): ChildProcess {
    return this.proc.child;
  }

  /** The URL clients connect to, e.g. `ws://127.0.0.1:7880`. */
  get url(): string {
    return `ws://${hostForUrl(this.options.host)}:${this.options.port}`;
  }

  /** The same server over HTTP (its API, `RoomServiceClient`). */
  get httpUrl(): string {
    return `http://${hostForUrl(this.options.host)}:${this.options.port}`;
  }

  get keys(): LiveKitKeys {
    return this.options.keys;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.proc.running;
  }

  /** Writes the config, starts the server and waits until it answers `OK`. */
  static async start(o: StartLiveKitOptions): Promise<LiveKitServerProcess> {
    const binary = o.binary ?? findTool('livekit-server');
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    const configFile = path.join(o.dir, 'livekit.yaml');
    await writeFile(configFile, renderLiveKitConfig(o.config), { mode: 0o600 });
    const proc = ServerChild.spawn('livekit-server', binary, ['--config', configFile], {
      ...(o.onLog ? { onLog: o.onLog } : {}),
    });
    const server = new LiveKitServerProcess(proc, configFile, o.config);
    await proc.until(async () => ((await answers(server.httpUrl)) ? true : undefined), {
      deadline: Date.now() + (o.startTimeoutMs ?? DEFAULT_LIVEKIT_START_TIMEOUT_MS),
      pollMs: POLL_MS,
      waiting: 'did not answer in time',
    });
    return server;
  }

  /**
   * Stops the server: SIGTERM, repeated, then SIGKILL after the timeout. LiveKit's first signal
   * waits for every participant to leave (a drain without end while a page is open); its second
   * stops it at once.
   */
  stop(timeoutMs = DEFAULT_LIVEKIT_STOP_TIMEOUT_MS): Promise<void> {
    return this.proc.stop(timeoutMs, SIGNAL_AGAIN_MS);
  }

  /** Kills the server at once. */
  kill(): Promise<void> {
    return this.proc.kill();
  }
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** LiveKit answers `GET /` with 200 `OK` once it serves. */
async function answers(httpUrl: string): Promise<boolean> {
  try {
    const res = await fetch(httpUrl, { signal: AbortSignal.timeout(1_000) });
    return res.ok;
  } catch {
    return false;
  }
}
