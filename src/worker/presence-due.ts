/**
 * Presence's index of its records: when each record's grace or retention period ends, and which
 * records hold a connection on which server. Timers are not held per user: each replica keeps
 * this index from its cache of `torii_presence` and sweeps what is due; the compare-and-set of
 * the work decides which replica finishes a transition, so a replica dying in the middle of a
 * grace period changes nothing.
 */
import { describeError } from '../protocol/errors.js';
import { PresenceState, type PresenceRecord } from '../domain/presence.js';
import type { Logger } from '../runtime/logger.js';

/** How often each replica looks for finished grace and retention periods, in milliseconds. */
export const SWEEP_INTERVAL_MS = 500;
/** Grace periods finished at once by one replica's sweep (work items in flight). */
export const SWEEP_CONCURRENCY = 32;
/**
 * Entries replaced or removed that the heap may hold beyond twice the live ones before it is
 * rebuilt (heap entries).
 */
export const DUE_HEAP_SLACK = 1_024;

/** What the sweep must do for a record, and from when (epoch milliseconds). */
export interface Due {
  at: number;
  run: () => Promise<void>;
}

/**
 * Records by the time their grace or retention period ends: a binary heap with lazy removal, so
 * a sweep costs what is due, not every user who left within the retention period.
 */
export class DueQueue {
  private readonly byKey = new Map<string, Due>();
  private readonly heap: { at: number; key: string; due: Due }[] = [];

  /** Schedules `due` for `key`, replacing what the key had. */
  set(key: string, due: Due): void {
    this.byKey.set(key, due);
    // Replaced entries stay until they come up; rebuild before they outnumber the live ones.
    if (this.heap.length > 2 * this.byKey.size + DUE_HEAP_SLACK) {
      this.heap.length = 0;
      for (const [k, d] of this.byKey) if (k !== key) this.push(k, d);
    }
    this.push(key, due);
  }

  private push(key: string, due: Due): void {
    this.heap.push({ at: due.at, key, due });
    for (let i = this.heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (this.heap[parent]!.at <= this.heap[i]!.at) break;
      [this.heap[parent], this.heap[i]] = [this.heap[i]!, this.heap[parent]!];
      i = parent;
    }
  }

  /** Unschedules `key`. */
  delete(key: string): void {
    this.byKey.delete(key); // its heap entry is dropped when it comes up
  }

  /** Whether `key` has something scheduled. */
  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** Removes and returns what is due at `now` (epoch milliseconds), earliest first. */
  takeDue(now: number): [string, Due][] {
    const out: [string, Due][] = [];
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const top = this.pop();
      if (this.byKey.get(top.key) !== top.due) continue; // replaced or removed since
      this.byKey.delete(top.key);
      out.push([top.key, top.due]);
    }
    return out;
  }

  /** Entries in the heap, stale ones included: what {@link set}'s rebuild bounds. */
  get heapSize(): number {
    return this.heap.length;
  }

  private pop(): { at: number; key: string; due: Due } {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.heap.length && this.heap[l]!.at < this.heap[m]!.at) m = l;
        if (r < this.heap.length && this.heap[r]!.at < this.heap[m]!.at) m = r;
        if (m === i) break;
        [this.heap[m], this.heap[i]] = [this.heap[i]!, this.heap[m]!];
        i = m;
      }
    }
    return top;
  }
}

/** What finishing each period means; the index only knows when. */
interface DueWork {
  /** The user is still away `graceMs` after `awayAt`: apply `grace_over`. */
  graceOver(r: PresenceRecord, awayAt: string): Promise<void>;
  /** The user left `retentionMs` before: clean up what it left behind. */
  retentionOver(r: PresenceRecord, changedAt: string): Promise<void>;
}

/** The due-time index and the per-server index of presence records, and the sweep of the first. */
export class DueIndex {
  /** Records whose grace or retention period ends, by key: the sweep reads only these. */
  private readonly due = new DueQueue();
  /** Keys of records with a connection on each server. */
  private readonly byServer = new Map<string, Set<string>>();
  private readonly serversOf = new Map<string, string[]>();
  private sweeping = false;

  /**
   * @param periods - the grace period (`--presence-grace`) and the retention period
   *   (`--consumer-retention`), in milliseconds.
   */
  constructor(
    private readonly periods: { graceMs: number; retentionMs: number },
    private readonly work: DueWork,
    private readonly log: Logger,
  ) {}

  /** Keeps the due and per-server indexes in step with a record (undefined: deleted). */
  track(key: string, r: PresenceRecord | undefined): void {
    for (const server of this.serversOf.get(key) ?? []) {
      const keys = this.byServer.get(server);
      keys?.delete(key);
      if (keys?.size === 0) this.byServer.delete(server);
    }
    const servers = [...new Set(r?.connections.map((c) => c.server) ?? [])];
    if (servers.length > 0) this.serversOf.set(key, servers);
    else this.serversOf.delete(key);
    for (const server of servers) {
      let keys = this.byServer.get(server);
      if (!keys) this.byServer.set(server, (keys = new Set()));
      keys.add(key);
    }
    this.schedule(key, r);
  }

  /** Servers some record holds a connection on. */
  servers(): IterableIterator<string> {
    return this.byServer.keys();
  }

  /** Keys of the records with a connection on `server` (live: changes as records do). */
  keysOn(server: string): ReadonlySet<string> {
    return this.byServer.get(server) ?? NONE;
  }

  private schedule(key: string, r: PresenceRecord | undefined): void {
    if (r?.state === PresenceState.Away && r.awayAt) {
      const awayAt = r.awayAt;
      this.due.set(key, {
        at: Date.parse(awayAt) + this.periods.graceMs,
        run: () => this.work.graceOver(r, awayAt),
      });
    } else if (r?.state === PresenceState.Left) {
      const changedAt = r.changedAt;
      this.due.set(key, {
        at: Date.parse(changedAt) + this.periods.retentionMs,
        run: () => this.work.retentionOver(r, changedAt),
      });
    } else {
      this.due.delete(key);
    }
  }

  /** Finishes the grace and retention periods that are over, on any replica. */
  async sweep(): Promise<void> {
    if (this.sweeping) return; // a long sweep must not overlap the next tick
    this.sweeping = true;
    try {
      const tasks = this.due.takeDue(Date.now()); // a change schedules a record again
      // Many users drop at once when a network or a server fails: finish them in parallel.
      await Promise.all(
        Array.from({ length: Math.min(SWEEP_CONCURRENCY, tasks.length) }, async () => {
          for (let task = tasks.shift(); task; task = tasks.shift()) {
            const [key, d] = task;
            await d.run().catch((e: unknown) => {
              this.log.warn({ key, err: describeError(e) }, 'presence sweep step failed');
              if (!this.due.has(key))
                this.due.set(key, { ...d, at: Date.now() + this.periods.graceMs });
            });
          }
        }),
      );
    } finally {
      this.sweeping = false;
    }
  }
}

const NONE: ReadonlySet<string> = new Set();
