/**
 * docs/protocol.schema.json is what scripts/gen-protocol-schema.ts makes from the contract
 * (src/protocol/messages.ts), is valid JSON Schema 2020-12 with one definition per message, and
 * the TypeScript types derived from the contract are the shapes the schema describes.
 */
import { readFileSync } from 'node:fs';
import type * as Sdk from '../../src/client/index.js';
import { Broadcast, RequestEvent } from '../../src/protocol/events.js';
import {
  definitionOf,
  renderProtocolSchema,
  type AnswerData,
  type BroadcastData,
  type InitialData,
  type MediaServerData,
  type Participant,
  type ParticipantsPage,
  type Permissions,
  type PlatformEventData,
  type RaisedHand,
  type RequestData,
  type Requests,
} from '../../src/protocol/messages.js';
import { PlatformEvent } from '../../src/protocol/subjects.js';
import {
  PROTOCOL_SCHEMA_FILE,
  ProtocolValidator,
  type ProtocolSchema,
} from '../helpers/protocol-schema.js';

/** True when `A` and `B` are the same type (checked by the compiler: `t<false>()` fails). */
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <T extends true>(): T => true as T;

test('the checked-in docs/protocol.schema.json is what the generator writes', () => {
  // Stale: run `npx tsx scripts/gen-protocol-schema.ts` and commit the file.
  expect(readFileSync(PROTOCOL_SCHEMA_FILE, 'utf8')).toBe(renderProtocolSchema());
});

test('one definition per message: every request, answer, broadcast and platform event', () => {
  const v = new ProtocolValidator(JSON.parse(renderProtocolSchema()) as ProtocolSchema);
  const expected = [
    ...Object.values(RequestEvent).flatMap((e) => [
      definitionOf.request(e),
      definitionOf.answer(`RES_${e.slice(4)}`),
    ]),
    definitionOf.answer('RES_ERROR'),
    ...Object.values(Broadcast).map((e) => definitionOf.broadcast(e)),
    ...Object.values(PlatformEvent).map((e) => definitionOf.platform(e)),
  ];
  expect([...v.definitions].sort()).toEqual([...new Set(expected)].sort());
  expect(v.definitions).toHaveLength(8 * 2 + 1 + 7 + 5);
  // Each compiles (strict mode refuses unknown keywords) and refuses an empty object.
  for (const name of v.definitions) expect(v.errors(name, {})).not.toEqual([]);
});

test('the envelopes: a request, an answer of either kind, an error answer of any event', () => {
  const v = new ProtocolValidator(JSON.parse(renderProtocolSchema()) as ProtocolSchema);
  expect(
    v.errors('RaiseHandRequest', { event: 'REQ_RAISE_HAND', id: 'a-1', data: { note: 'q' } }),
  ).toEqual([]);
  expect(v.errors('RaiseHandRequest', { event: 'REQ_RAISE_HAND', id: 'a-1' })).toEqual([]);
  expect(
    v.errors('RaiseHandRequest', { event: 'REQ_RAISE_HAND', id: 'a.1', data: { note: 1 } }),
  ).toEqual(['/id: must match pattern "^[A-Za-z0-9_-]{1,64}$"', '/data/note: must be string']);
  const ok = { event: 'RES_LEAVE', id: 'a-2', ok: true, data: { immediate: true } };
  expect(v.errors('LeaveAnswer', ok)).toEqual([]);
  const refused = { ...ok, ok: false, error: { code: 'RATE_LIMITED', message: 'slow down' } };
  delete (refused as { data?: unknown }).data;
  expect(v.errors('LeaveAnswer', refused)).toEqual([]);
  expect(v.errors('LeaveAnswer', { ...ok, data: { immediate: 'yes' } })).toContain(
    '/data/immediate: must be boolean',
  );
  expect(
    v.errors('ErrorAnswer', {
      event: 'RES_SELF_DESTRUCT',
      id: 'g4',
      ok: false,
      error: { code: 'UNKNOWN_EVENT', message: 'unknown event REQ_SELF_DESTRUCT' },
    }),
  ).toEqual([]);
  expect(definitionOf.answer('RES_SELF_DESTRUCT')).toBe('ErrorAnswer');
  expect(definitionOf.answer('RES_INITIAL_DATA')).toBe('InitialDataAnswer');
});

test('the TypeScript types are those of the schemas (checked by the compiler)', () => {
  same<Equal<RequestData<'REQ_PARTICIPANTS'>, { cursor?: string | null; limit?: number }>>();
  same<
    Equal<
      AnswerData<'REQ_PARTICIPANTS'>,
      {
        participants: { userId: string; name: string; role: string; since: string }[];
        next: string | null;
        total: number;
        snapshotSeq: number;
      }
    >
  >();
  same<
    Equal<Requests['REQ_RAISE_HAND'], { request: { note?: string }; answer: Record<string, never> }>
  >();
  same<Equal<AnswerData<'REQ_LEAVE'>, { immediate: boolean }>>();
  same<Equal<InitialData['participantsPartial'], true | undefined>>();
  same<Equal<InitialData['hands'], { userId: string; raisedAt: string; note: string }[]>>();
  same<
    Equal<
      BroadcastData<'EVT_PARTICIPANT_JOINED'>,
      { userId: string; since: string; name?: string; role?: string }
    >
  >();
  same<
    Equal<
      PlatformEventData<'torii.events.participant.left'>,
      { roomId: string; userId: string; reason: 'leave' | 'disconnected'; at: string }
    >
  >();
  // The SDK's public types are the contract's (its `Hand` had an optional note, its permissions
  // an optional media, while the workers always send both).
  same<Equal<Sdk.Hand, RaisedHand>>();
  same<Equal<Sdk.Permissions, Permissions>>();
  same<Equal<Sdk.Participant, Participant>>();
  same<Equal<Sdk.InitialData, InitialData>>();
  same<Equal<Sdk.MediaServerData, MediaServerData>>();
  same<Equal<Sdk.ParticipantsPage, ParticipantsPage>>();
  same<Equal<Awaited<ReturnType<Sdk.RoomClient['renew']>>, AnswerData<'REQ_RENEW_WAJLC_TOKEN'>>>();
  // @ts-expect-error: a field the schema does not have is not in the type either
  same<Equal<BroadcastData<'EVT_PARTICIPANT_LEFT'>, { userId: string; at: string }>>();
});
