/**
 * The periodic repair of presence from what the servers say (`--presence-resync`): events the
 * worker missed (a reconnect to NATS, a replica down) would otherwise leave records wrong. Every
 * server is asked for the account's connections (CONNZ); a server that answers late is told from
 * one that is gone.
 */
import { NoRespondersError, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import {
  presenceKey,
  type ConnectionRef,
  type PresenceEvent,
  type PresenceRecord,
} from '../domain/presence.js';
import type { KvCache } from '../infra/kv.js';
import type { Logger } from '../runtime/logger.js';
import { accountConnz, serverConnz, type ConnzAnswer } from './connz.js';
import type { DueIndex } from './presence-due.js';
import { identityOf, now } from './presence-events.js';

/** What the reconcile reads and what it does about it. */
interface ReconcileDeps {
  /** The system account's connection (CONNZ requests). */
  sys: NatsConnection;
  /** The account of the clients (`CLIENTS`). */
  account: string;
  cache: KvCache<PresenceRecord>;
  /** Which records hold connections on which server. */
  index: DueIndex;
  /** Applies an event to a user's record, in order with its other events. */
  apply: (roomId: string, userId: string, ev: PresenceEvent) => Promise<void>;
  /** Ends every connection of a server that is gone. */
  serverGone: (server: string) => Promise<void>;
  /** Sees every CONNZ answer (the flood guard reads its counters). */
  onConnz: (answer: ConnzAnswer) => void;
  log: Logger;
}

/** How long to wait for CONNZ replies from every server, in milliseconds. */
const CONNZ_WAIT_MS = 1_000;
/**
 * How long a server that did not answer in {@link CONNZ_WAIT_MS} gets to answer a question of
 * its own, in milliseconds. A loaded server answers late; a gone one has no responder at all.
 */
const CONNZ_LATE_WAIT_MS = 5_000;
/** Connections listed per CONNZ answer, at most. */
const CONNZ_LIMIT = 100_000;

/** The reconcile of presence records against the servers' connection lists. */
export class Reconciler {
  constructor(private readonly d: ReconcileDeps) {}

  /**
   * Asks every server for the account's connections and repairs the records: connections the
   * servers do not have are removed (their users become away), connections they have that the
   * records miss are added. A server that does not answer in time is asked once more on its
   * own: no responder means it is gone (its connections end), a late answer counts, and silence
   * judges nothing.
   */
  async reconcile(): Promise<void> {
    const { sys, account, cache, index, apply, log } = this.d;
    try {
      // Connections that appeared while the servers were answering are not stale: only judge
      // connections older than the question.
      const askedAt = Date.now() - CONNZ_WAIT_MS;
      const live = new Map<string, Map<number, string>>();
      for (const answer of await accountConnz(
        sys,
        account,
        { limit: CONNZ_LIMIT },
        { maxWaitMs: CONNZ_WAIT_MS },
      ))
        this.readConnz(answer, live);
      const gone: string[] = [];
      await Promise.all(
        [...index.servers()]
          .filter((server) => !live.has(server))
          .map(async (server) => {
            try {
              const answer = await serverConnz(
                sys,
                server,
                account,
                { limit: CONNZ_LIMIT },
                CONNZ_LATE_WAIT_MS,
              );
              if (answer) this.readConnz(answer, live);
            } catch (e) {
              if (e instanceof NoRespondersError || isNoResponders(e)) gone.push(server);
              else if (!(e instanceof TimeoutError))
                log.debug({ server, err: describeError(e) }, 'CONNZ of one server failed');
              else log.info({ server }, 'server late to answer CONNZ; its users stay');
            }
          }),
      );
      for (const server of gone) {
        log.info({ server }, 'server gone; its connections end');
        await this.d.serverGone(server);
      }
      const at = now();
      const work: Promise<void>[] = [];
      for (const [server, conns] of live) {
        for (const key of index.keysOn(server)) {
          const r = cache.get(key);
          const stale = (r?.connections ?? []).filter(
            (c) => c.server === server && !conns.has(c.cid) && Date.parse(c.since) < askedAt,
          );
          if (r && stale.length > 0)
            work.push(apply(r.roomId, r.userId, { type: 'gone', conns: stale, at }));
        }
        for (const [cid, user] of conns) {
          const who = identityOf(user);
          if (!who) continue;
          const rec = cache.get(presenceKey(who.roomId, who.userId));
          if (rec?.connections.some((c) => c.server === server && c.cid === cid)) continue;
          const conn: ConnectionRef = { server, cid };
          work.push(apply(who.roomId, who.userId, { type: 'connect', conn, at }));
        }
      }
      await Promise.all(work);
    } catch (e) {
      log.warn({ err: describeError(e) }, 'presence reconcile failed');
    }
  }

  private readConnz(answer: ConnzAnswer, live: Map<string, Map<number, string>>): void {
    live.set(answer.server, new Map(answer.connections.map((c) => [c.cid, c.user])));
    this.d.onConnz(answer);
  }
}

/** nats.js reports a request nobody listens to as a 503 status on some paths. */
function isNoResponders(e: unknown): boolean {
  const cause = (e as { cause?: unknown } | null)?.cause;
  return cause instanceof NoRespondersError;
}
