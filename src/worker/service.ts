/**
 * Platform endpoints (docs/platform.md): the NATS micro service `torii` in queue group `torii_queue`,
 * called by other backends (never by room clients, whose permissions exclude `torii.>`). Errors use
 * the micro protocol headers (`Nats-Service-Error-Code`, `Nats-Service-Error`). Every endpoint
 * also takes the NestJS transport's request envelope and answers it the way NestJS reads
 * (`nest-envelope.ts`), errors as `err: {code, message}`.
 */
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  describeError,
  ENDPOINT_STATUS,
  ErrorCode,
  isEndpointCode,
  ToriiError,
  type EndpointCode,
} from '../protocol/errors.js';
import { checkRoomId, checkUserId } from '../protocol/ids.js';
import { DELETE_MARKER_TTL, RoomIndex, type KvCache } from '../infra/kv.js';
import { inJoinOrder, participantOf } from '../domain/presence-batch.js';
import { accountConnz } from './connz.js';
import type { MediaRemover } from './media.js';
import {
  ENDPOINTS,
  MediaOutcome,
  ParticipantState,
  type EndpointReply,
  type EndpointRequest,
} from '../protocol/messages.js';
import { MAX_BLOCK_SECONDS, MAX_KICK_REASON_LENGTH } from '../protocol/limits.js';
import { nestError, nestResponse, readRequest, type Caller } from './nest-envelope.js';
import { occupiesSeat, type PresenceRecord } from '../domain/presence.js';
import type { CompiledRoomConfig } from '../domain/room-compile.js';
import {
  clientUserName,
  QUEUE_GROUP,
  SERVICE_NAME,
  ServiceSubject,
  Sys,
} from '../protocol/subjects.js';
import { MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS } from '../protocol/claims.js';
import type { KV } from '@nats-io/kv';
import { blockKey, type BlockRecord } from '../domain/blocks.js';
import { presenceKey } from '../domain/presence.js';
import { mintRoomToken, type TokenSigner } from '../infra/tokens.js';

/**
 * What a caller is told about a failure: Torii's code, the micro status
 * (`Nats-Service-Error-Code`) and the message.
 */
function failure(e: unknown): { code: EndpointCode; status: number; message: string } {
  // A refusal (a ToriiError with a code an endpoint answers, bad input included) keeps its code;
  // anything else is INTERNAL.
  const code = e instanceof ToriiError && isEndpointCode(e.code) ? e.code : ErrorCode.Internal;
  return { code, status: ENDPOINT_STATUS[code], message: describeError(e) };
}

/**
 * A request body as an endpoint reads it, not yet checked: only the fields of its request in the
 * contract, each of any type.
 */
type Unchecked<S extends ServiceSubject> = { [K in keyof EndpointRequest<S>]?: unknown };

interface ServiceDeps {
  rooms: KvCache<CompiledRoomConfig>;
  presence: KvCache<PresenceRecord>;
  /** The account of room clients (`--client-account`), whose connections a kick asks for. */
  clientAccount: string;
  /** KV `torii_blocks`. */
  blocks: KV;
  /** System-account connection for kicks; kicks are refused without it. */
  sys: NatsConnection | undefined;
  /** Removes kicked users from LiveKit; undefined without a media server. */
  media: MediaRemover | undefined;
  blockTtlMs: number;
  signer: TokenSigner | undefined;
  token: { issuer: string; audience: string; ttlMs: number };
  version: string;
}

/** Asks the server holding a connection to close it. */
export async function kickConnection(
  sys: NatsConnection,
  serverId: string,
  cid: number,
): Promise<void> {
  const r = await sys.request(Sys.kick(serverId), JSON.stringify({ cid }), { timeout: 2_000 });
  const err = r.json<{ error?: { description?: string } }>().error?.description;
  if (err) throw new Error(err);
}

/** How long a kick waits for more servers' CONNZ answers after the last one, in milliseconds. */
const CONNZ_STALL_MS = 200;
/** How long a kick waits for CONNZ answers at most, in milliseconds. */
const CONNZ_MAX_WAIT_MS = 2_000;
/** Connections of one user a server reports at most. */
const CONNZ_USER_LIMIT = 1_000;
/** Connections of the clients account a server reports at most, when a whole room is kicked. */
const CONNZ_ROOM_LIMIT = 100_000;

/** A connection as the servers name it. */
interface ServerConnection {
  server: string;
  cid: number;
}

/**
 * Every connection the servers hold for a user of a room, or for every user of the room without
 * `userId`, asked of each server (`$SYS.REQ.ACCOUNT.{account}.CONNZ`, by the JWT name
 * `{roomId}/{userId}`): also those admitted so recently, or whose connect events went so astray,
 * that presence has not recorded them. Each names its user.
 */
export async function roomConnections(
  sys: NatsConnection,
  account: string,
  roomId: string,
  userId?: string,
): Promise<(ServerConnection & { userId: string })[]> {
  // The server filters by one user name; a whole room is filtered here by its names' prefix.
  const user = userId !== undefined ? clientUserName(roomId, userId) : undefined;
  const prefix = clientUserName(roomId, '');
  const answers = await accountConnz(
    sys,
    account,
    user !== undefined ? { user, limit: CONNZ_USER_LIMIT } : { limit: CONNZ_ROOM_LIMIT },
    { stallMs: CONNZ_STALL_MS, maxWaitMs: CONNZ_MAX_WAIT_MS },
  );
  const found: (ServerConnection & { userId: string })[] = [];
  for (const answer of answers) {
    for (const c of answer.connections)
      if (
        user !== undefined
          ? c.user === user
          : c.user.startsWith(prefix) && !c.user.includes('/', prefix.length)
      )
        found.push({ server: answer.server, cid: c.cid, userId: c.user.slice(prefix.length) });
  }
  return found;
}

/**
 * Kicks each connection once (presence's and the servers' lists overlap); resolves with how many
 * the servers closed.
 */
export async function kickAll(
  sys: NatsConnection,
  lists: Promise<ServerConnection[]>[],
): Promise<number> {
  const seen = new Set<string>();
  const kicks: Promise<boolean>[] = [];
  const kick = (cs: ServerConnection[]): void => {
    for (const c of cs) {
      const id = `${c.server}/${c.cid}`;
      if (seen.has(id)) continue;
      seen.add(id);
      kicks.push(
        kickConnection(sys, c.server, c.cid).then(
          () => true,
          () => false,
        ),
      );
    }
  };
  // Each list is kicked as soon as it is known: what presence knows goes at once.
  await Promise.all(lists.map((l) => l.then(kick, () => undefined)));
  return (await Promise.all(kicks)).filter(Boolean).length;
}

/**
 * The nats.js service framework's statistics of one endpoint. It counts only what its callback
 * does before returning, and an error only when the callback throws; endpoints here answer
 * asynchronously, so they add their own processing time and errors.
 */
interface EndpointStatsInternals {
  num_requests: number;
  processing_time: number;
  average_processing_time: number;
  countError(err: Error): void;
}

function endpointStats(srv: Service, name: string): EndpointStatsInternals | undefined {
  const handlers = (srv as unknown as { handlers?: { name?: unknown; stats?: unknown }[] })
    .handlers;
  const s = handlers?.find((h) => h.name === name)?.stats as
    Partial<EndpointStatsInternals> | undefined;
  return typeof s?.processing_time === 'number' &&
    typeof s.num_requests === 'number' &&
    typeof s.countError === 'function'
    ? (s as EndpointStatsInternals)
    : undefined;
}

/** Writes `key` so that it expires after `ttlMs` (rounded up to whole seconds). */
export async function putExpiring(
  kv: KV,
  key: string,
  value: string,
  ttlMs: number,
): Promise<void> {
  const ttl = `${Math.ceil(ttlMs / 1000)}s`;
  // A TTL can only come with a create: remove what is there first (its marker expires too).
  const e = await kv.get(key);
  if (e?.operation === 'PUT') await kv.purge(key, { ttl: DELETE_MARKER_TTL });
  await kv.create(key, value, ttl);
}

/**
 * An optional duration of a request, a whole number of seconds from `min` (to `max`) as the
 * contract has it (a number, not text); in milliseconds, undefined when absent.
 */
function secondsOf(v: unknown, field: string, min: number, max?: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || (max !== undefined && v > max))
    throw new ToriiError(
      ErrorCode.BadRequest,
      `${field}: a whole number of seconds, ${max === undefined ? `at least ${min}` : `${min} to ${max}`}`,
    );
  return v * 1000;
}

function body(req: unknown): Record<string, unknown> {
  if (req === undefined) return {};
  if (typeof req === 'object' && req !== null && !Array.isArray(req))
    return req as Record<string, unknown>;
  throw new ToriiError(ErrorCode.BadRequest, 'request body must be a JSON object');
}

/** Answers `msg` in its caller's form: NestJS reads its envelope, micro clients the body. */
function answer<S extends ServiceSubject>(
  msg: ServiceMsg,
  caller: Caller,
  result: EndpointReply<S>,
): void {
  msg.respond(caller.kind === 'nest' ? nestResponse(caller.id, result) : JSON.stringify(result));
}

/**
 * Refuses `msg`: the micro headers for every caller, and for NestJS also a body it reads as an
 * error (an empty body is "Empty response" to it).
 */
function refuse(msg: ServiceMsg, caller: Caller, f: ReturnType<typeof failure>): void {
  if (caller.kind === 'nest')
    msg.respondError(
      f.status,
      f.message,
      nestError(caller.id, { code: f.code, message: f.message }),
    );
  else msg.respondError(f.status, f.message);
}

function summary(
  r: CompiledRoomConfig,
  participants: number,
): EndpointReply<typeof ServiceSubject.RoomsGet> {
  return {
    roomId: r.roomId,
    title: r.title,
    maxParticipants: r.maxParticipants,
    participants,
    features: r.features,
    roles: Object.keys(r.roles),
    media: r.media,
  };
}

export async function startService(nc: NatsConnection, d: ServiceDeps): Promise<Service> {
  const srv = await new Svcm(nc).add({
    name: SERVICE_NAME,
    version: d.version,
    description: 'Torii room control plane',
    queue: QUEUE_GROUP,
  });
  // Seat-holders by room: listing or counting a room's participants costs that room's size.
  const present = new RoomIndex(d.presence, occupiesSeat);
  const participants = (
    roomId: string,
  ): EndpointReply<typeof ServiceSubject.RoomsParticipants>['participants'] =>
    inJoinOrder(
      [...present.room(roomId).values()].map((p) => ({
        ...participantOf(p),
        // Seat-holders only: none has left.
        state: p.state === ParticipantState.Away ? ParticipantState.Away : ParticipantState.Online,
      })),
    );
  const room = (req: { roomId?: unknown }): CompiledRoomConfig => {
    const roomId = checkRoomId(req.roomId, 'roomId');
    const r = d.rooms.get(roomId);
    if (!r) throw new ToriiError(ErrorCode.NotFound, `room ${roomId} does not exist`);
    return r;
  };
  const endpoint = <S extends ServiceSubject>(
    subject: S,
    fn: (req: Unchecked<S>) => EndpointReply<S> | Promise<EndpointReply<S>>,
  ): void => {
    const name = ENDPOINTS[subject].name;
    // Filled right after the endpoint is added, before its first request.
    const counted: { stats?: EndpointStatsInternals } = {};
    srv.addEndpoint(name, {
      subject,
      handler: (err, msg) => {
        if (err) return;
        const started = process.hrtime.bigint();
        void (async () => {
          let caller: Caller = { kind: 'micro' };
          try {
            let req;
            try {
              req = readRequest(subject, msg.data);
            } catch {
              throw new ToriiError(ErrorCode.BadRequest, 'request body must be a JSON object');
            }
            caller = req.caller;
            answer<S>(msg, caller, await fn(body(req.body)));
          } catch (e) {
            const f = failure(e);
            refuse(msg, caller, f);
            counted.stats?.countError(new Error(`${f.status}:${f.message}`));
          } finally {
            const stats = counted.stats;
            if (stats) {
              stats.processing_time += Number(process.hrtime.bigint() - started);
              stats.average_processing_time = Math.round(
                stats.processing_time / Math.max(1, stats.num_requests),
              );
            }
          }
        })();
      },
    });
    counted.stats = endpointStats(srv, name);
    if (!counted.stats)
      throw new Error(`no statistics for endpoint ${name}: nats.js services changed`);
  };
  endpoint(ServiceSubject.RoomsList, () =>
    [...d.rooms.entries()].map(([, r]) => summary(r, present.room(r.roomId).size)),
  );
  endpoint(ServiceSubject.RoomsGet, (req) => {
    const r = room(req);
    return summary(r, present.room(r.roomId).size);
  });
  endpoint(ServiceSubject.RoomsParticipants, (req) => ({
    roomId: room(req).roomId,
    participants: participants(room(req).roomId),
  }));
  endpoint(ServiceSubject.RoomsKick, async (req) => {
    if (!d.sys)
      throw new ToriiError(
        ErrorCode.Unavailable,
        'kicks need the system user (presence) on this worker',
      );
    const roomId = checkRoomId(req.roomId, 'roomId');
    const userId = checkUserId(req.userId, 'userId');
    if (
      req.reason !== undefined &&
      (typeof req.reason !== 'string' || req.reason.length > MAX_KICK_REASON_LENGTH)
    ) {
      throw new ToriiError(
        ErrorCode.BadRequest,
        `reason: a string of at most ${MAX_KICK_REASON_LENGTH} characters`,
      );
    }
    const ttlMs =
      secondsOf(req.durationSeconds, 'durationSeconds', 1, MAX_BLOCK_SECONDS) ?? d.blockTtlMs;
    const now = new Date();
    const until = new Date(now.getTime() + ttlMs).toISOString();
    const block: BlockRecord = {
      roomId,
      userId,
      reason: typeof req.reason === 'string' ? req.reason : 'kicked',
      by: ServiceSubject.RoomsKick,
      createdAt: now.toISOString(),
      until,
    };
    // Block first, so that a reconnect racing the kick is refused by the callout. The record
    // expires with the block (`Nats-TTL`; the bucket then files a delete marker, which every
    // cache sees and which expires too), so nothing of it stays. A block in force is replaced.
    await putExpiring(d.blocks, blockKey(roomId, userId), JSON.stringify(block), ttlMs);
    const sys = d.sys;
    // What presence knows is kicked at once; the servers are asked meanwhile for connections
    // it has not recorded (admitted just before the block, or whose connect event is late),
    // which would otherwise keep their JWT until it expires.
    const kicked = await kickAll(sys, [
      Promise.resolve(d.presence.get(presenceKey(roomId, userId))?.connections ?? []),
      roomConnections(sys, d.clientAccount, roomId, userId),
    ]);
    // Media last: LiveKit being slow or down must not delay closing the NATS side.
    const livekitRoom = d.rooms.get(roomId)?.media.livekitRoom;
    const media = !d.media
      ? MediaOutcome.Off
      : livekitRoom === undefined
        ? MediaOutcome.Absent
        : await d.media.kick(livekitRoom, userId, now.getTime() + ttlMs);
    return {
      roomId,
      userId,
      kicked,
      blockedUntil: until,
      media,
    };
  });
  endpoint(ServiceSubject.TokensIssue, async (req) => {
    if (!d.signer)
      throw new ToriiError(ErrorCode.Unavailable, 'token signing is not configured on this worker');
    const r = room(req);
    const userId = checkUserId(req.userId, 'userId');
    if (typeof req.role !== 'string' || !Object.hasOwn(r.roles, req.role))
      throw new ToriiError(ErrorCode.BadRequest, `role: one of ${Object.keys(r.roles).join(', ')}`);
    if (req.name !== undefined && typeof req.name !== 'string')
      throw new ToriiError(ErrorCode.BadRequest, 'name: a string');
    const ttlMs =
      secondsOf(req.ttlSeconds, 'ttlSeconds', MIN_TOKEN_TTL_MS / 1000, MAX_TOKEN_TTL_MS / 1000) ??
      d.token.ttlMs;
    const now = new Date();
    const token = await mintRoomToken(
      d.signer,
      {
        room: r.roomId,
        sub: userId,
        role: req.role,
        ...(typeof req.name === 'string' ? { name: req.name } : {}),
      },
      { ttlMs, issuer: d.token.issuer, audience: d.token.audience, now: () => now },
    );
    return { token, expiresAt: new Date(now.getTime() + ttlMs).toISOString() };
  });
  return srv;
}
