/** Runs the Room controller in the test process against the test servers. */
import {
  runController,
  type ControllerConfig,
  type RunningController,
} from '../../src/controller/index.js';
import { silentLogger, type Logger } from '../../src/runtime/logger.js';
import { Ops } from '../../src/runtime/ops.js';
import { Shutdown } from '../../src/runtime/shutdown.js';
import type { Counter } from 'prom-client';
import type { TestKeys } from './nats.js';

export interface TestController extends RunningController {
  ops: Ops;
  stop(): Promise<void>;
  /** Value of `torii_controller_writes_total{target}` (all targets when omitted). */
  writes(target?: string): Promise<number>;
  /** Value of `torii_controller_reconcile_total{result}` (all results when omitted). */
  reconciles(result?: string): Promise<number>;
}

async function counter(ops: Ops, name: string, label: string, value?: string): Promise<number> {
  const m = ops.registry.getSingleMetric(name) as Counter<string> | undefined;
  const values = (await m?.get())?.values ?? [];
  return values
    .filter((v) => value === undefined || v.labels[label] === value)
    .reduce((a, v) => a + v.value, 0);
}

export async function startController(
  keys: TestKeys,
  servers: string[],
  config: Partial<ControllerConfig>,
  log: Logger = silentLogger(),
): Promise<TestController> {
  const ops = new Ops(log);
  const shutdown = new Shutdown(log);
  const running = await runController(
    {
      servers,
      servicePassword: keys.server.servicePassword,
      kvReplicas: 1,
      concurrency: 4,
      resyncMs: 1_000,
      ...config,
    },
    log,
    ops,
    shutdown,
  );
  return {
    ...running,
    ops,
    stop: () => shutdown.run('test'),
    writes: (target) => counter(ops, 'torii_controller_writes_total', 'target', target),
    reconciles: (result) => counter(ops, 'torii_controller_reconcile_total', 'result', result),
  };
}
