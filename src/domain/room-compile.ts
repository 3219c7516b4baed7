/**
 * A Room spec checked and compiled into the room config that the controller publishes to KV
 * `torii_rooms` and that the callout and workers read (docs/controller.md).
 */
import { checkRoomId, ID_PATTERN } from '../protocol/ids.js';
import { permissionTemplates, type NatsPermissions } from './permissions.js';
import { roomHistoryLimits } from './room-history.js';
import {
  DeletionPolicy,
  DEFAULT_ROLE_SPECS,
  MAX_PARTICIPANTS_LIMIT,
  parseQuantity,
  parseRoomDuration,
  resolveRoomId,
  ROOM_DEFAULTS,
  StorageType,
  type MediaGrantsSpec,
  type RoleSpec,
  type RoomSpec,
} from './room-spec.js';

/** A role after defaults and room features are applied. */
export interface CompiledRole {
  moderator: boolean;
  chat: boolean;
  whiteboard: boolean;
  live: boolean;
  media: Required<MediaGrantsSpec>;
  /** NATS permission templates, filled in per connection by `connectionPermissions`. */
  permissions: NatsPermissions;
}

/** What the controller publishes to KV `torii_rooms` under `{roomId}`. */
export interface CompiledRoomConfig {
  /** Format version of this record. */
  version: 1;
  roomId: string;
  title: string;
  maxParticipants: number;
  features: { chat: boolean; whiteboard: boolean; raiseHand: boolean };
  media: { livekitRoom: string; broadcast: boolean };
  roles: Record<string, CompiledRole>;
  history: {
    maxAgeMs: number;
    maxMessages: number;
    maxBytes: number;
    storage: StorageType;
    replicas: number;
    /** `max_msgs_per_subject` of the room stream. */
    maxMessagesPerUser: number;
    /** `max_msg_size` of the room stream, in bytes. */
    maxMessageSize: number;
  };
  /** Where it came from, e.g. `classes/n5-evening` or a file path. */
  source?: string;
}

/**
 * Checks what the CRD schema cannot: ids, role names, sizes, durations.
 * @returns human-readable problems, empty when the spec is valid
 */
export function validateRoomSpec(name: string, spec: RoomSpec): string[] {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec))
    return ['spec: must be an object'];
  const problems: string[] = [];
  const roomId = resolveRoomId(name, spec);
  try {
    checkRoomId(
      roomId,
      spec.roomId === undefined ? 'metadata.name (used as roomId)' : 'spec.roomId',
    );
  } catch (e) {
    problems.push((e as Error).message);
  }
  const max = spec.maxParticipants;
  if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > MAX_PARTICIPANTS_LIMIT)) {
    problems.push(`spec.maxParticipants: must be an integer from 1 to ${MAX_PARTICIPANTS_LIMIT}`);
  }
  if (spec.roles !== undefined) {
    const names = Object.keys(spec.roles);
    if (names.length === 0)
      problems.push('spec.roles: define at least one role, or omit roles for the defaults');
    for (const r of names)
      if (!ID_PATTERN.test(r)) problems.push(`spec.roles: invalid role name ${JSON.stringify(r)}`);
  }
  const bools: [string, unknown][] = [
    ['spec.features.chat', spec.features?.chat],
    ['spec.features.whiteboard', spec.features?.whiteboard],
    ['spec.features.raiseHand', spec.features?.raiseHand],
    ['spec.media.broadcast', spec.media?.broadcast],
    ...Object.entries(spec.roles ?? {}).flatMap(([r, role]): [string, unknown][] => [
      [`spec.roles.${r}.chat`, role?.chat],
      [`spec.roles.${r}.whiteboard`, role?.whiteboard],
      [`spec.roles.${r}.moderator`, role?.moderator],
      [`spec.roles.${r}.live`, role?.live],
      [`spec.roles.${r}.media.canPublish`, role?.media?.canPublish],
      [`spec.roles.${r}.media.canSubscribe`, role?.media?.canSubscribe],
      [`spec.roles.${r}.media.canPublishData`, role?.media?.canPublishData],
    ]),
  ];
  for (const [field, v] of bools)
    if (v !== undefined && typeof v !== 'boolean') problems.push(`${field}: must be true or false`);
  if (spec.title !== undefined && (typeof spec.title !== 'string' || spec.title.length > 200))
    problems.push('spec.title: a string of at most 200 characters');
  if (
    spec.deletionPolicy !== undefined &&
    !Object.values(DeletionPolicy).includes(spec.deletionPolicy)
  ) {
    problems.push('spec.deletionPolicy: Delete or Retain');
  }
  const h = spec.history ?? {};
  if (h.storage !== undefined && !Object.values(StorageType).includes(h.storage))
    problems.push('spec.history.storage: file or memory');
  if (h.maxAge !== undefined && parseRoomDuration(h.maxAge) === undefined) {
    problems.push(
      `spec.history.maxAge: ${JSON.stringify(h.maxAge)} is not a duration like 24h or 7d`,
    );
  }
  if (h.maxBytes !== undefined && parseQuantity(h.maxBytes) === undefined) {
    problems.push(
      `spec.history.maxBytes: ${JSON.stringify(h.maxBytes)} is not a quantity like 256Mi`,
    );
  }
  if (h.maxMessages !== undefined && (!Number.isInteger(h.maxMessages) || h.maxMessages < 1)) {
    problems.push('spec.history.maxMessages: must be a positive integer');
  }
  if (h.replicas !== undefined && ![1, 3, 5].includes(h.replicas))
    problems.push('spec.history.replicas: must be 1, 3 or 5');
  const maxBytes = parseQuantity(h.maxBytes ?? ROOM_DEFAULTS.maxBytes);
  const maxMessages = h.maxMessages ?? ROOM_DEFAULTS.maxMessages;
  if (maxBytes !== undefined && Number.isInteger(maxMessages) && maxMessages >= 1)
    problems.push(...roomHistoryLimits(spec, { maxBytes, maxMessages }).problems);
  if (
    spec.media?.livekitRoom !== undefined &&
    !/^[A-Za-z0-9_.:-]{1,128}$/.test(spec.media.livekitRoom)
  ) {
    problems.push('spec.media.livekitRoom: use letters, digits and _ . : - (at most 128)');
  }
  return problems;
}

/** A role of the room: its grants after the room's features, and its permission templates. */
function compileRole(role: RoleSpec, features: CompiledRoomConfig['features']): CompiledRole {
  const chat = features.chat && role.chat === true;
  const whiteboard = features.whiteboard && role.whiteboard === true;
  const live = role.live !== false;
  return {
    moderator: role.moderator === true,
    chat,
    whiteboard,
    live,
    media: {
      canPublish: role.media?.canPublish === true,
      canSubscribe: role.media?.canSubscribe !== false,
      canPublishData: role.media?.canPublishData === true,
    },
    permissions: permissionTemplates({ chat, whiteboard, live }),
  };
}

/**
 * Compiles a valid spec (see {@link validateRoomSpec}) into the KV room config.
 * @throws Error when the spec is invalid
 */
export function compileRoom(name: string, spec: RoomSpec, source?: string): CompiledRoomConfig {
  const problems = validateRoomSpec(name, spec);
  if (problems.length > 0) throw new Error(problems.join('; '));
  const roomId = resolveRoomId(name, spec);
  const features = {
    chat: spec.features?.chat ?? true,
    whiteboard: spec.features?.whiteboard ?? true,
    raiseHand: spec.features?.raiseHand ?? true,
  };
  const roleSpecs = spec.roles ?? DEFAULT_ROLE_SPECS;
  const roles: Record<string, CompiledRole> = {};
  for (const [roleName, role] of Object.entries(roleSpecs))
    roles[roleName] = compileRole(role, features);
  const h = spec.history ?? {};
  const maxMessages = h.maxMessages ?? ROOM_DEFAULTS.maxMessages;
  const maxBytes = parseQuantity(h.maxBytes ?? ROOM_DEFAULTS.maxBytes) as number;
  const limits = roomHistoryLimits(spec, { maxBytes, maxMessages });
  return {
    version: 1,
    roomId,
    title: spec.title ?? roomId,
    maxParticipants: spec.maxParticipants ?? ROOM_DEFAULTS.maxParticipants,
    features,
    media: {
      livekitRoom: spec.media?.livekitRoom ?? roomId,
      broadcast: spec.media?.broadcast ?? false,
    },
    roles,
    history: {
      maxAgeMs: parseRoomDuration(h.maxAge ?? ROOM_DEFAULTS.maxAge) as number,
      maxMessages,
      maxBytes,
      storage: h.storage ?? ROOM_DEFAULTS.storage,
      replicas: h.replicas ?? ROOM_DEFAULTS.replicas,
      maxMessagesPerUser: limits.maxMessagesPerUser,
      maxMessageSize: limits.maxMessageSize,
    },
    ...(source !== undefined ? { source } : {}),
  };
}
/** Parses a KV room record; undefined when it is not a room config of a known version. */
export function parseRoomConfig(data: unknown): CompiledRoomConfig | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const c = data as Partial<CompiledRoomConfig>;
  if (
    c.version !== 1 ||
    typeof c.roomId !== 'string' ||
    typeof c.roles !== 'object' ||
    c.roles === null
  )
    return undefined;
  if (typeof c.maxParticipants !== 'number') return undefined;
  return c as CompiledRoomConfig;
}
