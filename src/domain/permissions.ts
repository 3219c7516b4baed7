/**
 * The NATS permissions of one connection (docs/protocol.md, "Subjects"): the templates a role
 * compiles into, and what the callout grants one connection from them. The callout only encodes
 * {@link connectionPermissions}' answer, so the whole policy is read here.
 */
import {
  ALL_INBOXES,
  JsApi,
  chatSubject,
  liveSubject,
  republishedSubject,
  roleWorkerSubject,
  userConsumerFilters,
  userInboxPrefix,
  whiteboardSubject,
  workerSubject,
} from '../protocol/subjects.js';

/** Placeholders in permission templates, filled in by the callout per connection. */
const Placeholder = {
  Room: '{roomId}',
  User: '{userId}',
  /** The connection's consumer: the user's own, or one of its devices' (`deviceConsumerName`). */
  Consumer: '{consumer}',
} as const;

/**
 * What a connection may publish and subscribe to (a NATS user's `allow` lists), or their templates
 * with {@link Placeholder}s as a compiled role stores them.
 */
export interface NatsPermissions {
  publish: string[];
  subscribe: string[];
}

/** What a role may use on NATS once the room's features are applied. */
interface RoleGrants {
  chat: boolean;
  whiteboard: boolean;
  live: boolean;
}

/** The permission templates of a role with these grants. */
export function permissionTemplates(grants: RoleGrants): NatsPermissions {
  const r = Placeholder.Room;
  const u = Placeholder.User;
  const c = Placeholder.Consumer;
  const publish = [
    workerSubject(r, u),
    // No STREAM.INFO: with `subjects_filter` its answer lists every subject of the stream, so
    // every user who ever got an answer; the SDK's consumer probe does without it.
    JsApi.consumerInfo(r, c),
    JsApi.consumerNext(r, c),
    JsApi.consumerReset(r, c),
    ...JsApi.acks(r, c),
    ...(grants.chat ? [chatSubject(r, u)] : []),
    ...(grants.whiteboard ? [whiteboardSubject(r, u)] : []),
    ...(grants.live ? [liveSubject(r, u)] : []),
  ];
  const subscribe = [
    `${userInboxPrefix(r, u)}.>`,
    liveSubject(r, '*'),
    ...userConsumerFilters(r, u).map(republishedSubject),
  ];
  return { publish, subscribe };
}

/**
 * Fills the placeholders of a permission template for one connection (ids already checked).
 * `consumer` defaults to the user's own consumer.
 */
export function renderPermissions(
  templates: readonly string[],
  roomId: string,
  userId: string,
  consumer: string = userId,
): string[] {
  return templates.map((t) =>
    t
      .replaceAll(Placeholder.Room, roomId)
      .replaceAll(Placeholder.User, userId)
      .replaceAll(Placeholder.Consumer, consumer),
  );
}

/** One connection the callout admits: whose, with which role, through which consumer. */
interface ConnectionPermissionsInput {
  roomId: string;
  userId: string;
  /** The connection's consumer (a device's); the user's own when undefined. */
  consumer?: string;
  roleName: string;
  /** The role's templates, as the room config holds them. */
  templates: NatsPermissions;
  /** `--inbox-policy shared`: the connection may also subscribe to {@link ALL_INBOXES}. */
  sharedInbox: boolean;
}

/**
 * What one connection may publish and subscribe to: its role's templates filled in for its room,
 * user and consumer. The templates name the user's events without a role
 * (`sysJsWorker.{roomId}.{userId}`); the connection gets its own role's subject instead, so a
 * worker can take the role from the subject and no other connection of the same user can speak
 * with this one's role. Rooms compiled before roles were in the subject need no recompile.
 */
export function connectionPermissions(i: ConnectionPermissionsInput): NatsPermissions {
  const consumer = i.consumer ?? i.userId;
  const events = workerSubject(i.roomId, i.userId);
  const publish = renderPermissions(i.templates.publish, i.roomId, i.userId, consumer).map((p) =>
    p === events ? roleWorkerSubject(i.roomId, i.userId, i.roleName) : p,
  );
  const subscribe = renderPermissions(i.templates.subscribe, i.roomId, i.userId, consumer);
  if (i.sharedInbox) subscribe.push(ALL_INBOXES);
  return { publish, subscribe };
}
