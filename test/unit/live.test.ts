import { jest } from '@jest/globals';
import {
  DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
  DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
  encodeLive,
  LIVE_SENDER_BURST_SECONDS,
  LiveFilter,
  newRequestIdPrefix,
  parseLive,
  REQUEST_ID_RANDOM_BITS,
} from '../../src/client/live.js';
import { perWindow, RateGate, takeTokens } from '../../src/domain/rate.js';
import {
  CONN_BURST_SECONDS,
  DEFAULT_CONN_BYTES_PER_SEC,
  DEFAULT_CONN_MSGS_PER_SEC,
  mayBeOver,
  overBound,
} from '../../src/worker/flood-guard.js';
import { isValidId } from '../../src/protocol/ids.js';
import {
  deviceConnectionName,
  deviceConsumerName,
  DEVICE_NAME_PREFIX,
  parseDeviceName,
} from '../../src/protocol/subjects.js';

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

describe('LiveFilter: a per-sender bound on what reaches the app', () => {
  test('a burst, then the rate; each sender has its own bucket', () => {
    const f = new LiveFilter({ msgsPerSec: 10, bytesPerSec: 1_000_000 });
    const burst = 10 * LIVE_SENDER_BURST_SECONDS;
    let passed = 0;
    for (let i = 0; i < 100; i++) if (f.admit('flooder', 10, 0)) passed++;
    expect(passed).toBe(burst);
    expect(f.dropped).toBe(100 - burst);
    expect(f.admit('hana', 10, 0)).toBe(true);
    // One second later: ten more.
    passed = 0;
    for (let i = 0; i < 100; i++) if (f.admit('flooder', 10, 1_000)) passed++;
    expect(passed).toBe(10);
  });

  test('bytes count: large updates are held to the bytes rate', () => {
    const f = new LiveFilter({ msgsPerSec: 1_000, bytesPerSec: 1_000 });
    let passed = 0;
    for (let i = 0; i < 10; i++) if (f.admit('flooder', 500, 0)) passed++;
    expect(passed).toBe((1_000 * LIVE_SENDER_BURST_SECONDS) / 500);
  });

  test('the defaults let a busy page through (20 cursor updates a second, a beat every 2 s)', () => {
    const f = new LiveFilter({
      msgsPerSec: DEFAULT_LIVE_SENDER_MSGS_PER_SEC,
      bytesPerSec: DEFAULT_LIVE_SENDER_BYTES_PER_SEC,
    });
    for (let ms = 0; ms < 60_000; ms += 50) {
      expect(f.admit('painter', 120, ms)).toBe(true);
      if (ms % 2_000 === 0) expect(f.admit('painter', 200, ms)).toBe(true);
    }
    expect(f.dropped).toBe(0);
  });
});

describe('takeTokens and RateGate', () => {
  test('a missing bucket is full; a refused take changes nothing and says when to retry', () => {
    const limit = perWindow(5, 60_000);
    let b = takeTokens(undefined, 0, limit);
    for (let i = 0; i < 4; i++) b = takeTokens(b.next, 0, limit);
    expect(b.ok).toBe(true);
    const refused = takeTokens(b.next, 1_000, limit);
    expect(refused).toMatchObject({ ok: false, retryInMs: 11_000 });
    expect(refused.next).toEqual(b.next);
    expect(takeTokens(b.next, 12_000, limit).ok).toBe(true);
    // A clock that went back refills nothing.
    expect(takeTokens(b.next, -60_000, limit).ok).toBe(false);
  });

  test('a gate remembers at most its key limit', () => {
    const g = new RateGate({ burst: 1, refillMs: 1_000 }, 3);
    for (const k of ['a', 'b', 'c', 'd']) expect(g.take(k, 0)).toBe(true);
    expect(g.take('d', 0)).toBe(false);
  });
});

describe('overBound: the connection bound the flood guard applies to server counters', () => {
  const s = { msgsPerSec: DEFAULT_CONN_MSGS_PER_SEC, bytesPerSec: DEFAULT_CONN_BYTES_PER_SEC };
  const burstBytes = DEFAULT_CONN_BYTES_PER_SEC * CONN_BURST_SECONDS;

  test('since it connected: the burst plus the rate for its age', () => {
    const start = 0;
    expect(overBound(s, 1_000, { inMsgs: 1, inBytes: burstBytes, start }, undefined)).toBe(
      undefined,
    );
    expect(
      overBound(
        s,
        1_000,
        { inMsgs: 1, inBytes: burstBytes + DEFAULT_CONN_BYTES_PER_SEC + 1, start },
        undefined,
      ),
    ).toMatch(/bytes in 1.0 s \(since it connected\)/);
    expect(
      overBound(
        s,
        1_000,
        { inMsgs: DEFAULT_CONN_MSGS_PER_SEC * (CONN_BURST_SECONDS + 1) + 1, inBytes: 0, start },
        undefined,
      ),
    ).toMatch(/messages in 1.0 s/);
  });

  test('since the last look: a long-lived connection that starts flooding is caught', () => {
    const day = 86_400_000;
    const prev = { msgs: 1_000, bytes: 1_000_000, at: day };
    // Its average since it connected is tiny, but the last second was not.
    expect(
      overBound(
        s,
        day + 1_000,
        { inMsgs: 1_100, inBytes: 1_000_000 + burstBytes * 2, start: 0 },
        prev,
      ),
    ).toMatch(/since the last look/);
    expect(
      overBound(s, day + 1_000, { inMsgs: 1_100, inBytes: 1_000_000 + 50_000, start: 0 }, prev),
    ).toBe(undefined);
  });

  test('a busy page stays far below: 20 cursor updates of 120 bytes a second for an hour', () => {
    const hour = 3_600_000;
    expect(
      overBound(s, hour, { inMsgs: 20 * 3_600, inBytes: 120 * 20 * 3_600, start: 0 }, undefined),
    ).toBe(undefined);
  });
});

describe('mayBeOver: when the flood guard looks at every connection', () => {
  const s = { msgsPerSec: DEFAULT_CONN_MSGS_PER_SEC, bytesPerSec: DEFAULT_CONN_BYTES_PER_SEC };
  const at = (now: number, msgs: number, bytes: number) => ({ server: 'S1', now, msgs, bytes });

  test('not while all the clients of a server together publish less than one connection may', () => {
    const prev = at(10_000, 5_000, 1_000_000);
    // 1,000 idle members: a ping-sized publish each in a second.
    expect(mayBeOver(s, prev, at(11_000, 6_000, 1_100_000))).toBe(false);
    // Exactly one connection's rate over two seconds.
    expect(mayBeOver(s, prev, at(12_000, 5_000, 1_000_000 + 2 * DEFAULT_CONN_BYTES_PER_SEC))).toBe(
      false,
    );
  });

  test('as soon as their bytes or messages could hide one connection over its rate', () => {
    const prev = at(10_000, 5_000, 1_000_000);
    expect(mayBeOver(s, prev, at(11_000, 5_000, 1_000_001 + DEFAULT_CONN_BYTES_PER_SEC))).toBe(
      true,
    );
    expect(mayBeOver(s, prev, at(11_000, 5_001 + DEFAULT_CONN_MSGS_PER_SEC, 1_000_000))).toBe(true);
  });

  test('with nothing to compare: a server seen for the first time, or restarted', () => {
    expect(mayBeOver(s, undefined, at(1_000, 0, 0))).toBe(true);
    expect(mayBeOver(s, at(10_000, 5_000, 1_000_000), at(11_000, 10, 100))).toBe(true);
    expect(mayBeOver(s, at(10_000, 5_000, 1_000_000), at(9_000, 5_000, 1_000_000))).toBe(true);
  });
});
