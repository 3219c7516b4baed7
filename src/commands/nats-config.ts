/** `torii nats-config`: renders a nats-server config that matches Torii's roles. */
import { InvalidArgumentError, type Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { configError, intParser, listParser, opt, portParser } from '../runtime/config.js';
import { isValidId } from '../protocol/ids.js';
import { loadServerKeys } from '../infra/keys.js';
import {
  checkOrigin,
  DEFAULT_ACCOUNTS,
  DEFAULT_AUTH_TIMEOUT_S,
  DEFAULT_CLIENT_MAX_PAYLOAD,
  DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
  MAX_CLIENT_MAX_PAYLOAD,
  MAX_CLIENT_MAX_SUBSCRIPTIONS,
  MIN_CLIENT_MAX_PAYLOAD,
  DEFAULT_NATS_CLUSTER_PORT,
  DEFAULT_NATS_HTTP_PORT,
  DEFAULT_NATS_PORT,
  renderNatsConfig,
  type NatsConfigOptions,
} from '../infra/natsconf.js';
import { addKeysDir, examples } from './common.js';

interface NatsConfigFlags {
  keysDir: string;
  out?: string;
  serverName: string;
  host: string;
  port: number;
  httpPort: number;
  websocketPort: number;
  jetstreamDir: string;
  clusterName?: string;
  clusterPort: number;
  routes: string[];
  authAccount: string;
  appAccount: string;
  clientAccount: string;
  sysAccount: string;
  authTimeout: number;
  maxSubscriptions: number;
  maxPayload: number;
  websocketOrigins: string[];
}

/** A comma-separated list of page origins (`https://host[:port]`). */
export function originListParser(value: string): string[] {
  try {
    return listParser(value).map(checkOrigin);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/**
 * `--max-subscriptions` and `--max-payload`: what the server allows each room-client connection
 * (account CLIENTS limits). Shared by `torii nats-config` and `torii dev`.
 */
export function addClientLimitOptions(cmd: Command): Command {
  return cmd
    .addOption(
      opt<number>(
        '--max-subscriptions <n>',
        'subscriptions one room-client connection may hold; the server refuses the next',
        {
          default: DEFAULT_CLIENT_MAX_SUBSCRIPTIONS,
          parse: intParser(1, MAX_CLIENT_MAX_SUBSCRIPTIONS),
        },
      ),
    )
    .addOption(
      opt<number>(
        '--max-payload <bytes>',
        'largest message a room client may publish; the server closes a connection that sends more',
        {
          default: DEFAULT_CLIENT_MAX_PAYLOAD,
          parse: intParser(MIN_CLIENT_MAX_PAYLOAD, MAX_CLIENT_MAX_PAYLOAD),
        },
      ),
    );
}

const accountName = (v: string): string => {
  // `v` is what the user typed; the message quotes it as a string.
  if (!isValidId(v))
    throw new InvalidArgumentError(
      `'${String(v)}' is not a valid account name (letters, digits, '_', '-')`,
    );
  return v;
};

/** Turns parsed flags into renderer options; checks that the flags agree with each other. */
async function natsConfigFromFlags(f: NatsConfigFlags): Promise<NatsConfigOptions> {
  const accounts = {
    auth: f.authAccount,
    app: f.appAccount,
    clients: f.clientAccount,
    sys: f.sysAccount,
  };
  if (new Set(Object.values(accounts)).size !== 4) {
    configError('--client-account', 'the AUTH, APP, CLIENTS and SYS account names must differ');
  }
  if (f.routes.length > 0 && !f.clusterName) configError('--routes', 'routes need --cluster-name');
  if (f.websocketOrigins.length > 0 && f.websocketPort === 0)
    configError('--websocket-origins', 'origins need a websocket (--websocket-port)');
  const ports = [f.port, f.httpPort, f.websocketPort, f.clusterName ? f.clusterPort : 0].filter(
    (p) => p > 0,
  );
  if (new Set(ports).size !== ports.length)
    configError('--port', `ports must differ (${ports.join(', ')})`);
  return {
    serverName: f.serverName,
    host: f.host,
    port: f.port,
    httpPort: f.httpPort,
    websocketPort: f.websocketPort,
    jetstreamDir: f.jetstreamDir,
    accounts,
    keys: await loadServerKeys(f.keysDir),
    authTimeoutSeconds: f.authTimeout,
    clientLimits: { maxSubscriptions: f.maxSubscriptions, maxPayload: f.maxPayload },
    websocketAllowedOrigins: f.websocketOrigins,
    ...(f.clusterName
      ? { cluster: { name: f.clusterName, port: f.clusterPort, routes: f.routes } }
      : {}),
  };
}

export function registerNatsConfig(program: Command): void {
  const cmd = program
    .command('nats-config')
    .description(
      'render a nats-server config for Torii: accounts AUTH/APP/CLIENTS/SYS, auth callout, JetStream, optional websocket and cluster',
    )
    .addOption(
      opt<string>('--out <file>', 'write the config to this file (mode 0600) instead of stdout'),
    )
    .addOption(
      opt<string>('--server-name <name>', 'server_name (unique per cluster node)', {
        default: os.hostname(),
      }),
    )
    .addOption(
      opt<string>('--host <addr>', 'listen address of every listener', { default: '127.0.0.1' }),
    )
    .addOption(
      opt<number>('--port <port>', 'client port', {
        default: DEFAULT_NATS_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<number>('--http-port <port>', 'monitoring port; 0 disables', {
        default: DEFAULT_NATS_HTTP_PORT,
        parse: portParser(true),
      }),
    )
    .addOption(
      opt<number>('--websocket-port <port>', 'websocket listener for browsers; 0 disables', {
        default: 0,
        parse: portParser(true),
      }),
    )
    .addOption(
      opt<string[]>(
        '--websocket-origins <origins>',
        'comma-separated origins of the pages whose browsers may use the websocket, e.g. https://classroom.example.com; none: browsers are refused (apps and servers, which send no Origin, connect)',
        { default: [], defaultDescription: 'none', parse: originListParser },
      ),
    )
    .addOption(
      opt<string>('--jetstream-dir <dir>', 'JetStream store directory', { default: './nats-data' }),
    )
    .addOption(opt<string>('--cluster-name <name>', 'enable clustering under this name'))
    .addOption(
      opt<number>('--cluster-port <port>', 'route port', {
        default: DEFAULT_NATS_CLUSTER_PORT,
        parse: portParser(false),
      }),
    )
    .addOption(
      opt<string[]>('--routes <urls>', 'comma-separated route URLs, e.g. nats-route://n2:6222', {
        default: [],
        parse: listParser,
      }),
    )
    .addOption(
      opt<string>('--auth-account <name>', 'account of the callout user', {
        default: DEFAULT_ACCOUNTS.auth,
        parse: accountName,
      }),
    )
    .addOption(
      opt<string>('--app-account <name>', 'account of streams, KV, controller and workers', {
        default: DEFAULT_ACCOUNTS.app,
        parse: accountName,
      }),
    )
    .addOption(
      opt<string>(
        '--client-account <name>',
        'account of room clients (no streams; reaches APP through service imports)',
        { default: DEFAULT_ACCOUNTS.clients, parse: accountName },
      ),
    )
    .addOption(
      opt<string>('--sys-account <name>', 'system account', {
        default: DEFAULT_ACCOUNTS.sys,
        parse: accountName,
      }),
    )
    .addOption(
      opt<number>('--auth-timeout <seconds>', 'seconds the server waits for the callout', {
        default: DEFAULT_AUTH_TIMEOUT_S,
        parse: (v) => portParser(false)(v),
      }),
    );
  addClientLimitOptions(cmd);
  addKeysDir(cmd).action(async (f: NatsConfigFlags) => {
    const text = renderNatsConfig(await natsConfigFromFlags(f));
    if (f.out) await writeFile(f.out, text, { mode: 0o600 });
    else process.stdout.write(text);
  });
  examples(cmd, [
    'torii nats-config --keys-dir .torii/keys > nats.conf && nats-server -c nats.conf',
    'torii nats-config --host 0.0.0.0 --websocket-port 8080 --websocket-origins https://classroom.example.com --out /etc/nats/nats.conf',
    'torii nats-config --server-name n1 --cluster-name torii --routes nats-route://n2:6222,nats-route://n3:6222',
  ]);
}
