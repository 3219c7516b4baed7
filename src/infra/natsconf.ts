/**
 * Renders a nats-server configuration for Torii (config mode, no operator): accounts AUTH, APP,
 * CLIENTS (with every room connection's limits) and SYS; `auth_callout` delegating every client
 * to the callout service; JetStream; optional websocket listener (with its Origin check) and
 * cluster routes. `torii nats-config`, `torii dev` and the test
 * harness all render with this one function, so what is tested is what ships.
 */
import { CLIENT_SERVICE_IMPORTS, DefaultAccount, REPUBLISH_EXPORT } from '../protocol/subjects.js';
import type { ServerKeys } from './keys.js';

/** Users that bypass the callout (listed in `auth_users`). */
export const ServiceUser = {
  /** The callout itself, in the AUTH account. */
  Auth: 'torii-auth',
  /** Controller and workers, in the APP account. */
  Service: 'torii-service',
  /** Presence tracking and kicks, in the system account. */
  System: 'torii-system',
} as const;

/** Default client port. */
export const DEFAULT_NATS_PORT = 4222;
/** Default monitoring (HTTP) port. */
export const DEFAULT_NATS_HTTP_PORT = 8222;
/** Default cluster (route) port. */
export const DEFAULT_NATS_CLUSTER_PORT = 6222;
/** Default websocket port when enabled. */
export const DEFAULT_NATS_WEBSOCKET_PORT = 8080;
/** Default time the server waits for the callout's answer, in seconds (nats-server's own default). */
export const DEFAULT_AUTH_TIMEOUT_S = 2;

/**
 * Default bound on the subscriptions of one room-client connection (account CLIENTS). The SDK
 * holds fewer than ten (its inbox, the live subjects, the room stream's copies); the bound keeps
 * one connection from multiplying what the server delivers to it (every subscription that
 * matches gets its own copy of a message).
 */
export const DEFAULT_CLIENT_MAX_SUBSCRIPTIONS = 100;
/**
 * Default largest message a room client may publish, in bytes (headers included, as nats-server
 * counts). 64 KiB: a request is at most 16 KiB (`MAX_REQUEST_BYTES`) and the work queue stores
 * nothing over 64 KiB (`WORKER_MAX_MSG_SIZE`); chat, whiteboard and live updates are far
 * smaller, and a live update is copied to every member, so its size is multiplied by the room's
 * (docs/decisions.md, "Room clients' limits are the CLIENTS account's").
 */
export const DEFAULT_CLIENT_MAX_PAYLOAD = 64 * 1024;
/** Least `max_payload` Torii renders for room clients: a 16 KiB request and its headers fit. */
export const MIN_CLIENT_MAX_PAYLOAD = 32 * 1024;
/**
 * Greatest `max_payload` Torii renders for room clients: nats-server's own default server-wide
 * bound (1 MiB), which caps the account's anyway.
 */
export const MAX_CLIENT_MAX_PAYLOAD = 1024 * 1024;
/** Greatest subscription bound Torii renders for room clients. */
export const MAX_CLIENT_MAX_SUBSCRIPTIONS = 100_000;

/** Per-connection limits of every room client, applied by the server to account CLIENTS. */
interface ClientLimits {
  /** Subscriptions one connection may hold; the next is refused (`-ERR`). */
  maxSubscriptions: number;
  /** Largest message one connection may publish, in bytes; the server closes a connection that sends more. */
  maxPayload: number;
}

/** The limits of {@link DEFAULT_CLIENT_MAX_SUBSCRIPTIONS} and {@link DEFAULT_CLIENT_MAX_PAYLOAD}. */
const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  maxSubscriptions: DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
  maxPayload: DEFAULT_CLIENT_MAX_PAYLOAD,
};

/** Account names; configurable so that several installations can share a server. */
interface AccountNames {
  /** The callout's own user. */
  auth: string;
  /** Streams, buckets, controller and workers. */
  app: string;
  /** Room clients, placed here by the callout; reaches `app` through service imports only. */
  clients: string;
  sys: string;
}

/** Input of {@link renderNatsConfig}. Ports may be -1 for "any free port" (test harness). */
export interface NatsConfigOptions {
  serverName: string;
  /** Listen address of every listener. Default `127.0.0.1`. */
  host?: string;
  port: number;
  /** Monitoring port; 0 disables it. */
  httpPort: number;
  /** Websocket port; 0 or undefined disables the listener. */
  websocketPort?: number;
  /**
   * Origins (`scheme://host[:port]`) of the pages whose browsers may open the websocket. Empty
   * or undefined: no page may (`same_origin`, which no page can meet on a listener that serves
   * none); clients that send no Origin (apps, servers) connect either way.
   */
  websocketAllowedOrigins?: readonly string[];
  /** Per-connection limits of room clients; {@link DEFAULT_CLIENT_LIMITS} when undefined. */
  clientLimits?: ClientLimits;
  /** JetStream store directory. */
  jetstreamDir: string;
  /** JetStream memory limit in bytes; server default when undefined. */
  jetstreamMaxMemory?: number;
  /** JetStream file limit in bytes; server default when undefined. */
  jetstreamMaxFile?: number;
  cluster?: { name: string; port: number; routes: string[] };
  accounts?: AccountNames;
  keys: ServerKeys;
  /** Seconds the server waits for the callout. */
  authTimeoutSeconds?: number;
  /** Where the server writes its `*.ports` file (lets callers use port -1). */
  portsFileDir?: string;
  /**
   * How long a room client's response mappings live, in milliseconds; default
   * {@link CLIENT_RESPONSE_THRESHOLD_MS}. Tests make it short.
   */
  clientResponseThresholdMs?: number;
  /** Raw config lines appended at the end (tests and benchmarks: profiling, limits). */
  extra?: string;
}

/** The account names of docs/decisions.md, "Account layout". */
/**
 * How long nats-server keeps a response mapping of a room client's request through the `APP`
 * service export, in milliseconds (the export's `response_threshold`; nats-server's default is 2
 * minutes). The answers are streamed and a client's reply subscription lives as long as its
 * connection, so nothing but this threshold removes a mapping, and the server sweeps them once per
 * threshold: a mapping lives between one and two thresholds. The longest a client waits for an
 * answer through the export is a PubAck within the SDK's request timeout (10 s) and a pull that
 * expires after `CATCH_UP_STEP_MS` (5 s); an answer later than this is dropped, and the SDK's
 * request times out as for any lost answer (docs/decisions.md, "Response mappings live seconds,
 * not minutes").
 */
export const CLIENT_RESPONSE_THRESHOLD_MS = 15_000;
export const DEFAULT_ACCOUNTS: AccountNames = {
  auth: DefaultAccount.Auth,
  app: DefaultAccount.App,
  clients: DefaultAccount.Clients,
  sys: DefaultAccount.Sys,
};

/**
 * The `accounts` entries that isolate room clients (docs/decisions.md, "Account layout"). `app`
 * exports one service, `>`, to `clients` only, and `clients` imports from it just what a room
 * client publishes ({@link CLIENT_SERVICE_IMPORTS}), plus the room streams' republished copies
 * as a stream ({@link REPUBLISH_EXPORT}). One service export matters: an answer re-entering an
 * import would pass the same export twice, which nats-server drops as a cycle, so no answer or
 * delivery a client aims anywhere can come back into `app`. Responses are streamed (pulls deliver
 * many messages to one request).
 */
function isolationLines(
  acc: AccountNames,
  responseThresholdMs: number = CLIENT_RESPONSE_THRESHOLD_MS,
): { app: string[]; clients: string[] } {
  return {
    app: [
      '    exports: [',
      `      { service: ">", response_type: stream, response_threshold: ${q(`${responseThresholdMs}ms`)}, accounts: [ ${q(acc.clients)} ] }`,
      `      { stream: ${q(REPUBLISH_EXPORT)}, accounts: [ ${q(acc.clients)} ] }`,
      '    ]',
    ],
    clients: [
      '    imports: [',
      ...CLIENT_SERVICE_IMPORTS.map(
        (s) => `      { service: { account: ${q(acc.app)}, subject: ${q(s)} } }`,
      ),
      `      { stream: { account: ${q(acc.app)}, subject: ${q(REPUBLISH_EXPORT)} } }`,
      '    ]',
    ],
  };
}

const q = (s: string): string => JSON.stringify(s);
const hostPort = (host: string, port: number): string => q(`${host}:${port}`);

/**
 * The CLIENTS account's `limits`. nats-server applies a user JWT's limits only when the JWT stays
 * on the connection, and the auth callout clears it before registering the user
 * (`server/auth_callout.go`, processReply), so the callout cannot set them: the account's limits
 * are what `applyAccountLimits` (`server/client.go`) gives every connection placed in it.
 */
function clientLimitLines(l: ClientLimits): string[] {
  return [
    '    # Per connection (docs/security.md, "Limits"): the next subscription is refused; a',
    '    # larger message closes the connection.',
    `    limits: { max_subscriptions: ${l.maxSubscriptions}, max_payload: ${l.maxPayload} }`,
  ];
}

/** The websocket's Origin check (`server/websocket.go`, checkOrigin). */
function originLines(origins: readonly string[]): string[] {
  if (origins.length === 0)
    return [
      '  # No page origin configured: every browser page is refused (no page has this',
      "  # listener's own origin). Clients that send no Origin, apps and servers, connect.",
      '  same_origin: true',
    ];
  return [
    '  # Browsers only from these pages; clients that send no Origin (apps, servers) connect too.',
    `  allowed_origins: [ ${origins.map(q).join(', ')} ]`,
  ];
}

/**
 * Checks a page origin for `allowed_origins`: `http(s)://host[:port]`, nothing after. nats-server
 * compares scheme, host and port of the upgrade's Origin header with it; a path would never match.
 * @returns the origin as browsers send it (lower-case host, no default port)
 * @throws Error saying what is wrong
 */
export function checkOrigin(value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new Error(`'${value}' is not an origin (example: https://classroom.example.com)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Error(`'${value}' is not an http or https origin`);
  if (u.username || u.password || u.search || u.hash || u.pathname !== '/')
    throw new Error(`'${value}' is not an origin: scheme://host[:port] only, no path or query`);
  return u.origin;
}

/** Renders the server configuration text. */
export function renderNatsConfig(o: NatsConfigOptions): string {
  const host = o.host ?? '127.0.0.1';
  const acc = o.accounts ?? DEFAULT_ACCOUNTS;
  const iso = isolationLines(acc, o.clientResponseThresholdMs);
  const lines: string[] = [
    '# Generated by `torii nats-config`. Contains passwords: keep it private (mode 0600).',
    `server_name: ${q(o.serverName)}`,
    `listen: ${hostPort(host, o.port)}`,
  ];
  if (o.httpPort !== 0) lines.push(`http: ${hostPort(host, o.httpPort)}`);
  if (o.portsFileDir) lines.push(`ports_file_dir: ${q(o.portsFileDir)}`);
  lines.push(
    '',
    'jetstream {',
    `  store_dir: ${q(o.jetstreamDir)}`,
    ...(o.jetstreamMaxMemory !== undefined ? [`  max_memory_store: ${o.jetstreamMaxMemory}`] : []),
    ...(o.jetstreamMaxFile !== undefined ? [`  max_file_store: ${o.jetstreamMaxFile}`] : []),
    '}',
    '',
    'accounts {',
    `  ${q(acc.auth)}: {`,
    `    users: [ { user: ${q(ServiceUser.Auth)}, password: ${q(o.keys.authPassword)} } ]`,
    '  }',
    `  ${q(acc.app)}: {`,
    '    jetstream: enabled',
    `    users: [ { user: ${q(ServiceUser.Service)}, password: ${q(o.keys.servicePassword)} } ]`,
    ...iso.app,
    '  }',
    '  # Room clients only (the callout places them here): no JetStream, no stream, no bucket.',
    `  ${q(acc.clients)}: {`,
    ...iso.clients,
    ...clientLimitLines(o.clientLimits ?? DEFAULT_CLIENT_LIMITS),
    '  }',
    `  ${q(acc.sys)}: {`,
    `    users: [ { user: ${q(ServiceUser.System)}, password: ${q(o.keys.systemPassword)} } ]`,
    '  }',
    '}',
    `system_account: ${q(acc.sys)}`,
    '',
    '# Every other client is authenticated by the Torii callout (`torii auth-callout`).',
    'authorization {',
    `  timeout: ${o.authTimeoutSeconds ?? DEFAULT_AUTH_TIMEOUT_S}`,
    '  auth_callout {',
    `    issuer: ${q(o.keys.issuerPublicKey)}`,
    `    account: ${q(acc.auth)}`,
    `    auth_users: [ ${[ServiceUser.Auth, ServiceUser.Service, ServiceUser.System].map(q).join(', ')} ]`,
    `    xkey: ${q(o.keys.xkeyPublicKey)}`,
    '  }',
    '}',
  );
  if (o.websocketPort) {
    lines.push(
      '',
      '# Browsers connect here. TLS is expected to end at the ingress in front of the server.',
      'websocket {',
      `  listen: ${hostPort(host, o.websocketPort)}`,
      '  no_tls: true',
      ...originLines(o.websocketAllowedOrigins ?? []),
      '}',
    );
  }
  if (o.cluster) {
    lines.push(
      '',
      'cluster {',
      `  name: ${q(o.cluster.name)}`,
      `  listen: ${hostPort(host, o.cluster.port)}`,
      `  routes: [ ${o.cluster.routes.map(q).join(', ')} ]`,
      '}',
    );
  }
  if (o.extra) lines.push('', o.extra);
  return lines.join('\n') + '\n';
}
