/**
 * One server's answer to a CONNZ request (`$SYS.REQ.ACCOUNT.{account}.CONNZ` or
 * `$SYS.REQ.SERVER.{id}.CONNZ`): which server, and its connections with their user names.
 * Presence, kicks and the flood guard ask through the one client here ({@link accountConnz},
 * {@link serverConnz}) and read the same answer.
 */
import type { Msg, NatsConnection, RequestManyOptions } from '@nats-io/transport-node';
import { Sys } from '../protocol/subjects.js';

/** One connection of a CONNZ answer. */
export interface ConnzConnection {
  cid: number;
  user: string;
  /** Messages and bytes the connection published since it connected (`in_msgs`, `in_bytes`). */
  inMsgs?: number;
  inBytes?: number;
  /** When it connected, epoch milliseconds (server clock). */
  start?: number;
}

/** A server's connections, by cid, with the user each authenticated as. */
export interface ConnzAnswer {
  server: string;
  /** The server's clock when it answered, epoch milliseconds (absent when unreadable). */
  now?: number;
  connections: ConnzConnection[];
}

/** The answer a message carries; undefined for anything that is not a CONNZ answer. */
function parseConnz(m: Msg): ConnzAnswer | undefined {
  let r: {
    server?: { id?: unknown };
    data?: {
      now?: unknown;
      connections?: {
        cid?: unknown;
        authorized_user?: unknown;
        in_msgs?: unknown;
        in_bytes?: unknown;
        start?: unknown;
      }[];
    };
  };
  try {
    r = m.json();
  } catch {
    return undefined;
  }
  const server = r?.server?.id;
  if (typeof server !== 'string' || server === '' || !r.data) return undefined;
  const connections: ConnzAnswer['connections'] = [];
  for (const c of r.data.connections ?? [])
    if (typeof c.cid === 'number' && typeof c.authorized_user === 'string' && c.authorized_user) {
      const start = typeof c.start === 'string' ? Date.parse(c.start) : NaN;
      connections.push({
        cid: c.cid,
        user: c.authorized_user,
        ...(typeof c.in_msgs === 'number' ? { inMsgs: c.in_msgs } : {}),
        ...(typeof c.in_bytes === 'number' ? { inBytes: c.in_bytes } : {}),
        ...(Number.isFinite(start) ? { start } : {}),
      });
    }
  const now = typeof r.data.now === 'string' ? Date.parse(r.data.now) : NaN;
  return { server, ...(Number.isFinite(now) ? { now } : {}), connections };
}

/** One server's counters of an account (a STATZ answer): what its clients published. */
export interface AccountCounters {
  server: string;
  /** The server's clock when it answered, epoch milliseconds. */
  now: number;
  /** Messages and bytes received from the account's clients since the server started. */
  msgs: number;
  bytes: number;
}

/** The counters of `account` a STATZ answer carries; undefined for anything else. */
function parseAccountStatz(m: Msg, account: string): AccountCounters | undefined {
  let r: {
    server?: { id?: unknown };
    data?: {
      now?: unknown;
      account_statz?: { acc?: unknown; received?: { msgs?: unknown; bytes?: unknown } }[];
    };
  };
  try {
    r = m.json();
  } catch {
    return undefined;
  }
  const server = r?.server?.id;
  const now = typeof r?.data?.now === 'string' ? Date.parse(r.data.now) : NaN;
  const a = r?.data?.account_statz?.find((x) => x.acc === account);
  const msgs = a?.received?.msgs;
  const bytes = a?.received?.bytes;
  if (typeof server !== 'string' || server === '' || !Number.isFinite(now)) return undefined;
  if (typeof msgs !== 'number' || typeof bytes !== 'number') return undefined;
  return { server, now, msgs, bytes };
}

/** What a CONNZ request asks (nats-server's `ConnzOptions`, the parts Torii uses). */
interface ConnzQuery {
  /** Only the connections of this user name (`{roomId}/{userId}`). */
  user?: string;
  /** Sort order: `bytes_from`, `msgs_from`, … (by cid without). */
  sort?: string;
  /** Connections each server reports at most. */
  limit: number;
}

/** How long to collect the servers' answers, in milliseconds. */
interface ConnzWait {
  /** Stop this long after the last answer (the servers that are up answer within it). */
  stallMs?: number;
  /** Stop this long after asking, whatever came. */
  maxWaitMs: number;
}

/**
 * The one CONNZ client: asks every server with connections in `account`
 * (`$SYS.REQ.ACCOUNT.{account}.CONNZ`, the system user) and resolves with each server's answer,
 * user names included. A server that does not answer within the wait is simply not in the list.
 */
export async function accountConnz(
  sys: NatsConnection,
  account: string,
  q: ConnzQuery,
  wait: ConnzWait,
): Promise<ConnzAnswer[]> {
  const replies = await sys.requestMany(
    Sys.accountConnz(account),
    JSON.stringify({ auth: true, ...q }),
    manyOptions(wait),
  );
  const answers: ConnzAnswer[] = [];
  for await (const m of replies) {
    const a = parseConnz(m);
    if (a) answers.push(a);
  }
  return answers;
}

/** How a request to every server waits for their answers. */
const manyOptions = (wait: ConnzWait): Partial<RequestManyOptions> =>
  wait.stallMs !== undefined
    ? { strategy: 'stall', stall: wait.stallMs, maxWait: wait.maxWaitMs }
    : { maxWait: wait.maxWaitMs };

/**
 * Every server's counters of `account` (`$SYS.REQ.ACCOUNT.{account}.STATZ`): a few numbers per
 * server, where CONNZ fills a record per connection.
 */
export async function accountStatz(
  sys: NatsConnection,
  account: string,
  wait: ConnzWait,
): Promise<AccountCounters[]> {
  const replies = await sys.requestMany(Sys.accountStatz(account), '', manyOptions(wait));
  const counters: AccountCounters[] = [];
  for await (const m of replies) {
    const c = parseAccountStatz(m, account);
    if (c) counters.push(c);
  }
  return counters;
}

/**
 * One server's connections in `account` (`$SYS.REQ.SERVER.{id}.CONNZ`). Rejects as the request
 * does: no responders when the server is gone, a timeout when it is late.
 */
export async function serverConnz(
  sys: NatsConnection,
  server: string,
  account: string,
  q: ConnzQuery,
  timeoutMs: number,
): Promise<ConnzAnswer | undefined> {
  const m = await sys.request(
    Sys.serverConnz(server),
    JSON.stringify({ auth: true, acc: account, ...q }),
    { timeout: timeoutMs },
  );
  return parseConnz(m);
}
