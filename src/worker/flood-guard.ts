/**
 * The connection bound: a room client may publish at most so many messages and bytes a second.
 * nats-server has no per-connection rate limit, and live updates (`room.{roomId}.live.{userId}`)
 * never pass a worker: the server fans each one out to every member of the room. So the guard
 * reads the servers' own counters: every poll interval it asks each server for the clients
 * account's top publishers (CONNZ sorted by `bytes_from`, then by `msgs_from`, `limit` a few
 * dozen), and every presence reconcile hands it the full list. A sorted CONNZ costs the server a
 * record of every connection of the account (~0.6 KiB of garbage each), so a poll first asks
 * for the account's counters (STATZ, a few numbers per server) and looks at the connections only
 * when some server's clients published more since the last poll than one connection may, or
 * {@link FLOOD_REFRESH_MS} after the last look. A connection
 * whose counters exceed a token bucket's allowance, since it connected or since it was last
 * seen, is kicked (the system account's KICK, as `torii.rooms.kick` does); a user kicked for this
 * again within the strike window is blocked for the cool-off, which the callout enforces.
 * docs/decisions.md, "Flood guard", states the worst case.
 */
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { blockKey, isBlockActive, type BlockRecord } from '../domain/blocks.js';
import { describeError } from '../protocol/errors.js';
import { casUpdate, type KvCache } from '../infra/kv.js';
import type { Logger } from '../runtime/logger.js';
import { parseStrikes, strikesKey } from '../domain/room-state.js';
import {
  accountConnz,
  accountStatz,
  type AccountCounters,
  type ConnzAnswer,
  type ConnzConnection,
} from './connz.js';
import type { WorkerMetrics } from './metrics.js';
import { identityOf } from './presence-events.js';
import { kickConnection, putExpiring } from './service.js';

/**
 * Default sustained messages a second one room client connection may publish
 * (`--conn-msgs-rate`). Loose on purpose: every publish counts (live, chat, whiteboard, requests,
 * and the ack of each message a catch-up fetches, one by one under explicit acks), and a device
 * replaying a full history (100,000 messages by default) acks as fast as it reads. Live floods
 * are held by the bytes bound and, for the app, by the SDK's per-sender filter.
 */
export const DEFAULT_CONN_MSGS_PER_SEC = 20_000;
/**
 * Default sustained bytes a second per connection (`--conn-bytes-rate`): 128 KiB, some
 * fifty times a busy page (20 cursor updates a second of ~100 bytes, a beat every 2 s).
 */
export const DEFAULT_CONN_BYTES_PER_SEC = 128 * 1024;
/**
 * The bucket holds this many seconds of each rate: what a connection may send at once (a full
 * default history's acks at the messages rate; 640 KiB at the bytes rate).
 */
export const CONN_BURST_SECONDS = 5;
/** Default interval between two polls of the top publishers, in milliseconds (`--flood-poll`). */
export const DEFAULT_FLOOD_POLL_MS = 1_000;
/**
 * Longest time between two looks at every connection, in milliseconds: between them, a poll looks
 * only when a server's account counters say a connection may be over its bound.
 */
export const FLOOD_REFRESH_MS = 10_000;
/** Publishers each server reports per poll and sort order. */
const FLOOD_TOP_N = 32;
/** Default time a repeat offender is blocked, in milliseconds (`--flood-cool-off`). */
export const DEFAULT_FLOOD_COOL_OFF_MS = 60_000;
/** A second kick within this many milliseconds of the first makes a block. */
const FLOOD_STRIKE_WINDOW_MS = 600_000;
/** Kicks for flooding within the strike window that make a block. */
const FLOOD_STRIKES_TO_BLOCK = 2;
/** How long one poll waits for more servers' answers after the last one, in milliseconds. */
const POLL_STALL_MS = 150;
/** How long one poll waits for answers at most, in milliseconds. */
const POLL_MAX_WAIT_MS = 1_000;
/** Counters of a connection not seen for this long are forgotten, in milliseconds. */
const SAMPLE_TTL_MS = 300_000;

export interface FloodSettings {
  msgsPerSec: number;
  bytesPerSec: number;
  pollMs: number;
  coolOffMs: number;
}

/** A connection's counters when last seen (server clock). */
interface Sample {
  msgs: number;
  bytes: number;
  at: number;
}

/** What a connection published beyond its allowance, or undefined when within it. */
export function overBound(
  s: Pick<FloodSettings, 'msgsPerSec' | 'bytesPerSec'>,
  now: number,
  c: Required<Pick<ConnzConnection, 'inMsgs' | 'inBytes' | 'start'>>,
  prev: Sample | undefined,
): string | undefined {
  const allowance = (rate: number, ms: number): number =>
    rate * CONN_BURST_SECONDS + (rate * Math.max(0, ms)) / 1000;
  const check = (msgs: number, bytes: number, ms: number, since: string): string | undefined => {
    if (msgs > allowance(s.msgsPerSec, ms))
      return `${msgs} messages in ${(ms / 1000).toFixed(1)} s (${since}); the bound is ${s.msgsPerSec}/s`;
    if (bytes > allowance(s.bytesPerSec, ms))
      return `${bytes} bytes in ${(ms / 1000).toFixed(1)} s (${since}); the bound is ${s.bytesPerSec} B/s`;
    return undefined;
  };
  return (
    check(c.inMsgs, c.inBytes, now - c.start, 'since it connected') ??
    (prev
      ? check(c.inMsgs - prev.msgs, c.inBytes - prev.bytes, now - prev.at, 'since the last look')
      : undefined)
  );
}

/**
 * Whether a server's account counters allow that one of its connections is over its bound: its
 * clients together published more since `prev` than one connection may at the sustained rates.
 * When they did not, no connection did, so a look at the connections would find none over (the
 * allowance of {@link overBound} only grows with time). Also true when there is nothing to compare
 * with: a server not seen before, or whose counters went back (it restarted).
 */
export function mayBeOver(
  s: Pick<FloodSettings, 'msgsPerSec' | 'bytesPerSec'>,
  prev: AccountCounters | undefined,
  cur: AccountCounters,
): boolean {
  if (!prev || cur.msgs < prev.msgs || cur.bytes < prev.bytes || cur.now < prev.now) return true;
  const seconds = (cur.now - prev.now) / 1000;
  return (
    cur.msgs - prev.msgs > s.msgsPerSec * seconds ||
    cur.bytes - prev.bytes > s.bytesPerSec * seconds
  );
}

export class FloodGuard {
  private readonly samples = new Map<string, Sample & { seen: number }>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  /** Each server's account counters at the last poll. */
  private readonly counters = new Map<string, AccountCounters & { seen: number }>();
  /** When the connections were last looked at (local clock), 0 before the first look. */
  private lastLook = 0;
  /** Connections being dealt with, so two answers in one poll do not kick one twice. */
  private readonly acting = new Set<string>();

  constructor(
    private readonly sys: NatsConnection,
    private readonly account: string,
    private readonly roomState: KV,
    private readonly blocks: KvCache<BlockRecord>,
    private readonly s: FloodSettings,
    private readonly metrics: WorkerMetrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.s.pollMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look at each server's top publishers, by bytes and by messages. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const due = Date.now() - this.lastLook >= FLOOD_REFRESH_MS;
      // The counters are read at every poll, so that the next comparison covers one interval.
      // Without them (a server that cannot answer STATZ) the guard looks, as it did before them.
      const over = await this.countersSayLook().catch((e: unknown) => {
        this.log.debug({ err: describeError(e) }, 'account counters unread; looking');
        return true;
      });
      if (!due && !over) return;
      this.lastLook = Date.now();
      await Promise.all(
        ['bytes_from', 'msgs_from'].map(async (sort) => {
          const answers = await accountConnz(
            this.sys,
            this.account,
            { sort, limit: FLOOD_TOP_N },
            { stallMs: POLL_STALL_MS, maxWaitMs: POLL_MAX_WAIT_MS },
          );
          for (const answer of answers) this.observe(answer);
        }),
      );
      const now = Date.now();
      for (const [k, v] of this.samples) if (now - v.seen > SAMPLE_TTL_MS) this.samples.delete(k);
      for (const [k, v] of this.counters) if (now - v.seen > SAMPLE_TTL_MS) this.counters.delete(k);
    } catch (e) {
      this.log.debug({ err: describeError(e) }, 'flood poll failed');
    } finally {
      this.polling = false;
    }
  }

  /**
   * Asks each server for the account's counters; true when one of them says a connection may be
   * over its bound ({@link mayBeOver}).
   */
  private async countersSayLook(): Promise<boolean> {
    const all = await accountStatz(this.sys, this.account, {
      stallMs: POLL_STALL_MS,
      maxWaitMs: POLL_MAX_WAIT_MS,
    });
    let over = false;
    for (const cur of all) {
      if (mayBeOver(this.s, this.counters.get(cur.server), cur)) over = true;
      this.counters.set(cur.server, { ...cur, seen: Date.now() });
    }
    return over;
  }

  /** Checks every connection of a CONNZ answer against the bound (also the reconcile's). */
  observe(answer: ConnzAnswer): void {
    const now = answer.now;
    if (now === undefined) return;
    for (const c of answer.connections) {
      const { inMsgs, inBytes, start } = c;
      if (inMsgs === undefined || inBytes === undefined || start === undefined) continue;
      const key = `${answer.server}/${c.cid}`;
      const prev = this.samples.get(key);
      // An answer older than what we have (the other sort's, a slow server) compares nothing.
      if (prev && prev.at >= now) continue;
      this.samples.set(key, { msgs: inMsgs, bytes: inBytes, at: now, seen: Date.now() });
      const why = overBound(this.s, now, { inMsgs, inBytes, start }, prev);
      if (why && !this.acting.has(key)) {
        this.acting.add(key);
        void this.punish(answer.server, c.cid, c.user, why).finally(() => this.acting.delete(key));
      }
    }
  }

  /** Kicks the connection; a repeat offender is blocked for the cool-off first. */
  private async punish(server: string, cid: number, user: string, why: string): Promise<void> {
    const who = identityOf(user);
    const conn = `${server}/${cid}`;
    try {
      let strikes = 1;
      if (who) {
        const now = Date.now();
        // One strike per connection, whichever replica saw it: the record is shared.
        const r = await casUpdate(
          this.roomState,
          strikesKey(who.roomId, who.userId),
          parseStrikes,
          (cur) => {
            const recent = (cur?.strikes ?? []).filter((x) => now - x.at < FLOOD_STRIKE_WINDOW_MS);
            if (recent.some((x) => x.conn === conn)) return undefined;
            return { put: { strikes: [...recent, { conn, at: now }] } };
          },
        );
        const written = r.step && 'put' in r.step ? r.step.put : r.previous;
        strikes = (written?.strikes ?? []).filter(
          (x) => now - x.at < FLOOD_STRIKE_WINDOW_MS,
        ).length;
        // Block before the kick, so the reconnect that follows is refused.
        if (r.step && strikes >= FLOOD_STRIKES_TO_BLOCK)
          await this.block(who.roomId, who.userId, why);
      }
      await kickConnection(this.sys, server, cid);
      this.metrics.floodKicks.inc();
      this.log.warn(
        { server, cid, user, strikes, why },
        'connection over the publish bound; kicked',
      );
    } catch (e) {
      this.log.debug({ server, cid, err: describeError(e) }, 'flood kick failed');
    }
  }

  /** Blocks the user for the cool-off, unless a longer block is in force. */
  private async block(roomId: string, userId: string, why: string): Promise<void> {
    const now = new Date();
    const until = new Date(now.getTime() + this.s.coolOffMs);
    const current = this.blocks.get(blockKey(roomId, userId));
    if (
      current &&
      isBlockActive(current, now) &&
      (current.until === undefined || Date.parse(current.until) >= until.getTime())
    )
      return;
    const record: BlockRecord = {
      roomId,
      userId,
      reason: `flooding: ${why}`,
      by: 'torii.flood-guard',
      createdAt: now.toISOString(),
      until: until.toISOString(),
    };
    await putExpiring(
      this.blocks.bucket,
      blockKey(roomId, userId),
      JSON.stringify(record),
      this.s.coolOffMs,
    );
    this.metrics.floodBlocks.inc();
  }
}
