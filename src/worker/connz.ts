/**
 * One server's answer to a CONNZ request (`$SYS.REQ.ACCOUNT.{account}.CONNZ` or
 * `$SYS.REQ.SERVER.{id}.CONNZ`): which server, and its connections with their user names.
 * Presence and kicks read the same answer.
 */
import type { Msg } from '@nats-io/transport-node';

/** A server's connections, by cid, with the user each authenticated as. */
export interface ConnzAnswer {
  server: string;
  connections: { cid: number; user: string }[];
}

/** The answer a message carries; undefined for anything that is not a CONNZ answer. */
export function parseConnz(m: Msg): ConnzAnswer | undefined {
  let r: {
    server?: { id?: unknown };
    data?: { connections?: { cid?: unknown; authorized_user?: unknown }[] };
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
    if (typeof c.cid === 'number' && typeof c.authorized_user === 'string' && c.authorized_user)
      connections.push({ cid: c.cid, user: c.authorized_user });
  return { server, connections };
}
