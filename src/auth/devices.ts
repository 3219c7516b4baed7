/**
 * A user's devices (DESIGN.md §5: every device of a user gets everything meant for it). A client
 * names its device in its connection name (`deviceConnectionName`); each device has a consumer
 * of its own (`{userId}~{deviceId}`), so two devices catching up after a reconnect never move each
 * other's position. A user keeps at most {@link MAX_DEVICES_PER_USER} devices: the list lives in
 * KV `torii_room_state` (`devices.{roomId}.{userId}`, compare-and-set), and the consumer of the
 * device that drops off the end is deleted, so no user can fill a room's consumer limit.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { devicesKey, parseDevices } from '../core/room-state.js';
import { deviceConsumerName, roomStreamName } from '../core/subjects.js';

/** Devices a user may have in one room (besides connections that name none). */
export const MAX_DEVICES_PER_USER = 5;
/** Compare-and-set attempts on the device list before giving up. */
const CAS_ATTEMPTS = 5;
/** Bound on remembered registrations. */
const MAX_REMEMBERED = 100_000;

export class DeviceRegistry {
  private readonly known = new Set<string>();

  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    /** Called with each consumer deleted because its device dropped off the list. */
    private readonly onEvicted: (roomId: string, consumer: string) => void = () => undefined,
  ) {}

  /** Adds the device to the user's list (no KV call when it is known to be there). */
  async register(roomId: string, userId: string, deviceId: string): Promise<void> {
    const mark = `${roomId}.${userId}.${deviceId}`;
    if (this.known.has(mark)) return;
    const key = devicesKey(roomId, userId);
    for (let attempt = 1; ; attempt++) {
      const e = await this.kv.get(key);
      const current = e?.operation === 'PUT' ? parseDevices(e.json()) : [];
      if (current.includes(deviceId)) break;
      const next = [...current, deviceId];
      const evicted = next.splice(0, Math.max(0, next.length - MAX_DEVICES_PER_USER));
      try {
        if (e && e.operation === 'PUT') await this.kv.update(key, JSON.stringify(next), e.revision);
        else await this.kv.create(key, JSON.stringify(next));
      } catch (err) {
        if (attempt >= CAS_ATTEMPTS) throw err;
        continue; // another callout changed the list: read it again
      }
      for (const d of evicted) {
        this.known.delete(`${roomId}.${userId}.${d}`);
        const consumer = deviceConsumerName(userId, d);
        await this.jsm.consumers.delete(roomStreamName(roomId), consumer).catch(() => undefined);
        this.onEvicted(roomId, consumer);
      }
      break;
    }
    if (this.known.size >= MAX_REMEMBERED) this.known.clear();
    this.known.add(mark);
  }
}
