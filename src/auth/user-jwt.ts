/**
 * The NATS user JWT claims the callout signs (docs/auth-callout.md): pure, so they can be checked
 * without a server. What a connection may publish and subscribe to is decided by
 * `connectionPermissions` (src/domain/permissions.ts); this only encodes it.
 */
import type { CompiledRole } from '../domain/room-compile.js';
import { connectionPermissions } from '../domain/permissions.js';
import type { NatsClaims } from '../infra/natsjwt.js';
import { clientUserName } from '../protocol/subjects.js';

/** "No limit" in a NATS JWT's limits. */
const NO_LIMIT = -1;

/** Connection types a room client may use. */
const ALLOWED_CONNECTION_TYPES = ['STANDARD', 'WEBSOCKET'];

/** The `nats` section of a user JWT. */
interface UserJwtNats {
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

/** What the callout knows of one connection it admits. */
interface UserClaimsInput {
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
 * Builds the user claims: one room, one user, the connection's permissions as
 * {@link connectionPermissions} decides them, expiry capped.
 */
export function buildUserClaims(i: UserClaimsInput): Omit<NatsClaims<UserJwtNats>, 'jti'> {
  const nowSec = Math.floor(i.now.getTime() / 1000);
  const { publish, subscribe } = connectionPermissions({
    roomId: i.roomId,
    userId: i.userId,
    consumer: i.consumer,
    roleName: i.roleName,
    templates: i.role.permissions,
    sharedInbox: i.sharedInbox,
  });
  return {
    iss: i.issuer,
    sub: i.userNkey,
    aud: i.clientAccount,
    name: clientUserName(i.roomId, i.userId),
    iat: nowSec,
    exp: Math.min(i.tokenExp, nowSec + Math.floor(i.maxTtlMs / 1000)),
    nats: {
      pub: { allow: publish },
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
