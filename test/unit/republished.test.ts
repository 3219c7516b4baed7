import { headers as natsHeaders } from '@nats-io/nats-core';
import { MsgImpl } from '@nats-io/nats-core/internal';
import {
  parseRepublished,
  readStreamHeaders,
  received,
  type StreamHeaders,
} from '../../src/client/republished.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
/** A header block the way nats-server writes it for a republished copy. */
const serverBlock = (before = '', seq = 42) =>
  `NATS/1.0\r\n${before}Nats-Stream: n5\r\nNats-Subject: room.n5.chat.hana\r\n` +
  `Nats-Sequence: ${seq}\r\nNats-Time-Stamp: 2026-12-01T10:27:49.646709426Z\r\n` +
  `Nats-Last-Sequence: 41\r\n\r\n`;

describe('readStreamHeaders', () => {
  test('reads the three stream headers of a copy', () => {
    expect(readStreamHeaders(bytes(serverBlock()))).toEqual({
      stream: 'n5',
      subject: 'room.n5.chat.hana',
      sequence: '42',
    });
  });

  test("the server's values win over forged ones a publisher put before them", () => {
    const forged =
      'Nats-Sequence: 999999999\r\nNats-Stream: other\r\nNats-Subject: room.other.x\r\n' +
      'X-App: 1\r\n';
    expect(readStreamHeaders(bytes(serverBlock(forged)))).toEqual({
      stream: 'n5',
      subject: 'room.n5.chat.hana',
      sequence: '42',
    });
  });

  test('names match exactly; values are trimmed; other headers are ignored', () => {
    const block =
      'NATS/1.0\r\nnats-sequence: 7\r\nNats-Sequence:\t 8 \r\nNats-Sequences: 9\r\n\r\n';
    expect(readStreamHeaders(bytes(block))).toEqual({ sequence: '8' });
  });

  test('a status block or one without stream headers has none; non-blocks are refused', () => {
    expect(readStreamHeaders(bytes('NATS/1.0 503\r\n\r\n'))).toEqual({});
    expect(readStreamHeaders(bytes('NATS/1.0\r\nNats-Sequence: 3'))).toEqual({}); // truncated
    expect(readStreamHeaders(bytes('HTTP/1.1\r\n\r\n'))).toBeUndefined();
    expect(readStreamHeaders(bytes('NATS/1.0'))).toBeUndefined();
    expect(readStreamHeaders(new Uint8Array())).toBeUndefined();
  });
});

describe('received', () => {
  /** A message as the nats.js 3.x parser hands it to a subscription. */
  const parsed = (block: string, payload: string): MsgImpl => {
    const raw = bytes(block + payload);
    const hdr = bytes(block).length;
    return new MsgImpl(
      { subject: bytes('room.n5.rp.chat.hana'), sid: 1, size: raw.length, hdr },
      raw,
      { publish: () => undefined },
    );
  };

  test('reads a nats.js message from its bytes, last value wins, payload untouched', () => {
    const m = parsed(serverBlock('Nats-Sequence: 999999999\r\n'), '{"text":"hi"}');
    const r = received(m);
    expect(r.stream).toEqual({ stream: 'n5', subject: 'room.n5.chat.hana', sequence: '42' });
    expect(new TextDecoder().decode(r.body)).toBe('{"text":"hi"}');
    expect(r.hasHeaders).toBe(true);
    // Read from the bytes: nats.js never built its header map (this pins the 3.x message shape).
    expect((m as unknown as { _headers?: unknown })._headers).toBeUndefined();
  });

  test('any other transport: the public header map, with the same rule', () => {
    const h = natsHeaders();
    h.append('Nats-Sequence', '999999999');
    h.append('Nats-Stream', 'n5');
    h.append('Nats-Subject', 'room.n5.chat.hana');
    h.append('Nats-Sequence', '42');
    const r = received({ subject: 'room.n5.rp.chat.hana', headers: h, data: bytes('{}') });
    expect(r.stream).toEqual({ stream: 'n5', subject: 'room.n5.chat.hana', sequence: '42' });
    expect(received({ subject: 's', data: bytes('{}') }).hasHeaders).toBe(false);
  });
});

describe('parseRepublished', () => {
  const stream: StreamHeaders = { stream: 'n5', subject: 'room.n5.chat.hana', sequence: '42' };
  const copy = (o: Partial<Parameters<typeof parseRepublished>[1]> = {}) =>
    parseRepublished('n5', {
      subject: 'room.n5.rp.chat.hana',
      hasHeaders: true,
      stream,
      body: bytes('{"text":"hi"}'),
      ...o,
    });

  test('a republished copy: the stored subject and its sequence', () => {
    expect(copy()).toEqual({ subject: 'room.n5.chat.hana', seq: 42, kind: 'chat', userId: 'hana' });
  });

  test.each<[string, Partial<Parameters<typeof parseRepublished>[1]>]>([
    ['a reply aimed here (no stream headers)', { hasHeaders: false, stream: undefined }],
    ['a status message (headers, none of the stream)', { stream: {} }],
    ['a pulled delivery (a reply, its own subject)', { reply: '$JS.ACK.n5.hana.1.2.3.4.0' }],
    ['a copy from another room', { subject: 'room.other.rp.chat.hana' }],
    ['a subject that is not a republished one', { subject: 'room.n5.chat.hana' }],
    ['headers of another stream', { stream: { ...stream, stream: 'other' } }],
    [
      'a stored subject that differs from the one republished',
      { stream: { ...stream, subject: 'room.n5.chat.kenji' } },
    ],
    ['no sequence', { stream: { ...stream, sequence: '' } }],
    ['a sequence that is not a positive integer', { stream: { ...stream, sequence: '4.5' } }],
    ['a live subject', { subject: 'room.n5.rp.live.hana' }],
  ])('drops %s', (_what, o) => {
    expect(copy(o)).toBeUndefined();
  });
});
