import { ConnectionCounter } from '../../src/auth/connections.js';
import {
  claimHolds,
  liveClaims,
  MAX_SEAT_CLAIMS,
  parseSeatLedger,
  type SeatView,
} from '../../src/auth/seats.js';
import type { PresenceRecord } from '../../src/domain/presence.js';

const at = (s: number): string => new Date(Date.UTC(2026, 11, 1, 9, 0, s)).toISOString();
const ms = (s: number): number => Date.parse(at(s));

function presence(
  userId: string,
  state: PresenceRecord['state'],
  changedAt: string,
  extra: Partial<PresenceRecord> = {},
): PresenceRecord {
  return {
    roomId: 'n5',
    userId,
    state,
    connections: [],
    since: changedAt,
    changedAt,
    ...extra,
  };
}

describe('seat claims', () => {
  test('a claim holds until it expires, when presence has not changed since the claimer looked', () => {
    const left = presence('hana', 'left', at(0));
    expect(claimHolds({ user: 'hana', until: ms(30), seen: ms(0) }, left, ms(10))).toBe(true);
    expect(claimHolds({ user: 'hana', until: ms(30), seen: ms(0) }, left, ms(30))).toBe(false);
    expect(claimHolds({ user: 'hana', until: ms(30) }, undefined, ms(10))).toBe(true);
  });

  test('presence moving on ends the claim (online: presence holds the seat; left again: it is free)', () => {
    const claim = { user: 'hana', until: ms(30), seen: ms(0) };
    expect(claimHolds(claim, presence('hana', 'online', at(5)), ms(10))).toBe(false);
    expect(claimHolds(claim, presence('hana', 'left', at(6)), ms(10))).toBe(false);
    // No record when claimed, one now: presence saw the connection.
    expect(
      claimHolds({ user: 'hana', until: ms(30) }, presence('hana', 'online', at(5)), ms(10)),
    ).toBe(false);
  });

  test('a replica whose presence lags behind the claimer keeps counting the claim', () => {
    const claim = { user: 'hana', until: ms(30), seen: ms(5) };
    expect(claimHolds(claim, presence('hana', 'left', at(0)), ms(10))).toBe(true);
  });

  test('live claims leave out users presence already seats', () => {
    const view: SeatView = {
      seated: () => new Map([['kenji', {}]]),
      presence: () => undefined,
    };
    const live = liveClaims(
      'n5',
      [
        { user: 'kenji', until: ms(30) },
        { user: 'hana', until: ms(30) },
        { user: 'old', until: ms(1) },
      ],
      view,
      ms(10),
    );
    expect(live.map((c) => c.user)).toEqual(['hana']);
  });

  test('malformed ledgers and claims are left out', () => {
    expect(parseSeatLedger(null)).toBeUndefined();
    expect(parseSeatLedger({ claims: 'x' })).toBeUndefined();
    expect(
      parseSeatLedger({
        claims: [
          { user: 'a.b', until: 1 },
          { user: 'ok', until: '1' },
          { user: 'ok', until: 1 },
        ],
      }),
    ).toEqual({ claims: [{ user: 'ok', until: 1 }] });
  });

  test(`${MAX_SEAT_CLAIMS} claims of 64-character user ids fit in a KV value (256 KiB)`, () => {
    const claims = Array.from({ length: MAX_SEAT_CLAIMS }, () => ({
      user: 'u'.repeat(64),
      until: ms(30),
      seen: ms(0),
    }));
    expect(JSON.stringify({ claims }).length).toBeLessThan(256 * 1024);
  });
});

describe('connections per user', () => {
  test('counts presence plus admissions presence has not shown yet, matched by (server, cid)', () => {
    const shown: { record?: PresenceRecord } = {};
    const counter = new ConnectionCounter(() => shown.record, 30_000);
    counter.add('n5', 'hana', 'S1', 1, ms(0));
    counter.add('n5', 'hana', 'S1', 2, ms(0));
    expect(counter.count('n5', 'hana', ms(1))).toBe(2);
    // Presence shows the first open and the second already closed: counted once, and not at all.
    shown.record = presence('hana', 'online', at(1), {
      connections: [{ server: 'S1', cid: 1, since: at(1) }],
      closed: [{ server: 'S1', cid: 2 }],
    });
    expect(counter.count('n5', 'hana', ms(2))).toBe(1);
  });

  test('an admission presence never shows stops counting after the TTL; a failed one at once', () => {
    const counter = new ConnectionCounter(() => undefined, 30_000);
    counter.add('n5', 'hana', 'S1', 1, ms(0));
    const undo = counter.add('n5', 'hana', 'S1', 2, ms(0));
    undo();
    expect(counter.count('n5', 'hana', ms(1))).toBe(1);
    expect(counter.count('n5', 'hana', ms(30))).toBe(0);
  });
});
