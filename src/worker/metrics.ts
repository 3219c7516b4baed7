/** Prometheus metrics of the worker. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRICS_PREFIX } from '../runtime/ops.js';

export class WorkerMetrics {
  readonly events: Counter<'event' | 'outcome'>;
  readonly latency: Histogram<'event'>;
  readonly inflight: Gauge;
  readonly redeliveries: Counter;
  readonly exhausted: Counter;
  readonly floodKicks: Counter;
  readonly floodBlocks: Counter;

  constructor(registry: Registry, inflight: () => number) {
    this.events = new Counter({
      name: `${METRICS_PREFIX}worker_events_total`,
      help: 'Events handled, by type and outcome (ok, error code, retry)',
      labelNames: ['event', 'outcome'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: `${METRICS_PREFIX}worker_handler_seconds`,
      help: 'Time from taking an event to acking it',
      labelNames: ['event'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    });
    this.inflight = new Gauge({
      name: `${METRICS_PREFIX}worker_inflight`,
      help: 'Events being handled now',
      registers: [registry],
      collect() {
        this.set(inflight());
      },
    });
    this.redeliveries = new Counter({
      name: `${METRICS_PREFIX}worker_redeliveries_total`,
      help: 'Events delivered more than once',
      registers: [registry],
    });
    this.exhausted = new Counter({
      name: `${METRICS_PREFIX}worker_max_deliveries_total`,
      help: 'Events that reached max_deliver; they stay in sysJsWorker for inspection',
      registers: [registry],
    });
    this.floodKicks = new Counter({
      name: `${METRICS_PREFIX}worker_flood_kicks_total`,
      help: 'Room client connections this replica closed for publishing above the connection bound',
      registers: [registry],
    });
    this.floodBlocks = new Counter({
      name: `${METRICS_PREFIX}worker_flood_blocks_total`,
      help: 'Users this replica blocked for the cool-off after a repeated flood',
      registers: [registry],
    });
  }
}
