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
import { casUpdate } from '../core/kv.js';
import { devicesKey, parseDevices } from '../core/room-state.js';
import { deviceConsumerName, roomStreamName } from '../core/subjects.js';

/** Devices a user may have in one room (besides connections that name none). */
export const MAX_DEVICES_PER_USER = 5;
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
    let evicted: string[] = [];
    await casUpdate(this.kv, devicesKey(roomId, userId), parseDevices, (current = []) => {
      if (current.includes(deviceId)) return undefined;
      const next = [...current, deviceId];
      evicted = next.splice(0, Math.max(0, next.length - MAX_DEVICES_PER_USER));
      return { put: next };
    });
    for (const d of evicted) {
      this.known.delete(`${roomId}.${userId}.${d}`);
      const consumer = deviceConsumerName(userId, d);
      await this.jsm.consumers.delete(roomStreamName(roomId), consumer).catch(() => undefined);
      this.onEvicted(roomId, consumer);
    }
    if (this.known.size >= MAX_REMEMBERED) this.known.clear();
    this.known.add(mark);
  }
}
