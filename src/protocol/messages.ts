/**
 * The wire contract, written once (docs/protocol.md, docs/platform.md): the data of every request
 * a client sends and of its answer, of every broadcast, of every platform event and of every
 * platform endpoint's request and reply, as JSON Schema from which the TypeScript types are
 * derived (schema.ts). The workers and the worker's service return these types,
 * the SDK reads them, and scripts/gen-protocol-schema.ts writes the same schemas to
 * docs/protocol.schema.json for apps on other languages; test/integration/protocol-schema.test.ts
 * validates what real workers store and publish against it.
 */
import { MAX_NAME_LENGTH, MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS } from './claims.js';
import { ANSWER_CODES, ENDPOINT_STATUS } from './errors.js';
import {
  Broadcast,
  REQUEST_EVENT_PATTERN,
  REQUEST_ID_PATTERN,
  RequestEvent,
  type BroadcastMessage,
} from './events.js';
import { ID_PATTERN } from './ids.js';
import { MAX_DEVICE_ID_LENGTH, PlatformEvent, ServiceSubject } from './subjects.js';
import {
  anyOf,
  array,
  boolean,
  described,
  integer,
  literal,
  nullValue,
  object,
  oneOfValues,
  string,
  type Infer,
} from './schema.js';
import {
  MAX_BLOCK_SECONDS,
  MAX_CURSOR_LENGTH,
  MAX_KICK_REASON_LENGTH,
  MAX_NOTE_LENGTH,
  MAX_PARTICIPANTS_PAGE,
} from './limits.js';

/** Why a participant left (platform event `torii.events.participant.left`). */
export const LeftReason = {
  /** The client said it was leaving (`REQ_LEAVE`) and closed its last connection. */
  Leave: 'leave',
  /** Its last connection closed or was lost, and it did not come back within the grace period. */
  Disconnected: 'disconnected',
} as const;
export type LeftReason = (typeof LeftReason)[keyof typeof LeftReason];

// Shared pieces. Written out in full wherever used (no $ref): each message's schema stands alone.

const id = (description: string) => string({ description, pattern: ID_PATTERN.source });
/** An ISO-8601 UTC time as `Date.toISOString()` writes it. */
const time = (description: string) =>
  string({
    description,
    format: 'date-time',
    pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z$',
  });
const count = (description: string) => integer({ description, minimum: 0 });

const participant = object(
  {
    userId: id('The user id (the token `sub`).'),
    name: string({ description: 'Display name (the user id when the token had none).' }),
    role: string({ description: "The role the user was admitted with ('unknown' if not known)." }),
    since: time('When the user joined.'),
  },
  { description: 'A member present in the room.' },
);

/**
 * A present participant's connection state (`torii.rooms.participants`): `online` while a
 * connection is open, `away` when its connections closed within the grace period (it may still
 * come back). Presence records also know `left`, which holds no seat and is never listed.
 */
export const ParticipantState = { Online: 'online', Away: 'away' } as const;
export type ParticipantState = (typeof ParticipantState)[keyof typeof ParticipantState];

const hand = object(
  {
    userId: id('Whose hand.'),
    raisedAt: time('When it was raised; the queue is in this order.'),
    note: string({ description: 'The note given with it (empty without).' }),
  },
  { description: 'A raised hand.' },
);

const features = object(
  { chat: boolean(), whiteboard: boolean(), raiseHand: boolean() },
  { description: "The room's features." },
);

const mediaGrants = object(
  { canPublish: boolean(), canSubscribe: boolean(), canPublishData: boolean() },
  { description: "The role's media grants (what its LiveKit token allows)." },
);

const empty = object({});

/** Every request event: its `data` and its answer's `data`. */
const REQUESTS = {
  [RequestEvent.InitialData]: {
    description: 'The room, the user, its rights, the participants and the raised hands.',
    request: empty,
    answer: object(
      {
        room: object({ id: id('Room id.'), title: string(), features }),
        me: object({
          userId: id('The user.'),
          role: id('The role of the connection that asked.'),
          permissions: object(
            {
              chat: boolean(),
              whiteboard: boolean(),
              moderator: boolean(),
              raiseHand: boolean(),
              media: mediaGrants,
            },
            { description: 'What the user may do.' },
          ),
        }),
        participants: array(participant, {
          description:
            'Members present, in join order; in a large room only moderators, raised hands and the latest to join.',
        }),
        participantCount: count('Members present, listed or not.'),
        participantsPartial: literal(true, {
          description: 'Present in a large room: `participants` is a part; page the rest.',
        }),
        hands: array(hand, { description: 'Raised hands, in the order they were raised.' }),
        snapshotSeq: count('Broadcasts at or below this room stream sequence are in the answer.'),
        notesOmitted: literal(true, {
          description:
            "Present when the hands' notes were emptied to keep the answer within the room's largest message.",
        }),
      },
      { optional: ['participantsPartial', 'notesOmitted'] },
    ),
  },
  [RequestEvent.MediaServerData]: {
    description: 'Where and how to join the media room (a LiveKit token for this user).',
    request: empty,
    answer: object({
      url: string({ description: 'LiveKit server URL.' }),
      token: string({ description: 'LiveKit access token; its grants follow the role.' }),
      room: string({ description: 'LiveKit room name.' }),
      identity: id('The user id, its identity in LiveKit.'),
      expiresAt: time('When the token expires: ask again before.'),
      broadcast: boolean({ description: 'A stage of presenters rather than a grid.' }),
    }),
  },
  [RequestEvent.RenewToken]: {
    description: 'A fresh room token for the next reconnect.',
    request: empty,
    answer: object({
      token: string({ description: 'The new room token.' }),
      expiresAt: time('Its expiry.'),
    }),
  },
  [RequestEvent.RaiseHand]: {
    description: "Raises the sender's hand.",
    request: object(
      { note: string({ maxLength: MAX_NOTE_LENGTH, description: 'Shown with the hand.' }) },
      { optional: ['note'] },
    ),
    answer: empty,
  },
  [RequestEvent.LowerHand]: {
    description: "Lowers the sender's hand, or (moderators) another user's.",
    request: object(
      { userId: id("Whose hand (a moderator); the sender's without it.") },
      { optional: ['userId'] },
    ),
    answer: empty,
  },
  [RequestEvent.Leave]: {
    description:
      'The client is about to close: its departure is immediate, without the grace period.',
    request: empty,
    answer: object({
      immediate: boolean({
        description:
          'False when a departure made immediate within the leave window takes the grace period.',
      }),
    }),
  },
  [RequestEvent.RestoreConsumer]: {
    description: "Restores the sender's consumer (its own or a device's) when no server serves it.",
    request: object(
      {
        deviceId: string({
          pattern: `^[A-Za-z0-9_-]{1,${MAX_DEVICE_ID_LENGTH}}$`,
          description: "The device's consumer.",
        }),
      },
      { optional: ['deviceId'] },
    ),
    answer: object({
      consumer: string({ description: 'The consumer name.' }),
      restored: boolean({ description: 'False when it was served and nothing was done.' }),
    }),
  },
  [RequestEvent.Participants]: {
    description: "A page of the room's participants in join order.",
    request: object(
      {
        cursor: anyOf(string({ maxLength: MAX_CURSOR_LENGTH }), nullValue()),
        limit: integer({ minimum: 1, maximum: MAX_PARTICIPANTS_PAGE }),
      },
      { optional: ['cursor', 'limit'] },
    ),
    answer: object({
      participants: array(participant),
      next: anyOf(string({ description: 'The cursor of the next page.' }), nullValue()),
      total: count('Members present in all.'),
      snapshotSeq: count('The room stream sequence the page was read at.'),
    }),
  },
} as const;

/** Every broadcast's `data` (on `room.{roomId}.evt`, `.evt.{userId}`, `.evt.~presence`). */
const BROADCASTS = {
  [Broadcast.HandRaised]: object({
    userId: id('Whose hand.'),
    raisedAt: time('When.'),
    note: string({ maxLength: MAX_NOTE_LENGTH, description: 'The note (empty without).' }),
  }),
  [Broadcast.HandLowered]: object({
    userId: id('Whose hand.'),
    by: id("Who lowered it: its owner, a moderator, or 'system' when its owner left."),
  }),
  [Broadcast.ParticipantJoined]: object(
    {
      userId: id('Who joined.'),
      name: string({ description: 'Display name; absent when the worker did not know it.' }),
      role: id('Its role; absent when the worker did not know it.'),
      since: time('When.'),
    },
    { optional: ['name', 'role'] },
  ),
  [Broadcast.ParticipantLeft]: object({ userId: id('Who left.') }),
  [Broadcast.RoomUpdated]: object({ roomId: id('The room.'), title: string(), features }),
  [Broadcast.SessionEnded]: object({
    roomId: id('The room.'),
    reason: string({ description: 'Why, for people.' }),
  }),
  [Broadcast.PresenceBatch]: object({
    n: integer({ minimum: 1, description: 'Number of the batch in its room (consecutive).' }),
    joined: array(participant, {
      description: 'Who joined and is still present, as far as listed.',
    }),
    left: array(id('A user who left.'), { description: 'Who left, as far as listed.' }),
    joinedCount: count('All joins the batch covers, listed or not.'),
    leftCount: count('All departures the batch covers, listed or not.'),
    present: count('Members present when the batch was made.'),
    truncated: boolean({
      description: 'Some changes are counted but not listed: page the list again.',
    }),
  }),
} as const;

/** Every platform event's body (core NATS, on the subject that is its name). */
const PLATFORM_EVENTS = {
  [PlatformEvent.ParticipantJoined]: object({
    roomId: id('The room.'),
    userId: id('Who joined.'),
    name: string(),
    role: string(),
    at: time('When.'),
  }),
  [PlatformEvent.ParticipantLeft]: object({
    roomId: id('The room.'),
    userId: id('Who left.'),
    reason: oneOfValues([LeftReason.Leave, LeftReason.Disconnected]),
    at: time('When.'),
  }),
  [PlatformEvent.HandRaised]: object({
    roomId: id('The room.'),
    userId: id('Whose hand.'),
    note: string({ maxLength: MAX_NOTE_LENGTH }),
    at: time('When.'),
  }),
  [PlatformEvent.HandLowered]: object({
    roomId: id('The room.'),
    userId: id('Whose hand.'),
    by: id("Who lowered it, or 'system' when its owner left."),
    at: time('When.'),
  }),
  [PlatformEvent.RoomEnded]: object({
    roomId: id('The room.'),
    reason: string(),
    at: time('When.'),
  }),
} as const;

/**
 * What a kick's removal from LiveKit came to (`torii.rooms.kick`'s `media`): the worker's media
 * remover returns it.
 */
export const MediaOutcome = {
  /** The identity was in the room and LiveKit removed it. */
  Removed: 'removed',
  /** The identity (or the room) was not there. */
  Absent: 'absent',
  /** LiveKit did not answer or refused: the guard tries again. */
  Failed: 'failed',
  /** No media server is configured on this worker. */
  Off: 'off',
} as const;
export type MediaOutcome = (typeof MediaOutcome)[keyof typeof MediaOutcome];

const roomSummary = object(
  {
    roomId: id('The room.'),
    title: string(),
    maxParticipants: integer({ minimum: 1, description: 'Seats.' }),
    participants: count('Members present (seat-holders).'),
    features,
    roles: array(id('A role name.'), { description: "The room's roles (`role` of a token)." }),
    media: object(
      {
        livekitRoom: string({ description: 'LiveKit room name.' }),
        broadcast: boolean({ description: 'A stage of presenters rather than a grid.' }),
      },
      { description: "The room's media settings." },
    ),
  },
  { description: 'A room as the platform sees it.' },
);

const roomRequest = object({ roomId: id('The room.') });

/**
 * Every platform endpoint (the micro service `torii`, queue group `torii_queue`; docs/platform.md):
 * its micro endpoint name, the body of its request and the body of its successful reply. A
 * NestJS caller's envelope carries the same request as `data` and the same reply as `response`.
 */
export const ENDPOINTS = {
  [ServiceSubject.RoomsList]: {
    name: 'rooms_list',
    description: 'Every room with its number of members present.',
    request: empty,
    reply: array(roomSummary),
  },
  [ServiceSubject.RoomsGet]: {
    name: 'rooms_get',
    description: 'One room with its number of members present.',
    request: roomRequest,
    reply: roomSummary,
  },
  [ServiceSubject.RoomsParticipants]: {
    name: 'rooms_participants',
    description: "The room's members present, in join order.",
    request: roomRequest,
    reply: object({
      roomId: id('The room.'),
      participants: array(
        object(
          {
            ...participant.properties,
            state: oneOfValues([ParticipantState.Online, ParticipantState.Away]),
          },
          { description: 'A member present in the room, with its connection state.' },
        ),
      ),
    }),
  },
  [ServiceSubject.RoomsKick]: {
    name: 'rooms_kick',
    description:
      "Blocks a user from a room for a while and closes the user's connections and media.",
    request: object(
      {
        roomId: id('The room.'),
        userId: id('Whom.'),
        reason: string({
          maxLength: MAX_KICK_REASON_LENGTH,
          description: "Why, kept with the block ('kicked').",
        }),
        durationSeconds: integer({
          minimum: 1,
          maximum: MAX_BLOCK_SECONDS,
          description: "How long the block lasts (the worker's `--block-ttl` without it).",
        }),
      },
      { optional: ['reason', 'durationSeconds'] },
    ),
    reply: object({
      roomId: id('The room.'),
      userId: id('Whom.'),
      kicked: count('Connections the servers closed.'),
      blockedUntil: time('When the block ends.'),
      media: oneOfValues(
        [MediaOutcome.Removed, MediaOutcome.Absent, MediaOutcome.Failed, MediaOutcome.Off],
        { description: 'What the removal from the media room came to.' },
      ),
    }),
  },
  [ServiceSubject.TokensIssue]: {
    name: 'tokens_issue',
    description: 'A room token for a user, as the web backend hands it to a client.',
    request: object(
      {
        roomId: id('The room.'),
        userId: id('The user (the token `sub`).'),
        role: id("One of the room's roles."),
        name: string({ maxLength: MAX_NAME_LENGTH, description: 'Display name.' }),
        ttlSeconds: integer({
          minimum: MIN_TOKEN_TTL_MS / 1000,
          maximum: MAX_TOKEN_TTL_MS / 1000,
          description: "Lifetime (the worker's token TTL without it).",
        }),
      },
      { optional: ['name', 'ttlSeconds'] },
    ),
    reply: object({
      token: string({ description: 'The room token (a JWT).' }),
      expiresAt: time('Its expiry.'),
    }),
  },
} as const;

/** The body of a platform endpoint's request. */
export type EndpointRequest<S extends ServiceSubject> = Infer<(typeof ENDPOINTS)[S]['request']>;
/** The body of a platform endpoint's successful reply. */
export type EndpointReply<S extends ServiceSubject> = Infer<(typeof ENDPOINTS)[S]['reply']>;
/** Each platform endpoint with its request and its reply. */
export type Endpoints = {
  [S in ServiceSubject]: { request: EndpointRequest<S>; reply: EndpointReply<S> };
};
/** A refusal as a NestJS caller reads it (its observable fails with this). */
export type EndpointRefusal = Infer<typeof endpointError>;

/** The data a request event carries. */
export type RequestData<E extends RequestEvent> = Infer<(typeof REQUESTS)[E]['request']>;
/** The data of a request event's successful answer. */
export type AnswerData<E extends RequestEvent> = Infer<(typeof REQUESTS)[E]['answer']>;
/** Each request event with its data and its answer's data. */
export type Requests = { [E in RequestEvent]: { request: RequestData<E>; answer: AnswerData<E> } };
/** A broadcast's data. */
export type BroadcastData<B extends Broadcast> = Infer<(typeof BROADCASTS)[B]>;
/** A platform event's body. */
export type PlatformEventData<P extends PlatformEvent> = Infer<(typeof PLATFORM_EVENTS)[P]>;

/** A broadcast with its data, ready to send. */
export type BroadcastOf = { [B in Broadcast]: { event: B; data: BroadcastData<B> } }[Broadcast];
/** A platform event with its body, ready to publish. */
export type PlatformMessage = {
  [P in PlatformEvent]: { event: P; data: PlatformEventData<P> };
}[PlatformEvent];

export type Participant = Infer<typeof participant>;
export type RaisedHand = Infer<typeof hand>;
export type Permissions = AnswerData<typeof RequestEvent.InitialData>['me']['permissions'];
export type InitialData = AnswerData<typeof RequestEvent.InitialData>;
export type MediaServerData = AnswerData<typeof RequestEvent.MediaServerData>;
export type ParticipantsPage = AnswerData<typeof RequestEvent.Participants>;
export type RenewedToken = AnswerData<typeof RequestEvent.RenewToken>;

/** True for the name of a request event this contract defines. */
export const isRequestEvent = (event: string): event is RequestEvent =>
  Object.hasOwn(REQUESTS, event);

/** Builds the JSON of a broadcast. */
export function broadcast<B extends Broadcast>(
  event: B,
  data: BroadcastData<B>,
  at: Date = new Date(),
): string {
  const msg: BroadcastMessage<BroadcastData<B>> = { event, data, at: at.toISOString() };
  return JSON.stringify(msg);
}

// The envelopes, for the generated file: what travels on each subject, whole.

const requestId = string({
  description: "The request's id, echoed by its answer.",
  pattern: REQUEST_ID_PATTERN.source,
});
const answerId = string({ description: "The request's id.", pattern: REQUEST_ID_PATTERN.source });
const answerError = object({
  code: oneOfValues(ANSWER_CODES),
  message: string({ description: 'Why, for people.' }),
});

const endpointError = object({
  code: oneOfValues(Object.keys(ENDPOINT_STATUS) as (keyof typeof ENDPOINT_STATUS)[]),
  message: string({ description: 'Why, for people.' }),
});
const nestId = string({ description: "The NestJS request's id, echoed by its reply." });

/** The definitions of one platform endpoint: its micro request and reply, and NestJS's envelopes. */
function endpointDefinitions(key: string, subject: ServiceSubject): Record<string, object> {
  const e = ENDPOINTS[subject];
  return {
    [`${key}EndpointRequest`]: described(
      `The body of a request to ${subject} (endpoint ${e.name}; an empty body is {}): ${e.description}`,
      e.request,
    ),
    [`${key}EndpointReply`]: described(
      `The body of a successful reply of ${subject}; a refusal has an empty body and the headers EndpointErrorHeaders.`,
      e.reply,
    ),
    [`${key}NestRequest`]: described(
      `${subject} as a NestJS ClientProxy.send(pattern, data) publishes it.`,
      object({ pattern: literal(subject), data: e.request, id: nestId }, { optional: ['data'] }),
    ),
    [`${key}NestReply`]: described(
      `The reply of ${subject} to a NestJS request: its data, or the refusal (with the micro headers too).`,
      anyOf(
        object({ id: nestId, response: e.reply, isDisposed: literal(true) }),
        object({ id: nestId, err: endpointError, isDisposed: literal(true) }),
      ),
    ),
  };
}

/** Every JSON Schema definition of docs/protocol.schema.json, by name. */
function protocolDefinitions(): Record<string, object> {
  const defs: Record<string, object> = {};
  for (const [key, event] of Object.entries(RequestEvent)) {
    const r = REQUESTS[event];
    const answerEvent = literal(`RES_${event.slice(4)}`);
    defs[`${key}Request`] = described(
      `${event} on sysJsWorker.{roomId}.{userId}.{role}: ${r.description}`,
      object({ event: literal(event), id: requestId, data: r.request }, { optional: ['data'] }),
    );
    defs[`${key}Answer`] = described(
      `The answer to ${event}, stored on room.{roomId}.user.{userId}.`,
      anyOf(
        object({ event: answerEvent, id: answerId, ok: literal(true), data: r.answer }),
        object({ event: answerEvent, id: answerId, ok: literal(false), error: answerError }),
      ),
    );
  }
  defs['ErrorAnswer'] = described(
    'The answer to a request whose event is unknown (RES_ + its name) or unreadable (RES_ERROR).',
    object({
      event: string({ pattern: REQUEST_EVENT_PATTERN.source.replace('REQ_', 'RES_') }),
      id: answerId,
      ok: literal(false),
      error: answerError,
    }),
  );
  for (const [key, event] of Object.entries(Broadcast))
    defs[`${key}Broadcast`] = described(
      `${event}, stored on room.{roomId}.evt (or .evt.{userId}, .evt.~presence).`,
      object({
        event: literal(event),
        data: BROADCASTS[event],
        at: time('When it happened.'),
      }),
    );
  for (const [key, event] of Object.entries(PlatformEvent))
    defs[`${key}PlatformEvent`] = described(
      `The body of the platform event ${event} (core NATS, subject ${event}).`,
      PLATFORM_EVENTS[event],
    );
  for (const [key, subject] of Object.entries(ServiceSubject))
    Object.assign(defs, endpointDefinitions(key, subject));
  defs['EndpointErrorHeaders'] = described(
    "The headers of a platform endpoint's refusal (the micro protocol's; its body is empty).",
    object({
      'Nats-Service-Error-Code': oneOfValues(Object.values(ENDPOINT_STATUS).map(String), {
        description: `The status: ${Object.entries(ENDPOINT_STATUS)
          .map(([code, status]) => `${code} ${status}`)
          .join(', ')}.`,
      }),
      'Nats-Service-Error': string({ description: 'Why, for people.' }),
    }),
  );
  return defs;
}

/** The definition that describes a message stored or published under `name` (see the test). */
export const definitionOf = {
  request: (event: RequestEvent): string => `${keyOf(RequestEvent, event)}Request`,
  answer: (event: string): string => {
    const request = `REQ_${event.slice(4)}`;
    return isRequestEvent(request) ? `${keyOf(RequestEvent, request)}Answer` : 'ErrorAnswer';
  },
  broadcast: (event: Broadcast): string => `${keyOf(Broadcast, event)}Broadcast`,
  platform: (event: PlatformEvent): string => `${keyOf(PlatformEvent, event)}PlatformEvent`,
  /** A platform endpoint's message: from a micro client or a NestJS one, request or reply. */
  endpoint: (
    subject: ServiceSubject,
    caller: 'micro' | 'nest',
    message: 'request' | 'reply',
  ): string =>
    `${keyOf(ServiceSubject, subject)}${caller === 'micro' ? 'Endpoint' : 'Nest'}${message === 'request' ? 'Request' : 'Reply'}`,
  endpointError: 'EndpointErrorHeaders',
};

/** True for the subject of a platform endpoint this contract defines. */
export const isServiceSubject = (subject: string): subject is ServiceSubject =>
  Object.hasOwn(ENDPOINTS, subject);

function keyOf(o: Readonly<Record<string, string>>, value: string): string {
  const k = Object.keys(o).find((x) => o[x] === value);
  if (k === undefined) throw new Error(`not a name of the contract: ${value}`);
  return k;
}

/** The whole of docs/protocol.schema.json. */
function protocolSchema(): object {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'torii-protocol.schema.json',
    title: 'Torii wire protocol',
    description:
      'Every message between Torii room clients, workers and platform services (docs/protocol.md). Generated from src/protocol/messages.ts by scripts/gen-protocol-schema.ts; do not edit.',
    $defs: protocolDefinitions(),
  };
}

/** docs/protocol.schema.json as scripts/gen-protocol-schema.ts writes it. */
export const renderProtocolSchema = (): string => `${JSON.stringify(protocolSchema(), null, 2)}\n`;
