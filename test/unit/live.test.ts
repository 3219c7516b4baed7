import { jest } from '@jest/globals';
import {
  encodeLive,
  newRequestIdPrefix,
  parseLive,
  REQUEST_ID_RANDOM_BITS,
} from '../../src/client/live.js';
import { isValidId } from '../../src/core/ids.js';
import {
  deviceConnectionName,
  deviceConsumerName,
  DEVICE_NAME_PREFIX,
  parseDeviceName,
} from '../../src/core/subjects.js';

const body = (s: string): Uint8Array => new TextEncoder().encode(s);
const live = (subject: string, text: string, o: { reply?: string; hasHeaders?: boolean } = {}) =>
  parseLive('n5', { subject, body: body(text), hasHeaders: o.hasHeaders ?? false, ...o });

describe('parseLive', () => {
  test('a live message of the room: sender from the subject, data from the envelope', () => {
    expect(live('room.n5.live.hana', encodeLive({ x: 1 }))).toEqual({
      from: 'hana',
      data: { x: 1 },
    });
    expect(live('room.n5.live.hana', encodeLive(undefined))).toEqual({ from: 'hana', data: null });
  });

  test.each([
    [
      'a JetStream API response',
      '{"type":"io.nats.jetstream.api.v1.stream_info_response","config":{}}',
    ],
    ['a PubAck', '{"stream":"n5","seq":12}'],
    ['a PubAck error', '{"error":{"code":503}}'],
    ['an ack confirmation (empty)', ''],
    ['an envelope with more keys', '{"live":1,"type":"x"}'],
    ['not JSON', 'cursor 1 2'],
    ['a JSON array', '[{"live":1}]'],
    ['JSON null', 'null'],
  ])('drops %s', (_what, text) => {
    expect(live('room.n5.live.hana', text)).toBeUndefined();
  });

  test('drops what carries a reply (a pulled delivery) or headers (a status message)', () => {
    const ok = encodeLive({ x: 1 });
    expect(live('room.n5.live.hana', ok, { reply: '$JS.ACK.n5.hana.1.2.3.4.0' })).toBeUndefined();
    expect(live('room.n5.live.hana', ok, { hasHeaders: true })).toBeUndefined();
  });

  test("drops another room's subjects and subjects that are not live ones", () => {
    const ok = encodeLive({ x: 1 });
    expect(live('room.other.live.hana', ok)).toBeUndefined();
    expect(live('room.n5.chat.hana', ok)).toBeUndefined();
    expect(live('room.n5.live', ok)).toBeUndefined();
    expect(live('_INBOX.n5.hana.x', ok)).toBeUndefined();
  });
});

describe('request ids', () => {
  test('prefixes carry 128 random bits, base64url, and do not repeat', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const p = newRequestIdPrefix();
      expect(p).toMatch(/^[A-Za-z0-9_-]{22}$/);
      seen.add(p);
    }
    expect(seen.size).toBe(1_000);
    expect(REQUEST_ID_RANDOM_BITS).toBe(128);
  });

  test('they come from the platform CSPRNG', () => {
    const spy = jest.spyOn(globalThis.crypto, 'getRandomValues');
    newRequestIdPrefix();
    expect(spy).toHaveBeenCalledWith(expect.objectContaining({ length: 16 }));
    spy.mockRestore();
  });
});

describe('device names', () => {
  test('a connection name names a device with the prefix and a valid id', () => {
    expect(parseDeviceName(deviceConnectionName('laptop-1'))).toBe('laptop-1');
    expect(parseDeviceName('torii-client n5/hana')).toBeUndefined();
    expect(parseDeviceName(undefined)).toBeUndefined();
    expect(() => parseDeviceName(`${DEVICE_NAME_PREFIX}a.b`)).toThrow(/device id/);
    expect(() => parseDeviceName(`${DEVICE_NAME_PREFIX}${'x'.repeat(33)}`)).toThrow(/at most 32/);
    expect(() => parseDeviceName(DEVICE_NAME_PREFIX)).toThrow(/device id/);
  });

  test("a device's consumer cannot be named like another user's", () => {
    expect(deviceConsumerName('hana')).toBe('hana');
    expect(deviceConsumerName('hana', 'x')).toBe('hana~x');
    // `~` is in no user id, so `hana~x` is never a user's own consumer.
    expect(isValidId('hana~x')).toBe(false);
  });
});
