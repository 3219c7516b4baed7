/**
 * Ends a kicked user's media. LiveKit cannot revoke a token: it takes one until its `exp` (plus
 * a minute's leeway), and while a participant is connected it hands out fresh ones itself. So a
 * kick removes the identity from the LiveKit room at once (`RoomService.RemoveParticipant`), and
 * keeps removing it while a token the user held before the kick may still open the room: a
 * modified client that joins again is removed within {@link MEDIA_GUARD_INTERVAL_MS}. LiveKit
 * being down never fails a kick: the NATS side is done first, and the guard's later tries are the
 * bounded retry. A Room change that narrows a role's media grants narrows them on the connected
 * participants too (`RoomService.UpdateParticipant`), which otherwise keep their join's grants.
 * The API is reached at `--livekit-url` (ws:// and wss:// are taken as http:// and https://).
 */
import { RoomServiceClient, ServerError } from 'livekit-server-sdk';
import { Counter, type Registry } from 'prom-client';
import { describeError } from '../protocol/errors.js';
import { MediaOutcome } from '../protocol/messages.js';
import type { Logger } from '../runtime/logger.js';
import { METRICS_PREFIX } from '../runtime/ops.js';
import type { LiveKitSettings } from './handlers.js';

/** Longest wait for one LiveKit API call, in seconds: a kick answers within it when LiveKit hangs. */
const MEDIA_REQUEST_TIMEOUT_S = 2;
/**
 * Time between two looks at a room with kicked identities while their old tokens may still be
 * valid, in milliseconds: how long a modified client that rejoins LiveKit keeps media at most.
 */
const MEDIA_GUARD_INTERVAL_MS = 3_000;
/** How long past `exp` LiveKit still takes a token (go-jose's default leeway), in milliseconds. */
const LIVEKIT_EXP_LEEWAY_MS = 60_000;
/**
 * Lifetime of the tokens LiveKit itself sends a connected participant (livekit-server's
 * `tokenDefaultTTL`), in milliseconds: a kicked client may hold one this young.
 */
const LIVEKIT_REFRESH_TOKEN_TTL_MS = 600_000;
/** Kicked identities guarded at once, at most; past it the oldest guard ends early. */
const MAX_MEDIA_GUARDS = 10_000;

/**
 * Removes kicked identities from LiveKit rooms and keeps them out while their tokens live;
 * narrows participants' grants.
 */
export class MediaRemover {
  private readonly client: RoomServiceClient;
  /** Kicked identities by LiveKit room, each with when its guard ends (ms since the epoch). */
  private readonly guards = new Map<
    string,
    { identities: Map<string, number>; timer: ReturnType<typeof setInterval>; busy: boolean }
  >();
  private readonly removals: Counter<'result'>;

  constructor(
    private readonly settings: LiveKitSettings,
    registry: Registry,
    private readonly log: Logger,
    private readonly intervalMs = MEDIA_GUARD_INTERVAL_MS,
  ) {
    this.client = new RoomServiceClient(settings.url, settings.apiKey, settings.apiSecret, {
      requestTimeout: MEDIA_REQUEST_TIMEOUT_S,
      failover: false,
    });
    this.removals = new Counter({
      name: `${METRICS_PREFIX}worker_media_removals_total`,
      help: 'Removals of kicked users from LiveKit, by result (removed, absent, failed)',
      labelNames: ['result'],
      registers: [registry],
    });
  }

  /**
   * How long after a kick a token issued before it may still open the LiveKit room, in
   * milliseconds: the longer of ours and LiveKit's own, plus its leeway.
   */
  get tokenWindowMs(): number {
    return (
      Math.max(this.settings.ttlSeconds * 1000, LIVEKIT_REFRESH_TOKEN_TTL_MS) +
      LIVEKIT_EXP_LEEWAY_MS
    );
  }

  /** Removes `identity` from the LiveKit room once. Never throws. */
  async remove(room: string, identity: string): Promise<MediaOutcome> {
    let outcome: MediaOutcome;
    try {
      await this.client.removeParticipant(room, identity);
      outcome = MediaOutcome.Removed;
    } catch (e) {
      if (e instanceof ServerError && e.status === 404) outcome = MediaOutcome.Absent;
      else {
        outcome = MediaOutcome.Failed;
        this.log.debug({ room, identity, err: describeError(e) }, 'LiveKit removal failed');
      }
    }
    this.removals.inc({ result: outcome });
    return outcome;
  }

  /**
   * Sets the LiveKit grants of a participant to `grants` (a Room change narrowed its role's): a
   * connected participant otherwise keeps those of the token it joined with. Never throws.
   */
  async restrict(
    room: string,
    identity: string,
    grants: { canPublish: boolean; canSubscribe: boolean; canPublishData: boolean },
  ): Promise<void> {
    try {
      await this.client.updateParticipant(room, identity, { permission: grants });
    } catch (e) {
      if (e instanceof ServerError && e.status === 404) return; // not in LiveKit
      this.log.warn({ room, identity, err: describeError(e) }, 'LiveKit grant update failed');
    }
  }

  /**
   * Ends a LiveKit room (its Room was deleted) and keeps everyone who was in it out while their
   * tokens live: LiveKit creates a room again for anyone who joins with a valid token.
   */
  async endRoom(room: string): Promise<MediaOutcome> {
    let present: string[];
    try {
      present = (await this.client.listParticipants(room)).map((p) => p.identity);
      await this.client.deleteRoom(room);
    } catch (e) {
      if (e instanceof ServerError && e.status === 404) return MediaOutcome.Absent;
      this.log.warn({ room, err: describeError(e) }, 'LiveKit room could not be ended');
      return MediaOutcome.Failed;
    }
    const until = Date.now() + this.tokenWindowMs;
    for (const identity of present) this.guard(room, identity, until);
    return MediaOutcome.Removed;
  }

  /**
   * Removes `identity` now, then keeps it out of the room until `blockedUntilMs` or the end of the
   * token window, whichever is first. A second kick of the same user sets a new end.
   */
  async kick(room: string, identity: string, blockedUntilMs: number): Promise<MediaOutcome> {
    const outcome = await this.remove(room, identity);
    if (outcome === MediaOutcome.Failed)
      this.log.warn(
        { room, identity },
        'LiveKit unreachable at a kick; retrying while tokens live',
      );
    const until = Math.min(blockedUntilMs, Date.now() + this.tokenWindowMs);
    if (until > Date.now()) this.guard(room, identity, until);
    return outcome;
  }

  private guard(room: string, identity: string, until: number): void {
    let g = this.guards.get(room);
    if (!g) {
      const timer = setInterval(() => void this.sweep(room), this.intervalMs);
      timer.unref?.();
      g = { identities: new Map(), timer, busy: false };
      this.guards.set(room, g);
    }
    if (!g.identities.has(identity) && this.guarded() >= MAX_MEDIA_GUARDS) this.dropOldest();
    g.identities.delete(identity);
    g.identities.set(identity, until);
  }

  private guarded(): number {
    let n = 0;
    for (const g of this.guards.values()) n += g.identities.size;
    return n;
  }

  private dropOldest(): void {
    for (const [room, g] of this.guards) {
      const first = g.identities.keys().next().value;
      if (first === undefined) continue;
      g.identities.delete(first);
      if (g.identities.size === 0) this.end(room);
      return;
    }
  }

  /**
   * One look at a guarded room: whoever of its kicked identities is back is removed again. One
   * listing per room and interval, however many users were kicked from it.
   */
  private async sweep(room: string): Promise<void> {
    const g = this.guards.get(room);
    if (!g || g.busy) return;
    const now = Date.now();
    for (const [identity, until] of g.identities) if (until <= now) g.identities.delete(identity);
    if (g.identities.size === 0) return this.end(room);
    g.busy = true;
    try {
      const back = (await this.client.listParticipants(room)).filter((p) =>
        g.identities.has(p.identity),
      );
      for (const p of back)
        if ((await this.remove(room, p.identity)) === MediaOutcome.Removed)
          this.log.info({ room, identity: p.identity }, 'kicked user rejoined LiveKit; removed');
    } catch (e) {
      // A room LiveKit does not have holds no one; anything else is tried again next time.
      if (!(e instanceof ServerError && e.status === 404)) {
        this.removals.inc({ result: MediaOutcome.Failed });
        this.log.debug({ room, err: describeError(e) }, 'LiveKit listing failed');
      }
    } finally {
      g.busy = false;
    }
  }

  private end(room: string): void {
    const g = this.guards.get(room);
    if (g) clearInterval(g.timer);
    this.guards.delete(room);
  }

  stop(): void {
    for (const room of [...this.guards.keys()]) this.end(room);
  }
}
