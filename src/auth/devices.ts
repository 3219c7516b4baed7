/**
 * A user's devices (docs/protocol.md, "Devices": every device of a user gets everything meant for it). A client
 * names its device in its connection name (`deviceConnectionName`); each device has a consumer
 * of its own (`{userId}~{deviceId}`), so two devices catching up after a reconnect never move each
 * other's position. A user keeps at most {@link MAX_DEVICES_PER_USER} devices: the list lives in
 * KV `torii_room_state` (`devices.{roomId}.{userId}`, compare-and-set), and the consumer of the
 * device that drops off the end is deleted, so no user can fill a room's consumer limit.
 *
 * The list is also what the worker reads to delete a departed user's device consumers, so a
 * device must be on it whenever it has a consumer: what this registry remembers having listed is
 * forgotten as soon as the list changes without it (deleted after the retention period, or
 * rewritten by another callout replica).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { casUpdate } from '../infra/kv.js';
import { devicesKey, parseDevices } from '../domain/room-state.js';
import { MAX_DEVICES_PER_USER } from '../infra/streams.js';
import { Bucket, deviceConsumerName, kvSubject, roomStreamName } from '../protocol/subjects.js';

/** Bound on remembered registrations. */
const MAX_REMEMBERED = 100_000;
/** Header with which KV marks a delete or purge (`DEL`, `PURGE`); puts have none. */
const KV_OPERATION_HEADER = 'KV-Operation';

export class DeviceRegistry {
  /** Devices known to be on each user's list, by the list's key. */
  private readonly known = new Map<string, Set<string>>();
  /** Devices in {@link known}, over all users. */
  private size = 0;
  private sub: Subscription | undefined;

  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    /** Called with each consumer deleted because its device dropped off the list. */
    private readonly onEvicted: (roomId: string, consumer: string) => void = () => undefined,
  ) {}

  /**
   * Adds the device to the user's list (no KV call when it is known to be there). `likelyNew`:
   * the list is probably absent, so it is created without a read (a read of an absent key is a
   * failing JetStream API call); a list that exists after all costs one conflict and a read.
   */
  async register(
    roomId: string,
    userId: string,
    deviceId: string,
    likelyNew = false,
  ): Promise<void> {
    const user = devicesKey(roomId, userId);
    if (this.known.get(user)?.has(deviceId)) return;
    let evicted: string[] = [];
    await casUpdate(
      this.kv,
      user,
      parseDevices,
      (current = []) => {
        if (current.includes(deviceId)) return undefined;
        const next = [...current, deviceId];
        evicted = next.splice(0, Math.max(0, next.length - MAX_DEVICES_PER_USER));
        return { put: next };
      },
      likelyNew ? { hint: { value: undefined, revision: 0, put: false } } : {},
    );
    for (const d of evicted) {
      this.forget(user, d);
      const consumer = deviceConsumerName(userId, d);
      await this.jsm.consumers.delete(roomStreamName(roomId), consumer).catch(() => undefined);
      this.onEvicted(roomId, consumer);
    }
    if (this.size >= MAX_REMEMBERED) this.clear();
    let devices = this.known.get(user);
    if (!devices) this.known.set(user, (devices = new Set()));
    if (!devices.has(deviceId)) this.size++;
    devices.add(deviceId);
  }

  /**
   * Follows the device lists in `nc`'s account: a device that a list deleted, purged or written
   * without it no longer names is forgotten, so the next admission from it lists it again.
   * Reconnects forget everything (notices sent meanwhile are lost).
   */
  watch(nc: NatsConnection): void {
    const prefix = kvSubject(Bucket.RoomState, '');
    this.sub = nc.subscribe(kvSubject(Bucket.RoomState, devicesKey('*', '*')), {
      callback: (err, m) => {
        if (err) return;
        const user = m.subject.slice(prefix.length);
        const mine = this.known.get(user);
        if (!mine) return;
        let listed: string[] = [];
        if (!m.headers?.get(KV_OPERATION_HEADER)) {
          try {
            listed = parseDevices(m.json());
          } catch {
            listed = [];
          }
        }
        for (const d of [...mine]) if (!listed.includes(d)) this.forget(user, d);
      },
    });
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') this.clear();
    })();
  }

  /** Stops following the device lists. */
  unwatch(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  private forget(user: string, deviceId: string): void {
    const devices = this.known.get(user);
    if (devices?.delete(deviceId)) this.size--;
    if (devices?.size === 0) this.known.delete(user);
  }

  private clear(): void {
    this.known.clear();
    this.size = 0;
  }
}
