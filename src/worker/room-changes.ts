/**
 * A Room change reaching connections already open. The callout writes a connection's rights into
 * its NATS user JWT at admission, and the server keeps them until that JWT expires (hours): a
 * change that takes a right away would not reach those connections. So when the compiled room
 * changes, the connections of every role that lost a right are closed through the system account
 * (the kick's mechanism); clients reconnect, and the callout admits them with the new rights.
 * Roles that only gained keep their connections: the SDK reconnects by itself for those (it sees
 * `EVT_ROOM_UPDATED`), and nothing is at risk meanwhile.
 */
import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { describeError } from '../protocol/errors.js';
import type { JetStreamManager } from '@nats-io/jetstream';
import { casUpdate, lastValues, type KvCache } from '../infra/kv.js';
import { Bucket } from '../protocol/subjects.js';
import type { Logger } from '../runtime/logger.js';
import { memberKey, parseMember, rightsKey } from '../domain/room-state.js';
import type { CompiledRole, CompiledRoomConfig } from '../domain/room-compile.js';
import type { MediaRemover } from './media.js';
import { kickAll, roomConnections } from './service.js';

/** LiveKit grant updates in flight at once after a Room change, at most (a room may be large). */
const LIVEKIT_UPDATE_CONCURRENCY = 16;

/** True when a media grant of the role went from allowed to refused. */
function mediaLost(before: CompiledRole, after: CompiledRole | undefined): boolean {
  if (!after) return true;
  return (
    (before.media.canPublish && !after.media.canPublish) ||
    (before.media.canSubscribe && !after.media.canSubscribe) ||
    (before.media.canPublishData && !after.media.canPublishData)
  );
}

/** True when `after` allows less than `before`: any permission, flag or media grant gone. */
function roleLostRight(before: CompiledRole, after: CompiledRole): boolean {
  const lost = (a: readonly string[], b: readonly string[]): boolean => {
    const kept = new Set(b);
    return a.some((x) => !kept.has(x));
  };
  return (
    lost(before.permissions.publish, after.permissions.publish) ||
    lost(before.permissions.subscribe, after.permissions.subscribe) ||
    (before.moderator && !after.moderator) ||
    (before.chat && !after.chat) ||
    (before.whiteboard && !after.whiteboard) ||
    (before.live && !after.live) ||
    mediaLost(before, after)
  );
}

/**
 * The roles whose open connections must close after the room changed from `before` to `after`:
 * those removed, and those that lost a right. Pure.
 */
export function rolesLosingRights(before: CompiledRoomConfig, after: CompiledRoomConfig): string[] {
  return Object.keys(before.roles).filter((name) => {
    const b = before.roles[name] as CompiledRole;
    const a = Object.hasOwn(after.roles, name) ? after.roles[name] : undefined;
    return a === undefined || roleLostRight(b, a);
  });
}

/** A digest of what a room's connections may do: equal digests, equal rights. */
export function rightsDigest(room: CompiledRoomConfig): string {
  return createHash('sha256')
    .update(JSON.stringify({ roles: room.roles, features: room.features }))
    .digest('base64url');
}

/** The digest recorded for a deleted room (no digest of a room's rights looks like it). */
const DELETED = 'deleted';

const parseRights = (d: unknown): { digest: string } | undefined => {
  const digest = (d as { digest?: unknown } | null)?.digest;
  return typeof digest === 'string' ? { digest } : undefined;
};

/**
 * Applies each narrowing change of a room to its open connections, and ends a deleted room's
 * media. Every worker sees the change;
 * a compare-and-set on `rights.{roomId}` lets one of them act, so connections that reconnected
 * with the new rights are not closed a second time by a slower worker.
 */
export function closeOnNarrowing(
  rooms: KvCache<CompiledRoomConfig>,
  roomState: KV,
  jsm: JetStreamManager,
  sys: NatsConnection,
  clientAccount: string,
  media: MediaRemover | undefined,
  log: Logger,
): void {
  // A deleted Room's connections are kicked elsewhere (kickOnRoomDeletion); its media ends here,
  // by the one worker that records the deletion.
  const endMedia = (roomId: string, livekitRoom: string): void => {
    void (async () => {
      const { step } = await casUpdate(roomState, rightsKey(roomId), parseRights, (cur) =>
        cur?.digest === DELETED ? undefined : { put: { digest: DELETED } },
      );
      if (!step || !media) return;
      const outcome = await media.endRoom(livekitRoom);
      log.info({ roomId, livekitRoom, outcome }, 'room deleted; its LiveKit room ended');
    })().catch((e: unknown) =>
      log.warn({ roomId, err: describeError(e) }, 'ending media of a deleted room failed'),
    );
  };
  rooms.onChange((roomId, value, previous) => {
    if (value === undefined && previous !== undefined && media) {
      endMedia(roomId, previous.media.livekitRoom);
      return;
    }
    if (value === undefined || previous === undefined) return;
    const digest = rightsDigest(value);
    if (digest === rightsDigest(previous)) return;
    const roles = rolesLosingRights(previous, value);
    void (async () => {
      // Every change of rights is recorded, widening ones too: a room narrowed, widened and
      // narrowed again the same way is a new change each time.
      const { step } = await casUpdate(roomState, rightsKey(roomId), parseRights, (cur) =>
        cur?.digest === digest ? undefined : { put: { digest } },
      );
      if (!step || roles.length === 0) return; // another worker took it, or nothing was lost
      const lost = new Set(roles);
      const open = await roomConnections(sys, clientAccount, roomId);
      // A NATS connection does not tell its role; the callout's member record of the user does
      // (its last admission). A user without one is closed: reconnecting costs it little.
      const users = [...new Set(open.map((c) => c.userId))];
      // One scan of the room's member records, not a read per user: a room may hold thousands.
      const roleOf = new Map<string, string>();
      for (const [, v] of await lastValues(jsm, Bucket.RoomState, memberKey(roomId, '*'))) {
        const m = parseMember(v);
        if (m?.roomId === roomId) roleOf.set(m.userId, m.role);
      }
      const affected = open.filter((c) => {
        const role = roleOf.get(c.userId);
        return role === undefined || lost.has(role);
      });
      const n = await kickAll(sys, [Promise.resolve(affected)]);
      log.info({ roomId, roles, closed: n }, 'room rights narrowed; affected connections closed');
      // LiveKit keeps a participant's grants from its join: narrow them there too. A role that is
      // gone loses media altogether (its users may not join again).
      if (!media) return;
      const after = (role: string) =>
        Object.hasOwn(value.roles, role) ? value.roles[role] : undefined;
      const narrowed = users.filter((u) => {
        const role = roleOf.get(u);
        return (
          role !== undefined &&
          lost.has(role) &&
          mediaLost(previous.roles[role] as CompiledRole, after(role))
        );
      });
      for (let i = 0; i < narrowed.length; i += LIVEKIT_UPDATE_CONCURRENCY)
        await Promise.all(
          narrowed.slice(i, i + LIVEKIT_UPDATE_CONCURRENCY).map((u) => {
            const role = roleOf.get(u);
            const grants = role !== undefined ? after(role)?.media : undefined;
            return grants
              ? media.restrict(value.media.livekitRoom, u, grants)
              : media.remove(value.media.livekitRoom, u);
          }),
        );
    })().catch((e: unknown) =>
      log.warn({ roomId, err: describeError(e) }, 'closing connections after a room change failed'),
    );
  });
}
