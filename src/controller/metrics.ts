/** Prometheus metrics of the controller (names follow controller-runtime's). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRICS_PREFIX } from '../runtime/ops.js';

export class ControllerMetrics {
  readonly reconciles: Counter<'result'>;
  readonly errors: Counter;
  readonly duration: Histogram;
  readonly writes: Counter<'target'>;
  readonly depth: Gauge;
  readonly leader: Gauge;

  constructor(registry: Registry, depth: () => number) {
    this.reconciles = new Counter({
      name: `${METRICS_PREFIX}controller_reconcile_total`,
      help: 'Reconciles by result: success, error, requeue',
      labelNames: ['result'],
      registers: [registry],
    });
    this.errors = new Counter({
      name: `${METRICS_PREFIX}controller_reconcile_errors_total`,
      help: 'Reconciles that failed',
      registers: [registry],
    });
    this.duration = new Histogram({
      name: `${METRICS_PREFIX}controller_reconcile_time_seconds`,
      help: 'Time per reconcile',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.writes = new Counter({
      name: `${METRICS_PREFIX}controller_writes_total`,
      help: 'Writes by target: apiserver (status, finalizers, events), jetstream (streams), kv (room configs)',
      labelNames: ['target'],
      registers: [registry],
    });
    this.depth = new Gauge({
      name: `${METRICS_PREFIX}controller_workqueue_depth`,
      help: 'Keys queued, delayed or in progress',
      registers: [registry],
      collect() {
        this.set(depth());
      },
    });
    this.leader = new Gauge({
      name: `${METRICS_PREFIX}controller_leader`,
      help: '1 while this instance is the leader',
      registers: [registry],
    });
  }
}
