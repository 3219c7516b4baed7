/**
 * The NATS user JWT claims the callout signs (docs/auth-callout.md): pure, so they can be checked without
 * a server.
 */
import type { CompiledRole } from '../domain/room-compile.js';
import { renderPermissions } from '../domain/permissions.js';
import type { NatsClaims } from '../infra/natsjwt.js';
import { clientUserName, roleWorkerSubject, workerSubject } from '../protocol/subjects.js';

/** "No limit" in a NATS JWT's limits. */
const NO_LIMIT = -1;

/** Connection types a room client may use. */
export const ALLOWED_CONNECTION_TYPES = ['STANDARD', 'WEBSOCKET'];

/** The `nats` section of a user JWT. */
export interface UserJwtNats {
  pub: { allow: string[] };
  sub: { allow: string[] };
  subs: number;
  data: number;
  payload: number;
  tags: string[];
  allowed_connection_types: string[];
  type: 'user';
  version: 2;
}

export interface UserClaimsInput {
  issuer: string;
  userNkey: string;
  clientAccount: string;
  roomId: string;
  userId: string;
  /** The connection's consumer (a device's); the user's own when undefined. */
  consumer?: string;
  roleName: string;
  role: CompiledRole;
  /** Expiry of the room token, seconds since the epoch. */
  tokenExp: number;
  maxTtlMs: number;
  sharedInbox: boolean;
  now: Date;
}

/**
 * The role's publish permissions for one connection. The templates name the user's events
 * without a role (`sysJsWorker.{roomId}.{userId}`); the connection gets its own role's subject
 * instead, so a worker can take the role from the subject and no other connection of the same
 * user can speak with this one's role.
 */
function publishPermissions(i: UserClaimsInput, consumer: string): string[] {
  const events = workerSubject(i.roomId, i.userId);
  return renderPermissions(i.role.permissions.publish, i.roomId, i.userId, consumer).map((p) =>
    p === events ? roleWorkerSubject(i.roomId, i.userId, i.roleName) : p,
  );
}

/** Builds the user claims: one room, one user, the role's permissions, expiry capped. */
export function buildUserClaims(i: UserClaimsInput): Omit<NatsClaims<UserJwtNats>, 'jti'> {
  const nowSec = Math.floor(i.now.getTime() / 1000);
  const consumer = i.consumer ?? i.userId;
  const subscribe = renderPermissions(i.role.permissions.subscribe, i.roomId, i.userId, consumer);
  if (i.sharedInbox) subscribe.push('_INBOX.>');
  return {
    iss: i.issuer,
    sub: i.userNkey,
    aud: i.clientAccount,
    name: clientUserName(i.roomId, i.userId),
    iat: nowSec,
    exp: Math.min(i.tokenExp, nowSec + Math.floor(i.maxTtlMs / 1000)),
    nats: {
      pub: { allow: publishPermissions(i, consumer) },
      sub: { allow: subscribe },
      // No limits of the user's own: nats-server ignores a callout user JWT's limits (it clears
      // the JWT before registering the user); the CLIENTS account's apply (src/infra/natsconf.ts).
      subs: NO_LIMIT,
      data: NO_LIMIT,
      payload: NO_LIMIT,
      tags: [`room:${i.roomId}`, `user:${i.userId}`, `role:${i.roleName}`],
      allowed_connection_types: ALLOWED_CONNECTION_TYPES,
      type: 'user',
      version: 2,
    },
  };
}
