/**
 * The auth callout service (docs/auth-callout.md): receives the server's authorization requests on
 * `$SYS.REQ.USER.AUTH` (queue group `torii_queue`), verifies the room token, checks the room,
 * role, blocks, the user's connections (connections.ts) and its seat (claimed atomically across
 * replicas, seats.ts), ensures the user's consumer, and answers with a NATS user JWT whose
 * permissions cover one room and one user. Every refusal is an authorization response with an
 * error; its reason is logged and counted but never sent to the client.
 */
import { TrustedCache } from '../domain/trusted-cache.js';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { memberKey, type MemberRecord } from '../domain/room-state.js';
import { checkRoomId, checkUserId } from '../protocol/ids.js';
import type { Logger } from '../runtime/logger.js';
import {
  decodeNatsJwt,
  encodeNatsJwt,
  SIGNATURE_FIELD,
  type NatsClaims,
} from '../infra/natsjwt.js';
import { isSealed, NKeyPrefix, NKeySigner, XKey } from '../infra/nkeys.js';
import type { Ops } from '../runtime/ops.js';
import type { CompiledRole } from '../domain/room-compile.js';
import {
  Bucket,
  deviceConsumerName,
  kvSubject,
  parseDeviceName,
  QUEUE_GROUP,
  Sys,
} from '../protocol/subjects.js';
import { describeError, ValidationError } from '../protocol/errors.js';
import { isConnected } from '../infra/nats.js';
import { ConnectionCounter } from './connections.js';
import { ConsumerEnsurer } from './consumers.js';
import { DeviceRegistry } from './devices.js';
import type { RoomDirectory } from './directory.js';
import { CalloutMetrics } from './metrics.js';
import { buildUserClaims } from './user-jwt.js';
import { RejectReason, Rejection } from './rejection.js';
import { ClaimResult, SeatClaims } from './seats.js';
import type { RoomToken, TokenVerifier } from './token-verifier.js';

/** Header in which the server sends its curve key when it encrypts requests. */
export const SERVER_XKEY_HEADER = 'Nats-Server-Xkey';
/** Header with which KV marks a delete or purge (`DEL`, `PURGE`); puts have none. */
const KV_OPERATION_HEADER = 'KV-Operation';
/** `aud` of every authorization request. */
export const AUTH_REQUEST_AUDIENCE = 'nats-authorization-request';

export const InboxPolicy = { Private: 'private', Shared: 'shared' } as const;
export type InboxPolicy = (typeof InboxPolicy)[keyof typeof InboxPolicy];

/** Default cap on a NATS user JWT's lifetime: 24 hours, in milliseconds. */
export const DEFAULT_MAX_TTL_MS = 24 * 3_600_000;
/** Bound on remembered member records. */
const MAX_REMEMBERED_MEMBERS = 100_000;
/**
 * How long a member record this callout wrote is trusted to still be there without writing it
 * again, in milliseconds. Deletes and other writers' puts are noticed at once (the callout
 * follows the member keys); this bounds what a missed notice (a bucket recreated, a lost
 * message) can cost: one stale or missing record for 10 minutes.
 */
const MEMBER_RECORD_TRUST_MS = 10 * 60_000;
const UTF8_DECODER = new TextDecoder();
const UTF8_ENCODER = new TextEncoder();

/** Slack on the request's `exp` (whole seconds, truncated by the server), in milliseconds. */
const REQUEST_EXP_SLACK_MS = 1_000;

/** Settings of the callout (see `torii auth-callout --help`). */
export interface CalloutSettings {
  /** Seed (`SA…`) of the account key that signs user JWTs; its public key is `auth_callout.issuer`. */
  issuerSeed: string;
  /** Curve seed (`SX…`) when the server encrypts requests (`auth_callout.xkey`). */
  xkeySeed?: string;
  /** Target account of every user (config mode). */
  clientAccount: string;
  maxTtlMs: number;
  inboxPolicy: InboxPolicy;
  consumerInactiveThresholdMs: number;
  /** Cap on one user's live connections to one room. */
  maxConnectionsPerUser: number;
  /** How long a seat claim or a counted admission waits for presence to show it, in ms. */
  admissionTtlMs: number;
}

interface AuthRequest {
  server_id: { id: string; name?: string; xkey?: string };
  user_nkey: string;
  client_info?: { kind?: string; type?: string; host?: string; id?: number };
  connect_opts?: { auth_token?: unknown; name?: unknown };
  type?: string;
}

/** Everything the handler needs; the NATS connections belong to the caller. */
interface CalloutDeps {
  /** Connection as the callout user in the AUTH account. */
  authConn: NatsConnection;
  /** Connection in the APP account, for JetStream (consumers). */
  appConn: NatsConnection;
  directory: RoomDirectory;
  /** KV `torii_room_state`, where member records go. */
  roomState: KV;
  verifier: TokenVerifier;
  log: Logger;
  ops: Ops;
  now?: () => Date;
}

export class AuthCallout {
  private readonly signer: NKeySigner;
  private readonly xkey: XKey | undefined;
  private readonly metrics: CalloutMetrics;
  private readonly consumers: ConsumerEnsurer;
  private readonly devices: DeviceRegistry;
  private readonly seats: SeatClaims;
  private readonly connections: ConnectionCounter;
  private readonly now: () => Date;
  private sub: Subscription | undefined;
  /** Member records last written, by key, with when they stop being trusted (ms). */
  private readonly members = new TrustedCache<string, string>({
    maxEntries: MAX_REMEMBERED_MEMBERS,
  });
  private memberSub: Subscription | undefined;
  private inflight = 0;
  private idle: (() => void) | undefined;

  private constructor(
    private readonly s: CalloutSettings,
    private readonly d: CalloutDeps,
    consumers: ConsumerEnsurer,
    jsm: JetStreamManager,
  ) {
    this.signer = new NKeySigner(s.issuerSeed, NKeyPrefix.Account);
    this.xkey = s.xkeySeed ? new XKey(s.xkeySeed) : undefined;
    this.metrics = new CalloutMetrics(d.ops.registry);
    this.consumers = consumers;
    this.devices = new DeviceRegistry(d.roomState, jsm, (roomId, consumer) =>
      consumers.forget(roomId, consumer),
    );
    this.now = d.now ?? (() => new Date());
    this.seats = new SeatClaims(
      d.roomState,
      d.directory,
      s.admissionTtlMs,
      () => this.now().getTime(),
      () => this.metrics.seatLedgerWrites.inc(),
      d.directory.ledgerHints,
    );
    this.connections = new ConnectionCounter(
      (roomId, userId) => d.directory.presence(roomId, userId),
      s.admissionTtlMs,
    );
  }

  /** Starts answering authorization requests. */
  static async start(s: CalloutSettings, d: CalloutDeps): Promise<AuthCallout> {
    const jsm = await jetstreamManager(d.appConn);
    const callout = new AuthCallout(
      s,
      d,
      new ConsumerEnsurer(jsm, s.consumerInactiveThresholdMs, {
        isPresent: (roomId, userId) => d.directory.holdsSeat(roomId, userId),
        onEvicted: (roomId, count) => {
          d.log.info(
            { roomId, count },
            'room stream at its consumer limit: deleted consumers of departed users',
          );
          callout.metrics.evicted.inc(count);
        },
      }),
      jsm,
    );
    callout.consumers.watch(d.appConn);
    callout.devices.watch(d.appConn);
    callout.watchMembers();
    if (s.inboxPolicy === InboxPolicy.Shared) {
      d.log.warn(
        "--inbox-policy shared: every client may read every other client's replies (tokens included); use only for legacy clients",
      );
    }
    if (!callout.xkey)
      d.log.warn('no xkey configured: authorization requests and responses travel unencrypted');
    d.ops.addReadiness('rooms', () => d.directory.loaded || 'KV caches loading');
    callout.sub = d.authConn.subscribe(Sys.AUTH_CALLOUT, {
      queue: QUEUE_GROUP,
      callback: (err, msg) => {
        if (err) {
          d.log.error({ err: describeError(err) }, 'callout subscription error');
          return;
        }
        void callout.handle(msg);
      },
    });
    d.ops.addReadiness(
      'callout',
      () => (callout.sub && !callout.sub.isClosed()) || 'not subscribed',
    );
    d.log.info(
      {
        issuer: callout.signer.publicKey,
        xkey: callout.xkey?.publicKey,
        tokenKeys: d.verifier.source,
      },
      'auth callout ready',
    );
    return callout;
  }

  /** The public key user JWTs are signed with. */
  get issuer(): string {
    return this.signer.publicKey;
  }

  /**
   * Follows the member keys of `torii_room_state`: a record this callout remembers writing that
   * is deleted, purged or written by someone else is forgotten, so the next admission writes it
   * again. Reconnects forget everything (notices sent meanwhile are lost).
   */
  private watchMembers(): void {
    const prefix = kvSubject(Bucket.RoomState, '');
    this.memberSub = this.d.appConn.subscribe(kvSubject(Bucket.RoomState, memberKey('*', '*')), {
      callback: (err, m) => {
        if (err) return;
        const key = m.subject.slice(prefix.length);
        const mine = this.members.peek(key);
        if (mine === undefined) return;
        const op = m.headers?.get(KV_OPERATION_HEADER);
        if (op || UTF8_DECODER.decode(m.data) !== mine) this.members.forget(key);
      },
    });
    void (async () => {
      for await (const st of this.d.appConn.status())
        if (st.type === 'reconnect') this.members.clear();
    })();
  }

  /** Stops taking requests and waits for those in flight. */
  async stop(): Promise<void> {
    this.consumers.unwatch();
    this.devices.unwatch();
    this.memberSub?.unsubscribe();
    if (this.sub && !this.sub.isClosed()) {
      if (isConnected(this.d.authConn)) await this.sub.drain();
      else this.sub.unsubscribe();
    }
    if (this.inflight > 0) await new Promise<void>((r) => (this.idle = r));
  }

  private async handle(msg: Msg): Promise<void> {
    const started = process.hrtime.bigint();
    this.inflight++;
    let result = 'dropped';
    try {
      let req: AuthRequest;
      let serverXkey: string | undefined;
      try {
        ({ req, serverXkey } = this.decodeRequest(msg));
      } catch (e) {
        // No trustworthy request: nothing to answer. The server times the client out.
        const r =
          e instanceof Rejection ? e : new Rejection(RejectReason.BadRequest, describeError(e));
        this.metrics.rejections.inc({ reason: r.reason });
        this.d.log.warn({ reason: r.reason, detail: r.message }, 'dropped authorization request');
        return;
      }
      try {
        const jwt = await this.authorize(req);
        this.respond(msg, req, serverXkey, { jwt });
        result = 'allowed';
      } catch (e) {
        const r =
          e instanceof Rejection
            ? e
            : new Rejection(RejectReason.Internal, describeError(e), { cause: e });
        this.metrics.rejections.inc({ reason: r.reason });
        const level = r.reason === RejectReason.Internal ? 'error' : 'info';
        this.d.log[level](
          {
            reason: r.reason,
            detail: r.message,
            host: req.client_info?.host,
            server: req.server_id.name,
          },
          'connection refused',
        );
        this.respond(msg, req, serverXkey, { error: 'not authorized' });
        result = 'rejected';
      }
    } finally {
      this.metrics.requests.inc({ result });
      this.metrics.duration.observe({ result }, Number(process.hrtime.bigint() - started) / 1e9);
      if (--this.inflight === 0) this.idle?.();
    }
  }

  private decodeRequest(msg: Msg): { req: AuthRequest; serverXkey: string | undefined } {
    const serverXkey = msg.headers?.get(SERVER_XKEY_HEADER) || undefined;
    let data: Uint8Array = msg.data;
    const sealed = isSealed(data);
    if (this.xkey) {
      if (!serverXkey || !sealed)
        throw new Rejection(
          RejectReason.RequestNotEncrypted,
          'request is not encrypted but an xkey is configured',
        );
      const opened = this.xkey.open(data, serverXkey);
      if (!opened)
        throw new Rejection(RejectReason.DecryptFailed, 'request does not decrypt with our xkey');
      data = opened;
    } else if (serverXkey || sealed) {
      throw new Rejection(
        RejectReason.RequestEncrypted,
        'request is encrypted but no xkey is configured',
      );
    }
    let claims: NatsClaims<AuthRequest>;
    try {
      claims = decodeNatsJwt<AuthRequest>(UTF8_DECODER.decode(data), NKeyPrefix.Server);
    } catch (e) {
      const bad = e instanceof ValidationError && e.field === SIGNATURE_FIELD;
      throw new Rejection(
        bad ? RejectReason.RequestBadSignature : RejectReason.BadRequest,
        describeError(e),
        { cause: e },
      );
    }
    const req = claims.nats;
    if (claims.aud !== AUTH_REQUEST_AUDIENCE)
      throw new Rejection(
        RejectReason.RequestWrongAudience,
        `request aud is ${String(claims.aud)}`,
      );
    if (req?.type !== 'authorization_request')
      throw new Rejection(RejectReason.BadRequest, 'not an authorization request');
    if (typeof req.server_id?.id !== 'string' || claims.iss !== req.server_id.id) {
      throw new Rejection(
        RejectReason.RequestWrongServer,
        'request issuer is not the server that sent it',
      );
    }
    if (claims.sub !== this.signer.publicKey)
      throw new Rejection(
        RejectReason.RequestWrongSubject,
        'request is for another callout issuer',
      );
    if (
      typeof claims.exp !== 'number' ||
      claims.exp * 1000 + REQUEST_EXP_SLACK_MS < this.now().getTime()
    ) {
      throw new Rejection(RejectReason.RequestExpired, 'request expired');
    }
    if (serverXkey && req.server_id.xkey !== serverXkey) {
      throw new Rejection(
        RejectReason.XkeyMismatch,
        'header xkey differs from the signed server_id.xkey',
      );
    }
    if (typeof req.user_nkey !== 'string' || !req.user_nkey.startsWith(NKeyPrefix.User)) {
      throw new Rejection(RejectReason.BadRequest, 'request has no user nkey');
    }
    return { req, serverXkey };
  }

  private async authorize(req: AuthRequest): Promise<string> {
    const { directory } = this.d;
    if (!directory.loaded)
      throw new Rejection(RejectReason.NotReady, 'room caches are still loading');
    const kind = req.client_info?.kind;
    if (kind !== undefined && kind !== 'Client')
      throw new Rejection(RejectReason.ConnectionType, `connection kind ${kind}`);
    const token = req.connect_opts?.auth_token;
    if (typeof token !== 'string' || token.length === 0)
      throw new Rejection(RejectReason.NoToken, 'no auth_token in CONNECT');

    const t = await this.d.verifier.verify(token);
    try {
      checkRoomId(t.roomId, 'room');
      checkUserId(t.userId, 'sub');
    } catch (e) {
      throw new Rejection(RejectReason.InvalidId, describeError(e), { cause: e });
    }
    const room = directory.room(t.roomId);
    if (!room) throw new Rejection(RejectReason.UnknownRoom, `room ${t.roomId} does not exist`);
    const role = Object.hasOwn(room.roles, t.role) ? room.roles[t.role] : undefined;
    if (!role)
      throw new Rejection(
        RejectReason.UnknownRole,
        `role ${t.role} is not defined in room ${t.roomId}`,
      );
    const now = this.now();
    if (directory.block(t.roomId, t.userId, now))
      throw new Rejection(RejectReason.Blocked, `${t.userId} is blocked in ${t.roomId}`);
    let device: string | undefined;
    try {
      device = parseDeviceName(req.connect_opts?.name);
    } catch (e) {
      throw new Rejection(RejectReason.InvalidDevice, describeError(e), { cause: e });
    }

    // Counted and recorded with no await in between, so that concurrent admissions of one user
    // on this replica each see the others.
    const at = now.getTime();
    const live = this.connections.count(t.roomId, t.userId, at);
    if (live >= this.s.maxConnectionsPerUser) {
      throw new Rejection(
        RejectReason.TooManyConnections,
        `${t.userId} already has ${live} connections to ${t.roomId} (--max-connections-per-user ${this.s.maxConnectionsPerUser})`,
      );
    }
    const release = this.connections.add(
      t.roomId,
      t.userId,
      req.server_id.id,
      req.client_info?.id,
      at,
    );
    try {
      await this.takeSeat(t.roomId, t.userId, room.maxParticipants, at);
      return await this.admit(req, t, role, device, now);
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * Makes sure the user holds a seat: from memory when presence or the seat ledger already gives
   * it one (no JetStream call), else by claiming one in the ledger.
   */
  private async takeSeat(
    roomId: string,
    userId: string,
    maxParticipants: number,
    now: number,
  ): Promise<void> {
    if (this.d.directory.holdsSeat(roomId, userId, now)) return;
    const full = (taken: number): Rejection =>
      new Rejection(RejectReason.RoomFull, `room ${roomId} is full (${taken}/${maxParticipants})`);
    const taken = this.d.directory.seatsTaken(roomId, now);
    if (taken >= maxParticipants) throw full(taken);
    let result: ClaimResult;
    try {
      result = await this.seats.claim(roomId, userId, maxParticipants);
      this.metrics.seatClaims.inc({ result });
    } catch (e) {
      this.metrics.seatClaims.inc({ result: 'error' });
      throw new Rejection(RejectReason.Internal, `cannot claim a seat: ${describeError(e)}`, {
        cause: e,
      });
    }
    if (result === ClaimResult.Full) throw full(maxParticipants);
    if (result === ClaimResult.TooManyClaims)
      throw new Rejection(
        RejectReason.SeatClaimsFull,
        `room ${roomId} has too many admissions that presence has not confirmed yet`,
      );
  }

  /** Records the member and its device, ensures its consumer and signs its user JWT. */
  private async admit(
    req: AuthRequest,
    t: RoomToken,
    role: CompiledRole,
    device: string | undefined,
    now: Date,
  ): Promise<string> {
    const consumer = deviceConsumerName(t.userId, device);

    try {
      await this.recordMember(t.roomId, t.userId, t.role, t.name);
      // A user presence has no record of (new, or gone past the retention) has no device list
      // either: it is created without reading it first.
      if (device !== undefined)
        await this.devices.register(
          t.roomId,
          t.userId,
          device,
          this.d.directory.presence(t.roomId, t.userId) === undefined,
        );
    } catch (e) {
      throw new Rejection(
        RejectReason.Internal,
        `cannot record member or device: ${describeError(e)}`,
        {
          cause: e,
        },
      );
    }
    try {
      this.metrics.consumers.inc({
        result: await this.consumers.ensure(t.roomId, t.userId, consumer),
      });
    } catch (e) {
      this.metrics.consumers.inc({ result: 'error' });
      throw new Rejection(RejectReason.Internal, `cannot ensure consumer: ${describeError(e)}`, {
        cause: e,
      });
    }

    return encodeNatsJwt(
      buildUserClaims({
        issuer: this.signer.publicKey,
        userNkey: req.user_nkey,
        clientAccount: this.s.clientAccount,
        roomId: t.roomId,
        userId: t.userId,
        consumer,
        roleName: t.role,
        role,
        tokenExp: t.exp,
        maxTtlMs: this.s.maxTtlMs,
        sharedInbox: this.s.inboxPolicy === InboxPolicy.Shared,
        now,
      }),
      this.signer,
    );
  }

  /**
   * Tells workers and presence the user's display name (and the role of its last admission, for
   * listings; events carry their connection's role in the subject). Written when it changes or
   * is gone, so reconnects cost no KV write.
   */
  private async recordMember(
    roomId: string,
    userId: string,
    role: string,
    name: string | undefined,
  ): Promise<void> {
    const key = memberKey(roomId, userId);
    const record: MemberRecord = { roomId, userId, role, ...(name !== undefined ? { name } : {}) };
    const json = JSON.stringify(record);
    if (this.members.get(key) === json) return;
    // Forgotten first, so that a failed put leaves nothing trusted.
    this.members.forget(key);
    await this.d.roomState.put(key, json);
    this.members.trust(key, json, MEMBER_RECORD_TRUST_MS);
  }

  private respond(
    msg: Msg,
    req: AuthRequest,
    serverXkey: string | undefined,
    body: { jwt: string } | { error: string },
  ): void {
    const response = encodeNatsJwt(
      {
        iss: this.signer.publicKey,
        sub: req.user_nkey,
        aud: req.server_id.id,
        nats: { ...body, type: 'authorization_response', version: 2 },
      },
      this.signer,
    );
    const bytes = UTF8_ENCODER.encode(response);
    msg.respond(serverXkey && this.xkey ? this.xkey.seal(bytes, serverXkey) : bytes);
  }
}
