/**
 * What follows a user's departure: the announcements when it leaves (platform event, broadcast,
 * its hand lowered), and the cleanup of what it left behind once the retention period is over
 * (consumers, records). Both run only on the replica whose compare-and-set stored the change, or
 * are safe to run again.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { Broadcast } from '../protocol/events.js';
import type { BroadcastData, LeftReason } from '../protocol/messages.js';
import {
  Bucket,
  deviceConsumerName,
  PlatformEvent,
  roomStreamName,
  userConsumerName,
  userEventsSubject,
} from '../protocol/subjects.js';
import {
  parsePresence,
  presenceKey,
  PresenceState,
  type PresenceRecord,
} from '../domain/presence.js';
import {
  devicesKey,
  handKey,
  memberKey,
  parseDevices,
  parseHand,
  renewKey,
  strikesKey,
} from '../domain/room-state.js';
import { casUpdate, eraseKey, type KvCache } from '../infra/kv.js';
import { MsgId, type MsgIdParts } from '../infra/msg-ids.js';
import type { SystemPublisher } from '../infra/system-publisher.js';
import type { Logger } from '../runtime/logger.js';

/**
 * Records of a departed user stored this recently when its cleanup runs are kept, in
 * milliseconds (at most half the retention period): an admission writes them before the
 * server's CONNECT event reaches presence, which under load takes seconds.
 */
const RETURN_WINDOW_MS = 30_000;

/** What departures read and write. */
interface DepartureDeps {
  /** The worker's connection to the application account (consumers, broadcasts). */
  app: NatsConnection;
  /** KV `torii_presence`, and this replica's cache of it. */
  presence: KV;
  cache: KvCache<PresenceRecord>;
  /** KV `torii_room_state`: member records, device lists, hands, renewal stamps, strikes. */
  roomState: KV;
  out: SystemPublisher;
  log: Logger;
  /** How long a departed user's consumers and records are kept, in milliseconds. */
  retentionMs: number;
  /** Called with the key of a presence record the cleanup deleted. */
  forget: (key: string) => void;
}

/** The announcements of a departure and the cleanup after its retention period. */
export class Departures {
  constructor(private readonly d: DepartureDeps) {}

  /**
   * A user left: tell the platform, broadcast it (unless the room's batch does) and lower the
   * user's hand.
   */
  async left(
    roomId: string,
    userId: string,
    at: string,
    reason: LeftReason,
    batched: boolean,
  ): Promise<void> {
    this.d.out.platform({
      event: PlatformEvent.ParticipantLeft,
      data: { roomId, userId, reason, at },
    });
    if (!batched)
      await this.announce(
        roomId,
        userId,
        Broadcast.ParticipantLeft,
        { userId },
        MsgId.left(roomId, userId, at),
      );
    const lowered = await casUpdate(this.d.roomState, handKey(roomId, userId), parseHand, (h) =>
      // The budget stays: leaving and coming back must not refill the user's hand changes.
      h?.raised
        ? {
            put: {
              raised: false,
              appliedSeq: h.appliedSeq,
              ...(h.budget !== undefined ? { budget: h.budget } : {}),
            },
          }
        : undefined,
    );
    if (lowered.step) {
      this.d.out.platform({
        event: PlatformEvent.HandLowered,
        data: { roomId, userId, by: 'system', at },
      });
      await this.announce(
        roomId,
        userId,
        Broadcast.HandLowered,
        { userId, by: 'system' },
        MsgId.handLoweredOnLeave(roomId, userId, at),
      );
    }
  }

  /**
   * The retention period of a user who left is over: its consumers, its device list, member
   * record, hand and renewal stamp go, then its presence record, only if it is still the same
   * departure (a user who came back keeps everything, and records stored within
   * {@link RETURN_WINDOW_MS} stay; a consumer deleted under a user coming back is created again,
   * see the SDK's repair). The presence record goes last, so a
   * replica that dies half way leaves a record that brings the next sweep back here.
   *
   * The hand goes without a delete marker: every `REQ_INITIAL_DATA` reads all of a room's hand
   * keys, markers included, and nothing follows hands, so a marker (kept minutes) would make each
   * user who left within those minutes cost every join. The other records keep their markers: the
   * callout follows member records and device lists by the messages their deletion publishes.
   */
  async cleanUp(roomId: string, userId: string, changedAt: string): Promise<void> {
    const { roomState } = this.d;
    const key = presenceKey(roomId, userId);
    const r = this.d.cache.get(key);
    if (r && (r.state !== PresenceState.Left || r.changedAt !== changedAt)) return;
    const devices = await roomState.get(devicesKey(roomId, userId));
    const names = [
      userConsumerName(userId),
      ...(devices?.operation === 'PUT' ? parseDevices(devices.json()) : []).map((d) =>
        deviceConsumerName(userId, d),
      ),
    ];
    const jsm = await jetstreamManager(this.d.app, { checkAPI: false });
    for (const name of names)
      await jsm.consumers.delete(roomStreamName(roomId), name).catch(() => undefined);
    // A record stored just now is the user's return in progress: the callout writes it while
    // admitting, before the server's CONNECT reaches presence.
    const returningSince = Date.now() - Math.min(RETURN_WINDOW_MS, this.d.retentionMs / 2);
    for (const k of [
      devicesKey(roomId, userId),
      memberKey(roomId, userId),
      renewKey(roomId, userId),
      strikesKey(roomId, userId),
    ])
      await casUpdate(
        roomState,
        k,
        (d) => d,
        (cur, storedAt) =>
          cur !== undefined && storedAt !== undefined && storedAt.getTime() < returningSince
            ? { delete: true }
            : undefined,
      );
    const hand = await roomState.get(handKey(roomId, userId));
    if (hand && hand.created.getTime() < returningSince)
      await eraseKey(jsm, Bucket.RoomState, hand.key, hand.revision);
    const gone = await casUpdate(this.d.presence, key, parsePresence, (cur) =>
      cur?.state === PresenceState.Left && cur.changedAt === changedAt
        ? { delete: true }
        : undefined,
    );
    if (gone.step) {
      this.d.forget(key);
      this.d.log.debug({ roomId, userId }, 'departed user cleaned up');
    }
  }

  /** Broadcasts a change of one user's presence on that user's broadcast subject. */
  private async announce<B extends Broadcast>(
    roomId: string,
    userId: string,
    event: B,
    data: BroadcastData<B>,
    id: MsgIdParts,
  ): Promise<void> {
    await this.d.out.tryBroadcast(userEventsSubject(roomId, userId), event, data, id);
  }
}
