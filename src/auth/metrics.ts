/** Prometheus metrics of the auth callout. */
import { Counter, Histogram, type Registry } from 'prom-client';
import { METRICS_PREFIX } from '../runtime/ops.js';

export class CalloutMetrics {
  readonly requests: Counter<'result'>;
  readonly rejections: Counter<'reason'>;
  readonly duration: Histogram<'result'>;
  readonly consumers: Counter<'result'>;
  readonly evicted: Counter;
  readonly seatClaims: Counter<'result'>;
  readonly seatLedgerWrites: Counter;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: `${METRICS_PREFIX}auth_requests_total`,
      help: 'Authorization requests by result: allowed, rejected (answered with an error), dropped (unanswerable)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.rejections = new Counter({
      name: `${METRICS_PREFIX}auth_rejections_total`,
      help: 'Refused or dropped authorization requests by reason',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: `${METRICS_PREFIX}auth_duration_seconds`,
      help: 'Time from receiving an authorization request to answering it',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers: [registry],
    });
    this.consumers = new Counter({
      name: `${METRICS_PREFIX}auth_consumer_ensure_total`,
      help: 'User consumer checks before answering: cached (no JetStream call), created, restored (was offline), error',
      labelNames: ['result'],
      registers: [registry],
    });
    this.seatClaims = new Counter({
      name: `${METRICS_PREFIX}auth_seat_claims_total`,
      help: 'Seat claims of users who held no seat, by result: seated (claimed, or found held), full, too_many_claims, error',
      labelNames: ['result'],
      registers: [registry],
    });
    this.seatLedgerWrites = new Counter({
      name: `${METRICS_PREFIX}auth_seat_ledger_writes_total`,
      help: 'Writes of a seat ledger (one per batch of claims into one room)',
      registers: [registry],
    });
    this.evicted = new Counter({
      name: `${METRICS_PREFIX}auth_consumers_evicted_total`,
      help: 'Consumers of departed users deleted because their room stream was at its consumer limit',
      registers: [registry],
    });
  }
}
