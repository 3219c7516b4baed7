/**
 * What presence reads from the server's own events: the room and user of a client connection
 * (from the user JWT name the callout sets) and the server a shutdown event is about. Pure, so
 * that each rule is tested on its own (test/unit/presence-events.test.ts).
 */
import { isValidId } from '../protocol/ids.js';

/** The part of a `$SYS.ACCOUNT.{account}.CONNECT` / `.DISCONNECT` event presence reads. */
export interface ClientEvent {
  timestamp?: string;
  server?: { id?: string };
  client?: { id?: number; user?: string; name?: string };
}

/** `{roomId}/{userId}` → ids, or undefined for anything else. */
export function identityOf(
  user: string | undefined,
): { roomId: string; userId: string } | undefined {
  const [roomId, userId, extra] = (user ?? '').split('/');
  return extra === undefined && isValidId(roomId) && isValidId(userId)
    ? { roomId, userId }
    : undefined;
}

/**
 * The id of the server a shutdown event is about: the event is the server's own info
 * (`{id, name, …}`), sent on `$SYS.SERVER.{id}.SHUTDOWN`.
 */
export function shutdownServerId(subject: string, body: unknown): string | undefined {
  const fromSubject = subject.split('.')[2];
  if (fromSubject && fromSubject !== '*') return fromSubject;
  const id = (body as { id?: unknown } | null)?.id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/** The time of an event presence makes up itself (a sweep, a reconcile), as stored in records. */
export const now = (): string => new Date().toISOString();
