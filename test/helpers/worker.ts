/** Runs a worker in the test process against a test server. */
import { runWorker, type RunningWorker, type WorkerConfig } from '../../src/worker/index.js';
import { silentLogger, type Logger } from '../../src/runtime/logger.js';
import { Ops } from '../../src/runtime/ops.js';
import { Shutdown } from '../../src/runtime/shutdown.js';
import { loadTokenSigner } from '../../src/infra/tokens.js';
import type { TestKeys } from './nats.js';

export const LIVEKIT = {
  url: 'wss://media.test',
  apiKey: 'APItestkey',
  apiSecret: 'a-test-secret-that-is-long-enough-0123456789',
  ttlSeconds: 7200,
};

export interface TestWorker extends RunningWorker {
  ops: Ops;
  stop(): Promise<void>;
}

export async function startWorker(
  keys: TestKeys,
  servers: string[],
  overrides: Partial<WorkerConfig> = {},
  log: Logger = silentLogger(),
): Promise<TestWorker> {
  const ops = new Ops(log);
  const shutdown = new Shutdown(log);
  const running = await runWorker(
    {
      servers,
      servicePassword: keys.server.servicePassword,
      systemPassword: keys.server.systemPassword,
      clientAccount: 'CLIENTS',
      kvReplicas: 1,
      pool: { concurrency: 50, ackWaitMs: 30_000, maxDeliver: 5 },
      signer: await loadTokenSigner(keys.dir),
      token: { issuer: 'torii', audience: 'torii-nats', ttlMs: 3_600_000 },
      livekit: LIVEKIT,
      presence: { graceMs: 2_000, resyncMs: 2_000, consumerRetentionMs: 3_600_000 },
      blockTtlMs: 3_600_000,
      version: '0.0.0-test',
      ...overrides,
    },
    log,
    ops,
    shutdown,
  );
  return { ...running, ops, stop: () => shutdown.run('test') };
}
