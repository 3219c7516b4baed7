/** Which requests are NestJS envelopes, and the replies NestJS reads (src/worker/nest-envelope.ts). */
import { nestError, nestResponse, readRequest } from '../../src/worker/nest-envelope.js';

const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
const SUBJECT = 'torii.rooms.get';

describe('readRequest', () => {
  test('a NestJS envelope for this subject: its data is the request', () => {
    expect(
      readRequest(SUBJECT, bytes({ pattern: SUBJECT, data: { roomId: 'n5' }, id: 'u1' })),
    ).toEqual({
      caller: { kind: 'nest', id: 'u1' },
      body: { roomId: 'n5' },
    });
  });

  test('an envelope without data (NestJS drops undefined) has no body', () => {
    expect(readRequest(SUBJECT, bytes({ pattern: SUBJECT, id: 'u1' }))).toEqual({
      caller: { kind: 'nest', id: 'u1' },
      body: undefined,
    });
  });

  test.each([
    ['a plain body', { roomId: 'n5' }],
    ['another subject as pattern', { pattern: 'torii.rooms.list', data: {}, id: 'u1' }],
    ['no id (a NestJS emit)', { pattern: SUBJECT, data: {} }],
    ['a numeric id', { pattern: SUBJECT, data: {}, id: 1 }],
    ['an array', [SUBJECT]],
  ])('%s is a micro request, body and all', (_w, v) => {
    expect(readRequest(SUBJECT, bytes(v))).toEqual({ caller: { kind: 'micro' }, body: v });
  });

  test('an empty payload is a micro request without body; garbage throws', () => {
    expect(readRequest(SUBJECT, new Uint8Array())).toEqual({
      caller: { kind: 'micro' },
      body: undefined,
    });
    expect(() => readRequest(SUBJECT, new TextEncoder().encode('{'))).toThrow(SyntaxError);
  });
});

test('replies carry the id, and isDisposed so that NestJS completes', () => {
  expect(JSON.parse(nestResponse('u1', [1]))).toEqual({
    id: 'u1',
    response: [1],
    isDisposed: true,
  });
  expect(JSON.parse(nestError('u1', { code: 'NOT_FOUND', message: 'm' }))).toEqual({
    id: 'u1',
    err: { code: 'NOT_FOUND', message: 'm' },
    isDisposed: true,
  });
});
