/**
 * The wire contract, written once (docs/protocol.md, docs/platform.md): the data of every request
 * a client sends and of its answer, of every broadcast and of every platform event, as JSON
 * Schema from which the TypeScript types are derived (schema.ts). The workers return these types,
 * the SDK reads them, and scripts/gen-protocol-schema.ts writes the same schemas to
 * docs/protocol.schema.json for apps on other languages; test/integration/protocol-schema.test.ts
 * validates what real workers store and publish against it.
 */
import { ANSWER_CODES } from './errors.js';
import {
  Broadcast,
  REQUEST_EVENT_PATTERN,
  REQUEST_ID_PATTERN,
  RequestEvent,
  type BroadcastMessage,
} from './events.js';
import { ID_PATTERN } from './ids.js';
import { MAX_DEVICE_ID_LENGTH, PlatformEvent } from './subjects.js';
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

/** Largest hand-raise note, in characters. */
export const MAX_NOTE_LENGTH = 200;
/** Most participants one `REQ_PARTICIPANTS` page may ask for. */
export const MAX_PARTICIPANTS_PAGE = 500;
/** Longest `REQ_PARTICIPANTS` cursor, in characters (an ISO-8601 time, `|`, a user id). */
export const MAX_CURSOR_LENGTH = 100;

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
export const REQUESTS = {
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
export const BROADCASTS = {
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
export const PLATFORM_EVENTS = {
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

/** Every JSON Schema definition of docs/protocol.schema.json, by name. */
export function protocolDefinitions(): Record<string, object> {
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
};

function keyOf(o: Readonly<Record<string, string>>, value: string): string {
  const k = Object.keys(o).find((x) => o[x] === value);
  if (k === undefined) throw new Error(`not a name of the contract: ${value}`);
  return k;
}

/** The whole of docs/protocol.schema.json. */
export function protocolSchema(): object {
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
