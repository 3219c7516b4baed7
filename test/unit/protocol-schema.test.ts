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
  type EndpointRefusal,
  type EndpointReply,
  type EndpointRequest,
  type Endpoints,
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
import { PlatformEvent, ServiceSubject } from '../../src/protocol/subjects.js';
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
    ...Object.values(ServiceSubject).flatMap((s) =>
      (['micro', 'nest'] as const).flatMap((caller) => [
        definitionOf.endpoint(s, caller, 'request'),
        definitionOf.endpoint(s, caller, 'reply'),
      ]),
    ),
    definitionOf.endpointError,
  ];
  expect([...v.definitions].sort()).toEqual([...new Set(expected)].sort());
  expect(v.definitions).toHaveLength(8 * 2 + 1 + 7 + 5 + 5 * 4 + 1);
  // Each compiles (strict mode refuses unknown keywords) and refuses an empty object, but for
  // the one request that is an empty object.
  const emptyRequest = definitionOf.endpoint(ServiceSubject.RoomsList, 'micro', 'request');
  for (const name of v.definitions)
    if (name !== emptyRequest) expect(v.errors(name, {})).not.toEqual([]);
  expect(v.errors(emptyRequest, {})).toEqual([]);
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

test('the platform endpoints: a request and a reply of either caller, a refusal', () => {
  const v = new ProtocolValidator(JSON.parse(renderProtocolSchema()) as ProtocolSchema);
  const kick = { roomId: 'n5', userId: 'troll', reason: 'spam', durationSeconds: 60 };
  expect(v.errors('RoomsKickEndpointRequest', kick)).toEqual([]);
  expect(v.errors('RoomsKickEndpointRequest', { ...kick, durationSeconds: '60' })).toEqual([
    '/durationSeconds: must be integer',
  ]);
  expect(v.errors('RoomsListEndpointRequest', {})).toEqual([]);
  const reply = {
    roomId: 'n5',
    userId: 'troll',
    kicked: 2,
    blockedUntil: '2026-01-01T00:00:00.000Z',
    media: 'off',
  };
  expect(v.errors('RoomsKickEndpointReply', reply)).toEqual([]);
  expect(v.errors('RoomsKickEndpointReply', { ...reply, media: 'gone' })).toEqual([
    '/media: must be equal to one of the allowed values',
  ]);
  expect(
    v.errors('RoomsKickNestRequest', { pattern: 'torii.rooms.kick', data: kick, id: 'n-1' }),
  ).toEqual([]);
  expect(
    v.errors('RoomsKickNestRequest', { pattern: 'torii.rooms.get', data: kick, id: 'n-1' }),
  ).toEqual(['/pattern: must be equal to constant']);
  expect(v.errors('RoomsKickNestReply', { id: 'n-1', response: reply, isDisposed: true })).toEqual(
    [],
  );
  const refused = { code: 'NOT_FOUND', message: 'room n5 does not exist' };
  expect(v.errors('RoomsKickNestReply', { id: 'n-1', err: refused, isDisposed: true })).toEqual([]);
  expect(
    v.errors('RoomsKickNestReply', { id: 'n-1', err: { ...refused, code: 'FORBIDDEN' } }),
  ).not.toEqual([]);
  const headers = { 'Nats-Service-Error-Code': '404', 'Nats-Service-Error': refused.message };
  expect(v.errors('EndpointErrorHeaders', headers)).toEqual([]);
  expect(
    v.errors('EndpointErrorHeaders', { ...headers, 'Nats-Service-Error-Code': '418' }),
  ).toEqual(['/Nats-Service-Error-Code: must be equal to one of the allowed values']);
  expect(definitionOf.endpoint(ServiceSubject.TokensIssue, 'nest', 'reply')).toBe(
    'TokensIssueNestReply',
  );
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
  same<
    Equal<
      EndpointRequest<'torii.rooms.kick'>,
      { roomId: string; userId: string; reason?: string; durationSeconds?: number }
    >
  >();
  same<
    Equal<
      EndpointReply<'torii.rooms.kick'>,
      {
        roomId: string;
        userId: string;
        kicked: number;
        blockedUntil: string;
        media: 'removed' | 'absent' | 'failed' | 'off';
      }
    >
  >();
  same<
    Equal<
      Endpoints['torii.tokens.issue'],
      {
        request: {
          roomId: string;
          userId: string;
          role: string;
          name?: string;
          ttlSeconds?: number;
        };
        reply: { token: string; expiresAt: string };
      }
    >
  >();
  same<
    Equal<
      EndpointReply<'torii.rooms.participants'>['participants'][number],
      { userId: string; name: string; role: string; since: string; state: 'online' | 'away' }
    >
  >();
  same<Equal<EndpointReply<'torii.rooms.list'>, EndpointReply<'torii.rooms.get'>[]>>();
  same<
    Equal<
      EndpointRefusal,
      { code: 'BAD_REQUEST' | 'NOT_FOUND' | 'UNAVAILABLE' | 'INTERNAL'; message: string }
    >
  >();
  // @ts-expect-error: a field the schema does not have is not in the type either
  same<Equal<BroadcastData<'EVT_PARTICIPANT_LEFT'>, { userId: string; at: string }>>();
});
