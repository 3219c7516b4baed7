/** `torii controller`: reconciles Rooms into JetStream streams and KV room configs. */
import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import {
  boolParser,
  configError,
  formatDuration,
  intParser,
  opt,
  parseDuration,
} from '../runtime/config.js';
import { KeyFile, readKeyFile } from '../infra/keys.js';
import type { LogLevel } from '../runtime/logger.js';
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_NAME,
  DEFAULT_LEASE_TIMING,
  DEFAULT_RESYNC_MS,
  runController,
  type ControllerConfig,
} from '../controller/index.js';
import { addKeysDir, addLogLevel, addNatsUrl, addOpsPort, examples, runRole } from './common.js';

export interface ControllerFlags {
  natsUrl: string[];
  keysDir: string;
  kvReplicas: number;
  roomsDir?: string;
  kubeconfig?: string;
  namespace?: string;
  concurrency: number;
  resync: number;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
  httpPort: number;
  logLevel: LogLevel;
}

/** The controller's own flags. */
function addControllerOptions(cmd: Command): Command {
  return cmd
    .addOption(
      opt<string>(
        '--rooms-dir <dir>',
        'read Rooms from YAML files in this folder instead of Kubernetes',
      ),
    )
    .addOption(
      opt<number>('--concurrency <n>', 'Rooms reconciled at once', {
        default: DEFAULT_CONCURRENCY,
        parse: intParser(1, 256),
      }),
    )
    .addOption(
      opt<number>('--resync <duration>', 'full resync period (drift repair)', {
        default: DEFAULT_RESYNC_MS,
        defaultDescription: formatDuration(DEFAULT_RESYNC_MS),
        parse: parseDuration,
      }),
    )
    .addOption(
      opt<number>('--kv-replicas <n>', 'replicas of KV buckets this role creates', {
        default: 1,
        parse: intParser(1, 5),
      }),
    );
}

export async function controllerConfig(f: ControllerFlags): Promise<ControllerConfig> {
  if (f.roomsDir !== undefined && f.kubeconfig !== undefined)
    configError(
      '--rooms-dir',
      'choose Kubernetes (--kubeconfig) or a folder (--rooms-dir), not both',
    );
  if (f.roomsDir !== undefined) {
    const st = await stat(f.roomsDir).catch(() => undefined);
    if (!st?.isDirectory()) configError('--rooms-dir', `${f.roomsDir} is not a folder`);
  }
  if (f.resync < 1_000) configError('--resync', 'at least 1s');
  if (!(f.retryPeriod < f.renewDeadline && f.renewDeadline < f.leaseDuration)) {
    configError(
      '--renew-deadline',
      `need --retry-period (${formatDuration(f.retryPeriod)}) < --renew-deadline (${formatDuration(f.renewDeadline)}) < --lease-duration (${formatDuration(f.leaseDuration)})`,
    );
  }
  return {
    servers: f.natsUrl,
    servicePassword: await readKeyFile(f.keysDir, KeyFile.ServicePassword),
    kvReplicas: f.kvReplicas,
    ...(f.roomsDir !== undefined ? { roomsDir: f.roomsDir } : {}),
    ...(f.kubeconfig !== undefined ? { kubeconfig: f.kubeconfig } : {}),
    ...(f.namespace !== undefined ? { namespace: f.namespace } : {}),
    concurrency: f.concurrency,
    resyncMs: f.resync,
    ...(f.leaderElect && f.roomsDir === undefined
      ? {
          leaderElection: {
            namespace: f.leaderElectionNamespace,
            name: f.leaderElectionId,
            timing: {
              leaseDurationMs: f.leaseDuration,
              renewDeadlineMs: f.renewDeadline,
              retryPeriodMs: f.retryPeriod,
            },
          },
        }
      : {}),
  };
}

export function registerController(program: Command): void {
  const cmd = program
    .command('controller')
    .description(
      'reconcile Room resources into JetStream streams and KV room configs (Kubernetes, or a folder with --rooms-dir)',
    );
  addNatsUrl(cmd);
  addKeysDir(cmd);
  addControllerOptions(cmd)
    .addOption(
      opt<string>(
        '--kubeconfig <file>',
        'kubeconfig file (default: in-cluster, then KUBECONFIG, then ~/.kube/config)',
      ),
    )
    .addOption(
      opt<string>(
        '--namespace <ns>',
        'watch Rooms in this namespace only (default: all namespaces)',
      ),
    )
    .addOption(
      opt<boolean>('--leader-elect <bool>', 'elect one active replica through a Lease', {
        default: true,
        parse: boolParser,
      }),
    )
    .addOption(
      opt<string>('--leader-election-namespace <ns>', 'namespace of the Lease', {
        default: process.env.POD_NAMESPACE ?? 'default',
        defaultDescription: '$POD_NAMESPACE or default',
      }),
    )
    .addOption(
      opt<string>('--leader-election-id <name>', 'name of the Lease', {
        default: DEFAULT_LEASE_NAME,
      }),
    )
    .addOption(
      opt<number>(
        '--lease-duration <duration>',
        'how long a leader holds the Lease without renewing',
        {
          default: DEFAULT_LEASE_TIMING.leaseDurationMs,
          defaultDescription: '15s',
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>(
        '--renew-deadline <duration>',
        'a leader that cannot renew for this long steps down',
        {
          default: DEFAULT_LEASE_TIMING.renewDeadlineMs,
          defaultDescription: '10s',
          parse: parseDuration,
        },
      ),
    )
    .addOption(
      opt<number>('--retry-period <duration>', 'interval of Lease attempts', {
        default: DEFAULT_LEASE_TIMING.retryPeriodMs,
        defaultDescription: '2s',
        parse: parseDuration,
      }),
    );
  addOpsPort(cmd);
  addLogLevel(cmd).action(async (f: ControllerFlags) => {
    const config = await controllerConfig(f);
    await runRole('controller', f, (log, ops, shutdown) =>
      runController(config, log, ops, shutdown),
    );
  });
  examples(cmd, [
    'torii controller --nats-url nats://nats:4222 --keys-dir /etc/torii/keys',
    'torii controller --rooms-dir examples/rooms',
    'torii controller --kubeconfig ~/.kube/config --namespace classes --leader-elect false',
  ]);
}
