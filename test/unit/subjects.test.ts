import * as S from '../../src/protocol/subjects.js';

describe('subjects (docs/protocol.md)', () => {
  test('room and user subjects', () => {
    expect(S.workerSubject('r1', 'u1')).toBe('sysJsWorker.r1.u1');
    expect(S.roleWorkerSubject('r1', 'u1', 'student')).toBe('sysJsWorker.r1.u1.student');
    expect(S.chatSubject('r1', 'u1')).toBe('room.r1.chat.u1');
    expect(S.whiteboardSubject('r1', 'u1')).toBe('room.r1.wb.u1');
    expect(S.roomEventsSubject('r1')).toBe('room.r1.evt');
    expect(S.userEventsSubject('r1', 'u1')).toBe('room.r1.evt.u1');
    expect(S.broadcastSubject('r1', 'u1')).toBe('room.r1.evt.u1');
    expect(S.broadcastSubject('r1', undefined)).toBe('room.r1.evt');
    expect(S.broadcastSubject('r1', 'a.b')).toBe('room.r1.evt');
    expect(S.userAnswerSubject('r1', 'u1')).toBe('room.r1.user.u1');
    expect(S.liveSubject('r1', 'u1')).toBe('room.r1.live.u1');
    expect(S.userInboxPrefix('r1', 'u1')).toBe('_INBOX.r1.u1');
    expect(S.roomStreamName('r1')).toBe('r1');
    expect(S.roomStreamSubjects('r1')).toEqual([
      'room.r1.chat.*',
      'room.r1.wb.*',
      'room.r1.evt',
      'room.r1.evt.*',
      'room.r1.user.*',
    ]);
    expect(S.WORKER_STREAM_SUBJECTS).toEqual(['sysJsWorker.*.*.*']);
  });

  test('user consumer filters do not overlap and cover chat, wb, evt and own answers', () => {
    const f = S.userConsumerFilters('r1', 'u1');
    expect(f).toEqual([
      'room.r1.chat.*',
      'room.r1.wb.*',
      'room.r1.evt',
      'room.r1.evt.*',
      'room.r1.user.u1',
    ]);
    expect(new Set(f).size).toBe(f.length);
    expect(S.userConsumerName('u1')).toBe('u1');
  });

  test('JetStream API and system subjects', () => {
    expect(S.JsApi.streamInfo('r1')).toBe('$JS.API.STREAM.INFO.r1');
    expect(S.JsApi.consumerInfo('r1', 'u1')).toBe('$JS.API.CONSUMER.INFO.r1.u1');
    expect(S.JsApi.consumerNext('r1', 'u1')).toBe('$JS.API.CONSUMER.MSG.NEXT.r1.u1');
    expect(S.JsApi.acks('r1', 'u1')).toEqual([
      '$JS.ACK.r1.u1.*.*.*.*.*',
      '$JS.ACK.*.*.r1.u1.*.*.*.*.>',
    ]);
    expect(S.CLIENT_SERVICE_IMPORTS).toContain(S.JsApi.ALL_ACKS);
    expect(S.Sys.connect('APP')).toBe('$SYS.ACCOUNT.APP.CONNECT');
    expect(S.Sys.disconnect('APP')).toBe('$SYS.ACCOUNT.APP.DISCONNECT');
    expect(S.Sys.kick('NABC')).toBe('$SYS.REQ.SERVER.NABC.KICK');
    expect(S.Sys.AUTH_CALLOUT).toBe('$SYS.REQ.USER.AUTH');
  });

  test('parseWorkerSubject is the inverse of roleWorkerSubject and rejects anything else', () => {
    expect(S.parseWorkerSubject(S.roleWorkerSubject('r-1', 'u_2', 'teacher'))).toEqual({
      roomId: 'r-1',
      userId: 'u_2',
      role: 'teacher',
    });
    expect(S.parseWorkerSubject('sysJsWorker.r1')).toBeUndefined();
    // the role-less form of the templates carries no event
    expect(S.parseWorkerSubject(S.workerSubject('r1', 'u1'))).toBeUndefined();
    expect(S.parseWorkerSubject('sysJsWorker.r1.u1.x.y')).toBeUndefined();
    expect(S.parseWorkerSubject('other.r1.u1')).toBeUndefined();
  });

  test('JetStream advisories: builders and their parser', () => {
    expect(S.JsAdvisory.consumerDeleted('r1', 'u1')).toBe(
      '$JS.EVENT.ADVISORY.CONSUMER.DELETED.r1.u1',
    );
    expect(S.parseJsAdvisory(S.JsAdvisory.consumerDeleted('r1', 'u1~d'))).toEqual({
      kind: 'CONSUMER',
      action: 'DELETED',
      stream: 'r1',
      consumer: 'u1~d',
    });
    expect(S.parseJsAdvisory(S.JsAdvisory.streamDeleted('r1'))).toEqual({
      kind: 'STREAM',
      action: 'DELETED',
      stream: 'r1',
    });
    expect(S.parseJsAdvisory(S.JsAdvisory.streamCreated('r1'))).toMatchObject({
      action: 'CREATED',
    });
    expect(S.parseJsAdvisory('$JS.EVENT.ADVISORY.STREAM.DELETED.r1.x')).toBeUndefined();
    expect(S.parseJsAdvisory('$JS.EVENT.ADVISORY.CONSUMER.DELETED.r1')).toBeUndefined();
    expect(S.parseJsAdvisory('$JS.API.STREAM.INFO.r1')).toBeUndefined();
    expect(S.clientUserName('r1', 'u1')).toBe('r1/u1');
  });

  test('parseRoomSubject is the inverse of the room subject builders and rejects anything else', () => {
    expect(S.parseRoomSubject(S.chatSubject('r1', 'u1'))).toEqual({
      roomId: 'r1',
      kind: 'chat',
      userId: 'u1',
    });
    expect(S.parseRoomSubject(S.whiteboardSubject('r1', 'u1'))?.kind).toBe('wb');
    expect(S.parseRoomSubject(S.userAnswerSubject('r1', 'u1'))?.kind).toBe('user');
    expect(S.parseRoomSubject(S.liveSubject('r1', 'u1'))?.kind).toBe('live');
    expect(S.parseRoomSubject(S.roomEventsSubject('r1'))).toEqual({ roomId: 'r1', kind: 'evt' });
    expect(S.parseRoomSubject(S.userEventsSubject('r1', 'u1'))).toEqual({
      roomId: 'r1',
      kind: 'evt',
      userId: 'u1',
    });
    for (const bad of [
      'room.r1',
      'room.r1.evt.u1.x',
      'room.r1.chat',
      'room.r1.x.u1',
      'rooms.r1.chat.u1',
      'room.r1.chat.u1.x',
    ])
      expect(S.parseRoomSubject(bad)).toBeUndefined();
  });

  test('fixed names', () => {
    expect(S.QUEUE_GROUP).toBe('torii_queue');
    expect(S.WORKER_CONSUMER).toBe('torii_queue');
    expect(Object.values(S.Bucket).sort()).toEqual([
      'torii_blocks',
      'torii_presence',
      'torii_room_state',
      'torii_rooms',
    ]);
    expect(Object.values(S.ServiceSubject)).toContain('torii.tokens.issue');
  });

  describe('ack permissions: both formats of nats-server (≥ 2.14), own consumer only', () => {
    /** True when some subject matches both patterns (`*` one token, a final `>` one or more). */
    const overlap = (a: string, b: string): boolean => {
      const go = (x: string[], y: string[]): boolean => {
        const [p, q] = [x[0], y[0]];
        if (p === undefined || q === undefined) return p === q;
        if (p === '>') return true;
        if (q === '>') return true;
        return (p === q || p === '*' || q === '*') && go(x.slice(1), y.slice(1));
      };
      return go(a.split('.'), b.split('.'));
    };
    const own = S.JsApi.acks('r1', 'u1');
    const [ownV1, ownV2] = own;
    /** What every consumer subscribes to (`server/consumer.go`): v1, and v2 per domain and hash. */
    const serverAckSubs = (
      stream: string,
      consumer: string,
      domain: string,
      hash: string,
    ): [v1: string, v2: string] => [
      `$JS.ACK.${stream}.${consumer}.*.*.*.*.*`,
      `$JS.ACK.${domain}.${hash}.${stream}.${consumer}.*.*.*.*.>`,
    ];
    // Names that could collide with tokens of the other format: a numeric user or room id, `_`
    // (the domain token without a domain, and a valid id), the own names in other places.
    const names = ['r1', 'u1', '_', '1', '42', 'other', 'kenji'];

    test("a delivery's reply in either format is within the permissions", () => {
      const v1 = '$JS.ACK.r1.u1.1.7.3.1796634570045743993.0';
      const v2 = '$JS.ACK._.Xr2QmOMe.r1.u1.1.7.3.1796634570045743993.0';
      expect(own.some((p) => overlap(p, v1))).toBe(true);
      expect(own.some((p) => overlap(p, v2))).toBe(true);
      expect(own.some((p) => overlap(p, v2.replace('._.', '.hub.')))).toBe(true); // a domain
    });

    test("no permitted subject reaches another stream's or consumer's acks", () => {
      let checked = 0;
      for (const stream of names)
        for (const consumer of names)
          for (const domain of names)
            for (const hash of names) {
              const mine = stream === 'r1' && consumer === 'u1';
              for (const sub of serverAckSubs(stream, consumer, domain, hash))
                for (const p of own) {
                  checked++;
                  if (!mine) expect([p, sub, overlap(p, sub)]).toEqual([p, sub, false]);
                }
            }
      expect(checked).toBe(names.length ** 4 * 4);
      // Each form reaches only the same form of the own consumer.
      const [subV1, subV2] = serverAckSubs('r1', 'u1', '_', 'h');
      expect(overlap(ownV1, subV2)).toBe(false);
      expect(overlap(ownV2, subV1)).toBe(false);
      expect(overlap(ownV1, subV1)).toBe(true);
      expect(overlap(ownV2, subV2)).toBe(true);
    });

    test('why the token counts: `$JS.ACK.*.*.{stream}.{consumer}.>` would reach other consumers', () => {
      // User `1` of room `r1` could send `$JS.ACK.other.kenji.r1.1.5.0.0`: kenji's v1 ack of
      // stream sequence 1 (test/integration/ack-format.test.ts measures it).
      const naive = '$JS.ACK.*.*.r1.1.>';
      expect(overlap(naive, serverAckSubs('other', 'kenji', '_', 'h')[0])).toBe(true);
      expect(
        overlap(S.JsApi.acks('r1', '1')[1], serverAckSubs('other', 'kenji', '_', 'h')[0]),
      ).toBe(false);
    });
  });
});
