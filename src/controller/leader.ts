/**
 * Leader election over a coordination.k8s.io/v1 Lease, the way client-go does it: acquire when the
 * lease is free or its holder has not renewed within the lease duration (measured on our own
 * clock from when we last saw the record change, so clock skew between pods does not matter),
 * renew every retry period, and give up leadership when renewals fail for the renew deadline.
 * Every attempt has a time budget, as client-go bounds each attempt with a context: an API call
 * that hangs is abandoned (its socket closed) and counts as a failed renewal, so a leader whose
 * calls hang still steps down at its renew deadline, before a standby can take the lease over.
 * On shutdown the lease is released so a standby takes over at once.
 */
import {
  CoordinationV1Api,
  Observable,
  V1MicroTime,
  type ConfigurationOptions,
  type KubeConfig,
  type V1Lease,
} from '@kubernetes/client-node';
import { ErrorCode, ToriiError } from '../protocol/errors.js';
import type { Logger } from '../runtime/logger.js';
import { apiErrorSummary } from './kube-source.js';

/** Lease timing (controller-runtime defaults: 15 s / 10 s / 2 s). */
export interface LeaseTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}
export const DEFAULT_LEASE_TIMING: LeaseTiming = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

/**
 * Longest one attempt at the Lease may take (its read plus its create or update, or the release
 * on shutdown), in milliseconds. A leader's attempt is cut shorter still, at its renew deadline.
 */
const LEASE_CALL_TIMEOUT_MS = 5_000;

/** A Lease call abandoned because its attempt ran out of time (or the elector stopped). */
class LeaseCallTimeoutError extends ToriiError {
  /** The attempt's budget, in milliseconds. */
  readonly timeoutMs: number;

  constructor(timeoutMs: number, options?: { cause?: unknown }) {
    super(ErrorCode.Internal, `Lease call abandoned after ${timeoutMs} ms`, options);
    this.timeoutMs = timeoutMs;
  }
}

/** The time budget shared by the Lease calls of one attempt. */
class AttemptBudget {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  /** Per-call client options that hand the signal to the request: aborting closes its socket. */
  private readonly options: ConfigurationOptions;

  constructor(readonly timeoutMs: number) {
    this.timer = setTimeout(() => this.controller.abort(), Math.max(0, timeoutMs));
    const signal = this.controller.signal;
    this.options = {
      middleware: [
        {
          pre: (ctx) => {
            ctx.setSignal(signal);
            return new Observable(Promise.resolve(ctx));
          },
          post: (rsp) => new Observable(Promise.resolve(rsp)),
        },
      ],
      middlewareMergeStrategy: 'append',
    };
  }

  /** Abandons the calls in flight now. */
  abort(): void {
    this.controller.abort();
  }

  dispose(): void {
    clearTimeout(this.timer);
  }

  /**
   * Runs one call within the budget. The race also bounds what the client does before the
   * request is sent (credentials from a token file or an exec plugin), which the signal does not.
   */
  async call<T>(fn: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
    const signal = this.controller.signal;
    if (signal.aborted) throw new LeaseCallTimeoutError(this.timeoutMs);
    let onAbort = (): void => undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new LeaseCallTimeoutError(this.timeoutMs));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([fn(this.options), aborted]);
    } catch (e) {
      if (signal.aborted && !(e instanceof LeaseCallTimeoutError))
        throw new LeaseCallTimeoutError(this.timeoutMs, { cause: e });
      throw e;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

interface LeaderCallbacks {
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private observed: { record: string; at: number } | undefined;
  /** When the last successful attempt began: the renewTime it wrote is no earlier than this. */
  private lastRenew = 0;
  private inFlight: AttemptBudget | undefined;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
    readonly identity: string,
    private readonly timing: LeaseTiming,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts campaigning; callbacks fire on transitions. */
  start(cb: LeaderCallbacks): void {
    const tick = async (): Promise<void> => {
      if (this.stopped) return;
      const started = this.now();
      const deadline = this.lastRenew + this.timing.renewDeadlineMs;
      // A leader's attempt may not outlast its renew deadline: a hung call must not keep it
      // leading past the point where a standby can take the lease over.
      const budgetMs = this.leading
        ? Math.min(LEASE_CALL_TIMEOUT_MS, deadline - started)
        : LEASE_CALL_TIMEOUT_MS;
      const ok = budgetMs > 0 && (await this.tryAcquireOrRenew(budgetMs));
      if (this.stopped) return;
      if (ok) {
        this.lastRenew = started;
        if (!this.leading) {
          this.leading = true;
          this.log.info(
            { lease: `${this.namespace}/${this.name}`, identity: this.identity },
            'became leader',
          );
          cb.onStartedLeading();
        }
      } else if (this.leading && this.now() >= deadline) {
        this.leading = false;
        this.log.error(
          { lease: `${this.namespace}/${this.name}`, renewDeadlineMs: this.timing.renewDeadlineMs },
          'lost leadership: could not renew the lease in time',
        );
        cb.onStoppedLeading();
      }
      // A failing leader tries again no later than its deadline, so it steps down on time.
      const delayMs =
        this.leading && !ok
          ? Math.max(0, Math.min(this.timing.retryPeriodMs, deadline - this.now()))
          : this.timing.retryPeriodMs;
      this.timer = setTimeout(() => void tick(), delayMs);
    };
    void tick();
  }

  private async tryAcquireOrRenew(budgetMs: number): Promise<boolean> {
    const budget = new AttemptBudget(budgetMs);
    this.inFlight = budget;
    try {
      return await this.attempt(budget);
    } finally {
      budget.dispose();
      if (this.inFlight === budget) this.inFlight = undefined;
    }
  }

  private async attempt(budget: AttemptBudget): Promise<boolean> {
    const nowMs = this.now();
    let lease: V1Lease;
    try {
      lease = await budget.call((o) =>
        this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }, o),
      );
    } catch (e) {
      if ((e as { code?: number }).code !== 404) {
        this.log.warn({ err: apiErrorSummary(e) }, 'cannot read the leader lease');
        return false;
      }
      try {
        await budget.call((o) =>
          this.api.createNamespacedLease(
            {
              namespace: this.namespace,
              body: {
                metadata: { name: this.name, namespace: this.namespace },
                spec: this.spec(nowMs, 0, new V1MicroTime(nowMs)),
              },
            },
            o,
          ),
        );
        return true;
      } catch (err) {
        this.log.debug({ err: apiErrorSummary(err) }, 'lost the race to create the lease');
        return false;
      }
    }
    const spec = lease.spec ?? {};
    const record = `${spec.holderIdentity ?? ''}|${spec.renewTime ? new Date(spec.renewTime).toISOString() : ''}|${spec.leaseDurationSeconds ?? ''}`;
    if (this.observed?.record !== record) this.observed = { record, at: nowMs };
    const holder = spec.holderIdentity ?? '';
    const durationMs = (spec.leaseDurationSeconds ?? 0) * 1000;
    const heldByOther = holder !== '' && holder !== this.identity;
    if (heldByOther && this.observed.at + durationMs > nowMs) return false;
    const transitions = (spec.leaseTransitions ?? 0) + (holder === this.identity ? 0 : 1);
    const acquireTime =
      holder === this.identity && spec.acquireTime
        ? new V1MicroTime(new Date(spec.acquireTime).getTime())
        : new V1MicroTime(nowMs);
    try {
      await budget.call((o) =>
        this.api.replaceNamespacedLease(
          {
            name: this.name,
            namespace: this.namespace,
            body: { ...lease, spec: this.spec(nowMs, transitions, acquireTime) },
          },
          o,
        ),
      );
      return true;
    } catch (e) {
      this.log.debug({ err: apiErrorSummary(e) }, 'cannot update the leader lease');
      return false;
    }
  }

  private spec(nowMs: number, transitions: number, acquireTime: V1MicroTime): V1Lease['spec'] {
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.max(1, Math.round(this.timing.leaseDurationMs / 1000)),
      acquireTime,
      renewTime: new V1MicroTime(nowMs),
      leaseTransitions: transitions,
    };
  }

  /**
   * Stops campaigning (abandoning an attempt in flight) and, when leading, releases the lease for
   * a fast handover, within {@link LEASE_CALL_TIMEOUT_MS}.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.inFlight?.abort();
    if (!this.leading) return;
    this.leading = false;
    const budget = new AttemptBudget(LEASE_CALL_TIMEOUT_MS);
    try {
      const lease = await budget.call((o) =>
        this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }, o),
      );
      if (lease.spec?.holderIdentity !== this.identity) return;
      await budget.call((o) =>
        this.api.replaceNamespacedLease(
          {
            name: this.name,
            namespace: this.namespace,
            body: {
              ...lease,
              spec: {
                ...lease.spec,
                holderIdentity: '',
                leaseDurationSeconds: 1,
                renewTime: new V1MicroTime(this.now()),
              },
            },
          },
          o,
        ),
      );
      this.log.info('released the leader lease');
    } catch (e) {
      this.log.warn({ err: apiErrorSummary(e) }, 'cannot release the leader lease');
    } finally {
      budget.dispose();
    }
  }
}
