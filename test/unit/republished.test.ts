import { headers as natsHeaders } from '@nats-io/nats-core';
import { MsgImpl } from '@nats-io/nats-core/internal';
import {
  parseRepublished,
  readCopy,
  readStreamHeaders,
  received,
  roomCopies,
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

  test('a forged block that ends in an empty line: the server appends after it, and still wins', () => {
    // nats-server keeps the publisher's block and appends its own lines after its last CRLF
    const forged = 'Nats-Sequence: 999999999\r\nNats-Stream: n5\r\n\r\nX-After: 1\r\n';
    expect(readStreamHeaders(bytes(serverBlock(forged)))).toEqual({
      stream: 'n5',
      subject: 'room.n5.chat.hana',
      sequence: '42',
    });
    // Only forged values, no server line after them: those are what the block says.
    expect(readStreamHeaders(bytes('NATS/1.0\r\nNats-Sequence: 9\r\n\r\nX: 1\r\n\r\n'))).toEqual({
      sequence: '9',
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

/** A message as the nats.js 3.x parser hands it to a subscription (raw bytes, header length). */
function natsMsg(block: string | undefined, payload: string, subject: string, reply?: string) {
  const raw = bytes((block ?? '') + payload);
  const arg = {
    subject: bytes(subject),
    sid: 1,
    size: raw.length,
    hdr: block ? bytes(block).length : -1,
  };
  return new MsgImpl(reply ? { ...arg, reply: bytes(reply) } : arg, raw, {
    publish: () => undefined,
  });
}

/** What the general path makes of a message: parseRepublished(received(m)). */
const general = (m: MsgImpl) => parseRepublished('n5', received(m));

describe('readCopy', () => {
  const room = roomCopies('n5');
  const copy = (block: string | undefined, subject = 'room.n5.rp.chat.hana', reply?: string) => {
    const m = natsMsg(block, '{"text":"hi"}', subject, reply);
    const r = readCopy(room, m);
    // The same answer as the general path, which reads the header text.
    expect(r).toEqual(general(natsMsg(block, '{"text":"hi"}', subject, reply)));
    return r;
  };
  const block = (lines: string) => `NATS/1.0\r\n${lines}\r\n`;
  const server = (seq: string, o: { stream?: string; subject?: string } = {}) =>
    `Nats-Stream: ${o.stream ?? 'n5'}\r\nNats-Subject: ${o.subject ?? 'room.n5.chat.hana'}\r\n` +
    `Nats-Sequence: ${seq}\r\nNats-Time-Stamp: 2026-12-01T10:27:49.646709426Z\r\n` +
    'Nats-Last-Sequence: 41\r\n';

  test('a republished copy, read from its bytes', () => {
    expect(copy(serverBlock())).toEqual({
      subject: 'room.n5.chat.hana',
      seq: 42,
      kind: 'chat',
      userId: 'hana',
    });
    expect(copy(block(server('7', { subject: 'room.n5.evt' })), 'room.n5.rp.evt')).toEqual({
      subject: 'room.n5.evt',
      seq: 7,
      kind: 'evt',
    });
  });

  test.each<[string, string]>([
    ['forged values first', 'Nats-Sequence: 999999999\r\nNats-Stream: x\r\nNats-Subject: y\r\n'],
    ['forged values, then an empty line', 'Nats-Sequence: 999999999\r\n\r\n'],
    ['forged values, two empty lines, other headers', 'Nats-Sequence: 9\r\n\r\n\r\nX-App: 1\r\n'],
    ['a forged name that is not one', 'Nats-S: 1\r\nNats-Seq: 5\r\nNats-Sequences: 6\r\n'],
  ])('the server’s values win over %s', (_what, before) => {
    expect(copy(serverBlock(before))?.seq).toBe(42);
  });

  test.each<[string, string | undefined, string?, string?]>([
    ['no header block', undefined],
    ['a reply (a pulled delivery)', serverBlock(), undefined, '$JS.ACK.n5.hana.1.42.42.0.0'],
    ['a status block', 'NATS/1.0 503\r\n\r\n'],
    ['no version line', `HTTP/1.1\r\n${server('42')}\r\n`],
    ['another stream', block(server('42', { stream: 'n55' }))],
    ['a stream name that is a prefix', block(server('42', { stream: 'n' }))],
    ['another stored subject', block(server('42', { subject: 'room.n5.chat.kenji' }))],
    ['a longer stored subject', block(server('42', { subject: 'room.n5.chat.hanax' }))],
    ['a copy of another room', serverBlock(), 'room.other.rp.chat.hana'],
    [
      'a live subject',
      block(server('42', { subject: 'room.n5.live.hana' })),
      'room.n5.rp.live.hana',
    ],
    ['a subject that is not a copy', serverBlock(), 'room.n5.chat.hana'],
    ['a fraction', block(server('4.5'))],
    ['an exponent', block(server('1e3'))],
    ['a sign', block(server('+42'))],
    ['zero', block(server('0'))],
    ['an empty sequence', block(server(''))],
    ['16 digits', block(server('1234567890123456'))],
    ['a lone CR in the value', block(server('4\r2'))],
    [
      'only lowercase names',
      'NATS/1.0\r\nnats-stream: n5\r\nnats-subject: room.n5.chat.hana\r\nnats-sequence: 4\r\n\r\n',
    ],
    [
      'the sequence on a line without its CRLF',
      'NATS/1.0\r\nNats-Stream: n5\r\nNats-Subject: room.n5.chat.hana\r\nNats-Sequence: 4',
    ],
  ])('drops %s', (...row) => {
    // spread: rows have 2 to 4 entries, and jest takes a test function's extra parameter for `done`
    const [, b, subject, reply] = row;
    expect(copy(b, subject, reply)).toBeUndefined();
  });

  test.each<[string, string, number]>([
    ['leading zeros', '0042', 42],
    ['spaces and tabs around it', ' \t42\t ', 42],
    ['15 digits', '123456789012345', 123456789012345],
  ])('a sequence with %s', (_what, seq, want) => {
    expect(copy(block(server(seq)))?.seq).toBe(want);
  });

  test('a line without its CRLF after the server’s is not read', () => {
    expect(copy(serverBlock() + 'Nats-Sequence: 43')?.seq).toBe(42);
  });

  test('subjects known by their bytes: two in one slot of the table each keep their own', () => {
    // same length, same last two bytes: one slot
    const a = copy(block(server('5', { subject: 'room.n5.chat.xab' })), 'room.n5.rp.chat.xab');
    const b = copy(block(server('6', { subject: 'room.n5.chat.yab' })), 'room.n5.rp.chat.yab');
    const a2 = copy(block(server('7', { subject: 'room.n5.chat.xab' })), 'room.n5.rp.chat.xab');
    expect([a?.userId, b?.userId, a2?.userId]).toEqual(['xab', 'yab', 'xab']);
    // a header naming the other one of the pair is refused
    expect(copy(block(server('8', { subject: 'room.n5.chat.yab' })), 'room.n5.rp.chat.xab')).toBe(
      undefined,
    );
  });

  test('a message of another transport: the general path', () => {
    const h = natsHeaders();
    h.append('Nats-Sequence', '999999999');
    h.append('Nats-Stream', 'n5');
    h.append('Nats-Subject', 'room.n5.chat.hana');
    h.append('Nats-Sequence', '42');
    expect(
      readCopy(room, { subject: 'room.n5.rp.chat.hana', headers: h, data: bytes('{}') }),
    ).toEqual({ subject: 'room.n5.chat.hana', seq: 42, kind: 'chat', userId: 'hana' });
  });

  test('random blocks: the same stream headers as a plain reading of the text', () => {
    // A plain reading: the complete lines after the version line, the last one of each exact
    // name, its value without the spaces and tabs around it.
    const plain = (text: string): StreamHeaders | undefined => {
      const first = text.indexOf('\r\n');
      if (!text.startsWith('NATS/1.0') || first < 0) return undefined;
      const found: StreamHeaders = {};
      for (const line of text
        .slice(first + 2)
        .split('\r\n')
        .slice(0, -1)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon);
        const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
        if (name === 'Nats-Stream') found.stream = value;
        if (name === 'Nats-Subject') found.subject = value;
        if (name === 'Nats-Sequence') found.sequence = value;
      }
      return found;
    };
    const pieces = [
      'Nats-Stream: n5',
      'Nats-Stream: n6',
      'Nats-Stream:n5 ',
      'Nats-Subject: room.n5.chat.hana',
      'Nats-Subject:\troom.n5.chat.kenji',
      'Nats-Sequence: 42',
      'Nats-Sequence: 7',
      'Nats-Sequence:  0013\t',
      'Nats-Sequence: 4.5',
      'nats-sequence: 5',
      'Nats-Sequences: 6',
      'Nats-S: x',
      'Nats-Se',
      'X-Nats-Sequence: 8',
      'Nats-Time-Stamp: 2026-12-01T10:27:49.646709426Z',
      'Nats-Last-Sequence: 41',
      'Nats-Sequence: 4\r2',
      'Nats-Sequence: 4\n2',
      '',
      ':',
      'NATS/1.0',
    ];
    let seed = 12345;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let accepted = 0;
    for (let run = 0; run < 3000; run++) {
      const lines = Array.from({ length: next(9) }, () => pieces[next(pieces.length)]);
      let text = `NATS/1.0${next(5) === 0 ? ' 503' : ''}\r\n${lines.map((l) => `${l}\r\n`).join('')}`;
      if (next(2) === 0) text += '\r\n';
      if (next(6) === 0) text = text.slice(0, text.length - 1 - next(12)); // cut short
      const want = plain(text);
      expect([text, readStreamHeaders(bytes(text))]).toEqual([text, want]);
      const seq = want?.sequence;
      const ok =
        want?.stream === 'n5' &&
        want.subject === 'room.n5.chat.hana' &&
        seq !== undefined &&
        /^[0-9]{1,15}$/.test(seq) &&
        Number(seq) >= 1;
      const m = natsMsg(text, '{}', 'room.n5.rp.chat.hana');
      if (ok) accepted++;
      expect([text, readCopy(room, m)?.seq]).toEqual([text, ok ? Number(seq) : undefined]);
      expect([text, general(natsMsg(text, '{}', 'room.n5.rp.chat.hana'))?.seq]).toEqual([
        text,
        ok ? Number(seq) : undefined,
      ]);
    }
    expect(accepted).toBeGreaterThan(20); // copies among them, not only refusals
  });
});
