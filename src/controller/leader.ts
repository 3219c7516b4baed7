/**
 * Leader election over a coordination.k8s.io/v1 Lease, the way client-go does it: acquire when the
 * lease is free or its holder has not renewed within the lease duration (measured on our own
 * clock from when we last saw the record change, so clock skew between pods does not matter),
 * renew every retry period, and give up leadership when renewals fail for the renew deadline.
 * On shutdown the lease is released so a standby takes over at once.
 */
import {
  CoordinationV1Api,
  V1MicroTime,
  type KubeConfig,
  type V1Lease,
} from '@kubernetes/client-node';
import type { Logger } from '../core/logger.js';
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

export interface LeaderCallbacks {
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private observed: { record: string; at: number } | undefined;
  private lastRenew = 0;

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
      const ok = await this.tryAcquireOrRenew();
      if (this.stopped) return;
      if (ok) {
        this.lastRenew = this.now();
        if (!this.leading) {
          this.leading = true;
          this.log.info(
            { lease: `${this.namespace}/${this.name}`, identity: this.identity },
            'became leader',
          );
          cb.onStartedLeading();
        }
      } else if (this.leading && this.now() - this.lastRenew > this.timing.renewDeadlineMs) {
        this.leading = false;
        this.log.error(
          { lease: `${this.namespace}/${this.name}` },
          'lost leadership: could not renew the lease in time',
        );
        cb.onStoppedLeading();
      }
      this.timer = setTimeout(() => void tick(), this.timing.retryPeriodMs);
    };
    void tick();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const nowMs = this.now();
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name: this.name, namespace: this.namespace });
    } catch (e) {
      if ((e as { code?: number }).code !== 404) {
        this.log.warn({ err: apiErrorSummary(e) }, 'cannot read the leader lease');
        return false;
      }
      try {
        await this.api.createNamespacedLease({
          namespace: this.namespace,
          body: {
            metadata: { name: this.name, namespace: this.namespace },
            spec: this.spec(nowMs, 0, new V1MicroTime(nowMs)),
          },
        });
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
      await this.api.replaceNamespacedLease({
        name: this.name,
        namespace: this.namespace,
        body: { ...lease, spec: this.spec(nowMs, transitions, acquireTime) },
      });
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

  /** Stops campaigning and, when leading, releases the lease for a fast handover. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.api.readNamespacedLease({
        name: this.name,
        namespace: this.namespace,
      });
      if (lease.spec?.holderIdentity !== this.identity) return;
      await this.api.replaceNamespacedLease({
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
      });
      this.log.info('released the leader lease');
    } catch (e) {
      this.log.warn({ err: apiErrorSummary(e) }, 'cannot release the leader lease');
    }
  }
}
