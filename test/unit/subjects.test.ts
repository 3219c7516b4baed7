import * as S from '../../src/core/subjects.js';

describe('subjects (DESIGN.md §5)', () => {
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
    expect(S.JsApi.acks('r1', 'u1')).toBe('$JS.ACK.r1.u1.>');
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
});
