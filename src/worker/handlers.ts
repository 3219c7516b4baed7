/**
 * Room event handlers (docs/protocol.md). Identity comes from the subject; the payload only carries
 * options. Each handler returns the answer data and the broadcasts to send; the pool publishes
 * them (deduplicated) and acks. State changes go through KV compare-and-set keyed by the
 * message's stream sequence, so a redelivered or stale event changes nothing twice.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { AccessToken } from 'livekit-server-sdk';
import { Broadcast, RequestEvent } from '../protocol/events.js';
import { isBlockActive, type BlockRecord } from '../domain/blocks.js';
import { TrustedCache } from '../domain/trusted-cache.js';
import { casUpdate, CasConflictError, lastValues, RoomIndex, type KvCache } from '../infra/kv.js';
import { isValidId } from '../protocol/ids.js';
import {
  isRequestEvent,
  type AnswerData,
  type BroadcastOf,
  type PlatformMessage,
} from '../protocol/messages.js';
import { MAX_NOTE_LENGTH } from '../protocol/limits.js';
import {
  checkPageRequest,
  DEFAULT_LARGE_ROOM_THRESHOLD,
  inJoinOrder,
  isLargeRoom,
  PageRequestError,
  pageOf,
  participantOf,
  relevantParticipants,
  type ParticipantEntry,
} from '../domain/presence-batch.js';
import {
  applyPresence,
  occupiesSeat,
  parsePresence,
  presenceKey,
  type PresenceRecord,
} from '../domain/presence.js';
import {
  devicesKey,
  handKey,
  handsFilter,
  memberKey,
  parseDevices,
  parseHand,
  parseMember,
  renewKey,
  type HandRecord,
  type MemberRecord,
  type RaisedHand,
} from '../domain/room-state.js';
import type { CompiledRole, CompiledRoomConfig } from '../domain/room-compile.js';
import { blockKey } from '../domain/blocks.js';
import {
  Bucket,
  DEVICE_ID_RULE,
  deviceConsumerName,
  isValidDeviceId,
  PlatformEvent,
  roomStreamName,
} from '../protocol/subjects.js';
import {
  consumerState,
  ensureConsumer,
  restoreConsumer,
  userConsumerConfig,
} from '../infra/streams.js';
import { ErrorCode, ToriiError, ValidationError } from '../protocol/errors.js';
import { mintRoomToken, type TokenSigner } from '../infra/tokens.js';
import { parseBudget, takeTokens, type RateLimit } from '../domain/rate.js';
import { decodeJwt } from 'jose';

/** What one handled event `E` produces: its answer's data as the contract (messages.ts) says. */
export interface HandlerResult<E extends RequestEvent = RequestEvent> {
  data: AnswerData<E>;
  broadcasts: BroadcastOf[];
  /**
   * Platform events of a change this handler stored (its compare-and-set won); none for an
   * event that changed nothing, so a redelivered event is not told twice.
   */
  platform?: PlatformMessage[];
}

/** LiveKit settings; media requests fail with NOT_FOUND without them. */
export interface LiveKitSettings {
  url: string;
  apiKey: string;
  apiSecret: string;
  /** Lifetime of media tokens, in seconds. */
  ttlSeconds: number;
}

interface HandlerDeps {
  rooms: KvCache<CompiledRoomConfig>;
  presence: KvCache<PresenceRecord>;
  blocks: KvCache<BlockRecord>;
  roomState: KV;
  /** JetStream of the APP account, for reads that must not make a consumer. */
  jsm: JetStreamManager;
  /** Signs renewed room tokens. */
  signer: TokenSigner | undefined;
  token: { issuer: string; audience: string; ttlMs: number };
  livekit: LiveKitSettings | undefined;
  /** Least time between two renewals of one user, in milliseconds. */
  renewIntervalMs: number;
  /**
   * The inactive threshold of a restored user consumer, in milliseconds: the callout's
   * `--consumer-inactive-threshold` (the callout sets it again at the user's next admission).
   */
  consumerInactiveThresholdMs: number;
  /**
   * Changes a user may make to its own hand: a bucket of `burst`, one more every `refillMs`
   * (`--hand-changes` per `--hand-window`). A moderator lowering another's hand draws nothing.
   */
  handLimit: RateLimit;
  /**
   * How long after a departure `REQ_LEAVE` made immediate another is not honoured, in
   * milliseconds (`--leave-window`; see `applyPresence`).
   */
  leaveWindowMs: number;
  /**
   * Members present above which the initial data lists only the participants that matter, with
   * the count (`--large-room-threshold`; {@link DEFAULT_LARGE_ROOM_THRESHOLD} when omitted).
   */
  largeRoomThreshold?: number;
  /** Last sequence of a room's stream (for `snapshotSeq`). */
  roomLastSeq: (roomId: string) => Promise<number>;
  now: () => Date;
}

/** One event to handle. */
interface EventContext {
  roomId: string;
  userId: string;
  /**
   * The role of the connection that sent the event, from its subject
   * (`sysJsWorker.{roomId}.{userId}.{role}`), where the server lets only connections admitted
   * with that role publish.
   */
  role: string;
  event: string;
  data: Record<string, unknown>;
  /** Stream sequence of the message in `sysJsWorker`. */
  seq: number;
}

/** Default hand changes per {@link DEFAULT_HAND_WINDOW_MS} of one user (`--hand-changes`). */
export const DEFAULT_HAND_CHANGES = 5;
/**
 * Default window of {@link DEFAULT_HAND_CHANGES}, in milliseconds (`--hand-window`): five changes
 * at once (raise, lower, raise, lower, raise), then one every 12 s.
 */
export const DEFAULT_HAND_WINDOW_MS = 60_000;
/**
 * Bytes an answer adds around its data (`{"event":…,"id":…,"ok":true,"data":…}`, an id of 64
 * characters and the longest event name), with a margin.
 */
const ANSWER_ENVELOPE_BYTES = 512;

/** How long a member record is trusted before it is read again, in milliseconds. */
const MEMBER_CACHE_TTL_MS = 10_000;
/** Bound on cached member records (a few hundred bytes each). */
const MAX_CACHED_MEMBERS = 100_000;

export class Handlers {
  /** Member records read, by key; at most {@link MAX_CACHED_MEMBERS}. */
  private readonly members = new TrustedCache<string, MemberRecord>({
    maxEntries: MAX_CACHED_MEMBERS,
  });

  /** Presence by room: a room's participant list costs the room's size, not the bucket's. */
  private readonly present: RoomIndex<PresenceRecord>;

  constructor(private readonly d: HandlerDeps) {
    this.present = new RoomIndex(d.presence, occupiesSeat);
  }

  async handle(ctx: EventContext): Promise<HandlerResult> {
    const room = this.d.rooms.get(ctx.roomId);
    if (!room) throw new ToriiError(ErrorCode.NotFound, `room ${ctx.roomId} does not exist`);
    // The role is the sending connection's (the subject's), never the member record's: that
    // record is shared by all of the user's connections, and the last admission wrote it.
    const role = Object.hasOwn(room.roles, ctx.role) ? room.roles[ctx.role] : undefined;
    if (!role)
      throw new ToriiError(
        ErrorCode.Forbidden,
        `role ${ctx.role} is not defined in room ${ctx.roomId}`,
      );
    const name = await this.member(ctx.roomId, ctx.userId);
    const me: MemberRecord = {
      roomId: ctx.roomId,
      userId: ctx.userId,
      role: ctx.role,
      ...(name !== undefined ? { name } : {}),
    };
    if (!isRequestEvent(ctx.event))
      throw new ToriiError(ErrorCode.UnknownEvent, `unknown event ${ctx.event}`);
    // One handler per event of the contract, each typed to return that event's answer.
    const only = <E extends RequestEvent>(data: AnswerData<E>): HandlerResult<E> => ({
      data,
      broadcasts: [],
    });
    const handlers: { [E in RequestEvent]: () => Promise<HandlerResult<E>> } = {
      [RequestEvent.InitialData]: async () => only(await this.initialData(room, me, role)),
      [RequestEvent.MediaServerData]: async () => only(await this.media(room, me)),
      [RequestEvent.RenewToken]: async () => only(await this.renew(room, me)),
      [RequestEvent.RaiseHand]: () => this.raiseHand(room, ctx),
      [RequestEvent.LowerHand]: () => this.lowerHand(ctx, role.moderator),
      [RequestEvent.Leave]: async () => only(await this.markLeaving(ctx.roomId, ctx.userId)),
      [RequestEvent.RestoreConsumer]: async () => only(await this.restoreConsumer(ctx)),
      [RequestEvent.Participants]: async () => only(await this.participantsPage(room, ctx)),
    };
    return handlers[ctx.event]();
  }

  /**
   * The user's display name from its member record, if the callout wrote one. Only a name: the
   * record authorizes nothing, and a user without one is served under its id.
   */
  private async member(roomId: string, userId: string): Promise<string | undefined> {
    const key = memberKey(roomId, userId);
    const hit = this.members.get(key);
    if (hit) return hit.name;
    const e = await this.d.roomState.get(key);
    const m = e?.operation === 'PUT' ? parseMember(e.json()) : undefined;
    if (!m) {
      this.members.forget(key);
      return undefined;
    }
    this.members.trust(key, m, MEMBER_CACHE_TTL_MS);
    return m.name;
  }

  /**
   * Restores the sender's consumer (its own or one of its devices') when no server serves it: its
   * one server died, and the client can neither catch up from it nor move it. One that does not
   * exist (deleted after its inactive threshold while a catch-up was failing) is created, but only
   * the sender's own or that of a device on its device list, which the callout bounds at
   * admission; any other device is told to connect again (the callout then lists it).
   */
  private async restoreConsumer(
    ctx: EventContext,
  ): Promise<AnswerData<typeof RequestEvent.RestoreConsumer>> {
    const deviceId = ctx.data.deviceId;
    if (deviceId !== undefined && !isValidDeviceId(deviceId))
      throw new ToriiError(ErrorCode.BadRequest, `deviceId: ${DEVICE_ID_RULE}`);
    const consumer = deviceConsumerName(ctx.userId, deviceId as string | undefined);
    const stream = roomStreamName(ctx.roomId);
    const config = userConsumerConfig(
      ctx.roomId,
      ctx.userId,
      this.d.consumerInactiveThresholdMs,
      consumer,
    );
    const state = await consumerState(this.d.jsm, stream, consumer);
    if (state === 'missing') {
      if (deviceId !== undefined && !(await this.listsDevice(ctx, deviceId as string)))
        throw new ToriiError(
          ErrorCode.NotFound,
          `device ${deviceId as string} is not on the device list: connect again to have it listed`,
        );
      await ensureConsumer(this.d.jsm, stream, config);
      return { consumer, restored: true };
    }
    if (state === 'ok') return { consumer, restored: false };
    // offline or unserved: its one server died
    await restoreConsumer(this.d.jsm, stream, config);
    return { consumer, restored: true };
  }

  /** Whether the sender's device list (kept by the callout) names `deviceId`. */
  private async listsDevice(ctx: EventContext, deviceId: string): Promise<boolean> {
    const e = await this.d.roomState.get(devicesKey(ctx.roomId, ctx.userId));
    if (!e || e.operation !== 'PUT') return false;
    try {
      return parseDevices(e.json()).includes(deviceId);
    } catch {
      return false;
    }
  }

  private async initialData(
    room: CompiledRoomConfig,
    me: MemberRecord,
    role: CompiledRole,
  ): Promise<AnswerData<typeof RequestEvent.InitialData>> {
    // Taken before the state is read: a client ignores broadcasts at or below it, and anything
    // that happened after it is both in the state and above it, so nothing is lost.
    const snapshotSeq = await this.d.roomLastSeq(room.roomId);
    const all = this.participantsOf(room.roomId);
    const hands = await this.readHands(room.roomId);
    // A lecture hall's answer lists who matters to a member, not all: n joins each answered with
    // everyone would cost O(n²); the rest is paged with REQ_PARTICIPANTS.
    const large = isLargeRoom(
      all.length,
      this.d.largeRoomThreshold ?? DEFAULT_LARGE_ROOM_THRESHOLD,
    );
    const participants = large
      ? relevantParticipants(all, {
          moderatorRoles: new Set(
            Object.entries(room.roles)
              .filter(([, r]) => r.moderator)
              .map(([name]) => name),
          ),
          hands: new Set(hands.map((h) => h.userId)),
        })
      : all;
    const data = {
      room: { id: room.roomId, title: room.title, features: room.features },
      me: {
        userId: me.userId,
        role: me.role,
        permissions: {
          chat: role.chat,
          whiteboard: role.whiteboard,
          moderator: role.moderator,
          raiseHand: room.features.raiseHand,
          media: role.media,
        },
      },
      participants,
      participantCount: all.length,
      ...(large ? { participantsPartial: true as const } : {}),
      hands,
      snapshotSeq,
    };
    // Notes are the one part members write, and the answer is stored in the room stream, whose
    // largest message is the room's `history.maxMessageSize`: members raising hands with long
    // notes must not make the initial data too large for everyone. Without the notes the answer
    // is what the size was chosen for (room-history.ts); the notes stay in the hand-raise
    // broadcasts.
    const limit = room.history.maxMessageSize;
    if (
      typeof limit === 'number' &&
      Buffer.byteLength(JSON.stringify(data)) > limit - ANSWER_ENVELOPE_BYTES
    ) {
      return {
        ...data,
        hands: hands.map((h) => ({ ...h, note: '' })),
        notesOmitted: true as const,
      };
    }
    return data;
  }

  /** Members present in a room, in join order. */
  private participantsOf(roomId: string): ParticipantEntry[] {
    const all: ParticipantEntry[] = [];
    for (const p of this.present.room(roomId).values())
      if (occupiesSeat(p)) all.push(participantOf(p));
    return inJoinOrder(all);
  }

  /**
   * `REQ_PARTICIPANTS`: a page of the participants in join order, after the request's cursor,
   * with the count and the room stream sequence it was read at (a change broadcast above it is
   * newer than the page).
   */
  private async participantsPage(
    room: CompiledRoomConfig,
    ctx: EventContext,
  ): Promise<AnswerData<typeof RequestEvent.Participants>> {
    let req: ReturnType<typeof checkPageRequest>;
    try {
      req = checkPageRequest(ctx.data);
    } catch (e) {
      if (e instanceof PageRequestError) throw new ToriiError(ErrorCode.BadRequest, e.message);
      throw e;
    }
    const snapshotSeq = await this.d.roomLastSeq(room.roomId);
    const page = pageOf(
      this.participantsOf(room.roomId),
      req.after,
      req.limit,
      room.history.maxMessageSize - ANSWER_ENVELOPE_BYTES,
    );
    return { ...page, snapshotSeq };
  }

  /**
   * Refuses a blocked user: its connections are being closed, but an event it sent before (or a
   * connection the kick has not reached yet) must not get it a fresh token.
   */
  private refuseBlocked(room: CompiledRoomConfig, me: MemberRecord, now: Date): void {
    const block = this.d.blocks.get(blockKey(room.roomId, me.userId));
    if (block && isBlockActive(block, now))
      throw new ToriiError(ErrorCode.Forbidden, `${me.userId} is blocked in room ${room.roomId}`);
  }

  private async media(
    room: CompiledRoomConfig,
    me: MemberRecord,
  ): Promise<AnswerData<typeof RequestEvent.MediaServerData>> {
    const lk = this.d.livekit;
    if (!lk) throw new ToriiError(ErrorCode.NotFound, 'no media server is configured');
    this.refuseBlocked(room, me, this.d.now());
    const grants = room.roles[me.role]?.media;
    // Grants follow the role: in a broadcast room only presenters have canPublish (the compiled
    // roles say who), and `broadcast` goes to the client as the layout to show (docs/decisions.md).
    const canPublish = grants?.canPublish === true;
    const at = new AccessToken(lk.apiKey, lk.apiSecret, {
      identity: me.userId,
      name: me.name ?? me.userId,
      ttl: lk.ttlSeconds,
    });
    at.addGrant({
      roomJoin: true,
      room: room.media.livekitRoom,
      canPublish,
      canSubscribe: grants?.canSubscribe !== false,
      canPublishData: grants?.canPublishData === true,
    });
    const token = await at.toJwt();
    const exp = decodeJwt(token).exp ?? 0;
    return {
      url: lk.url,
      token,
      room: room.media.livekitRoom,
      identity: me.userId,
      expiresAt: new Date(exp * 1000).toISOString(),
      broadcast: room.media.broadcast,
    };
  }

  private async renew(
    room: CompiledRoomConfig,
    me: MemberRecord,
  ): Promise<AnswerData<typeof RequestEvent.RenewToken>> {
    if (!this.d.signer)
      throw new ToriiError(ErrorCode.NotFound, 'token renewal is not configured on this worker');
    const now = this.d.now();
    this.refuseBlocked(room, me, now);
    // Minted before the rate stamp is written: a stamp followed by a refusal would leave the user
    // nothing but RATE_LIMITED until the interval passes, and then the same refusal again.
    let token: string;
    try {
      token = await mintRoomToken(
        this.d.signer,
        {
          room: room.roomId,
          sub: me.userId,
          role: me.role,
          ...(me.name !== undefined ? { name: me.name } : {}),
        },
        {
          ttlMs: this.d.token.ttlMs,
          issuer: this.d.token.issuer,
          audience: this.d.token.audience,
          now: this.d.now,
        },
      );
    } catch (e) {
      if (e instanceof ValidationError)
        throw new ToriiError(ErrorCode.BadRequest, `cannot renew: ${e.message}`);
      throw e;
    }
    // At most one renewal per user per interval, across replicas: compare-and-set on a stamp.
    // A replica that loses the race reads the winner's stamp and refuses; an outage is an error.
    const stamp = (d: unknown): { at: number } | undefined => {
      const at = Number((d as { at?: unknown } | null)?.at);
      return Number.isFinite(at) ? { at } : undefined;
    };
    const { step } = await casUpdate(
      this.d.roomState,
      renewKey(room.roomId, me.userId),
      stamp,
      (cur) =>
        cur && now.getTime() - cur.at < this.d.renewIntervalMs
          ? undefined
          : { put: { at: now.getTime() } },
    );
    if (!step) throw new ToriiError(ErrorCode.RateLimited, 'renewed too recently');
    return { token, expiresAt: new Date(now.getTime() + this.d.token.ttlMs).toISOString() };
  }

  /** Raised hands of a room, in the order they were raised (read from KV, not a cache). */
  private async readHands(roomId: string): Promise<RaisedHand[]> {
    const hands: RaisedHand[] = [];
    const filter = handsFilter(roomId);
    for (const [key, value] of await lastValues(this.d.jsm, Bucket.RoomState, filter)) {
      const h = parseHand(value);
      if (h?.raised && h.raisedAt)
        hands.push({
          userId: key.slice(key.lastIndexOf('.') + 1),
          raisedAt: h.raisedAt,
          note: h.note ?? '',
        });
    }
    return hands.sort(
      (a, b) => a.raisedAt.localeCompare(b.raisedAt) || a.userId.localeCompare(b.userId),
    );
  }

  /**
   * Applies `change` to one user's hand with compare-and-set keyed by the event's stream sequence;
   * returns whether the hand changed (false for no-ops and already-applied events). A change the
   * hand's owner makes draws a token from the owner's bucket, stored in the same record, so the
   * bound holds across replicas; without one it fails with RATE_LIMITED and writes nothing.
   */
  private async changeHand(
    roomId: string,
    userId: string,
    seq: number,
    byOwner: boolean,
    change: (h: HandRecord) => boolean,
  ): Promise<boolean> {
    let changed = false;
    let retryInMs = 0;
    try {
      await casUpdate(this.d.roomState, handKey(roomId, userId), parseHand, (h) => {
        // What the last call decides is what was written: a conflict re-reads, and a read that
        // finds the event applied (by another delivery) changed nothing here.
        changed = false;
        retryInMs = 0;
        const current = h ?? { raised: false, appliedSeq: 0 };
        if (current.appliedSeq >= seq) return undefined;
        const next = { ...current };
        changed = change(next);
        next.appliedSeq = seq;
        // A no-op costs nothing: it broadcasts nothing.
        if (changed && byOwner) {
          const t = takeTokens(
            parseBudget(current.budget),
            this.d.now().getTime(),
            this.d.handLimit,
          );
          if (!t.ok) {
            changed = false;
            retryInMs = t.retryInMs;
            return undefined;
          }
          next.budget = t.next;
        }
        return { put: next };
      });
    } catch (e) {
      if (e instanceof CasConflictError)
        throw new ToriiError(ErrorCode.Conflict, 'hand state is busy; try again');
      throw e;
    }
    if (retryInMs > 0) {
      const { burst, refillMs } = this.d.handLimit;
      throw new ToriiError(
        ErrorCode.RateLimited,
        `hand changed too often: at most ${burst} changes, then one every ${Math.ceil(refillMs / 1000)} s; try again in ${Math.ceil(retryInMs / 1000)} s`,
      );
    }
    return changed;
  }

  /**
   * Flags the presence record so that the user's last connection closing means left at once;
   * `immediate` is false when the user left at once within the leave window, and its departure
   * takes the grace period instead (so a rejoin within it announces nothing).
   */
  private async markLeaving(
    roomId: string,
    userId: string,
  ): Promise<AnswerData<typeof RequestEvent.Leave>> {
    const at = this.d.now().toISOString();
    let immediate = false;
    await casUpdate(this.d.presence.bucket, presenceKey(roomId, userId), parsePresence, (r) => {
      const next = applyPresence(r, roomId, userId, {
        type: 'leave_requested',
        at,
        windowMs: this.d.leaveWindowMs,
      }).next;
      immediate = next?.leaving === true || r?.leaving === true;
      return next ? { put: next } : undefined;
    });
    return { immediate };
  }

  private async raiseHand(
    room: CompiledRoomConfig,
    ctx: EventContext,
  ): Promise<HandlerResult<typeof RequestEvent.RaiseHand>> {
    if (!room.features.raiseHand)
      throw new ToriiError(ErrorCode.Forbidden, 'raising hands is disabled in this room');
    const note = ctx.data.note ?? '';
    if (typeof note !== 'string' || note.length > MAX_NOTE_LENGTH)
      throw new ToriiError(
        ErrorCode.BadRequest,
        `note: a string of at most ${MAX_NOTE_LENGTH} characters`,
      );
    const raisedAt = this.d.now().toISOString();
    const raised = await this.changeHand(ctx.roomId, ctx.userId, ctx.seq, true, (h) => {
      if (h.raised) return false;
      Object.assign(h, { raised: true, raisedAt, note });
      return true;
    });
    return {
      data: {},
      broadcasts: raised
        ? [{ event: Broadcast.HandRaised, data: { userId: ctx.userId, raisedAt, note } }]
        : [],
      platform: raised
        ? [
            {
              event: PlatformEvent.HandRaised,
              data: { roomId: ctx.roomId, userId: ctx.userId, note, at: raisedAt },
            },
          ]
        : [],
    };
  }

  private async lowerHand(
    ctx: EventContext,
    moderator: boolean,
  ): Promise<HandlerResult<typeof RequestEvent.LowerHand>> {
    const target = ctx.data.userId ?? ctx.userId;
    if (!isValidId(target)) throw new ToriiError(ErrorCode.BadRequest, 'userId: a valid user id');
    if (target !== ctx.userId && !moderator)
      throw new ToriiError(ErrorCode.Forbidden, "only moderators may lower another user's hand");
    const at = this.d.now().toISOString();
    const lowered = await this.changeHand(
      ctx.roomId,
      target,
      ctx.seq,
      target === ctx.userId,
      (h) => {
        if (!h.raised) return false;
        h.raised = false;
        delete h.raisedAt;
        delete h.note;
        return true;
      },
    );
    return {
      data: {},
      broadcasts: lowered
        ? [{ event: Broadcast.HandLowered, data: { userId: target, by: ctx.userId } }]
        : [],
      platform: lowered
        ? [
            {
              event: PlatformEvent.HandLowered,
              data: { roomId: ctx.roomId, userId: target, by: ctx.userId, at },
            },
          ]
        : [],
    };
  }
}
