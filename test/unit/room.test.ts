import { renderPermissions } from '../../src/domain/permissions.js';
import { compileRoom, parseRoomConfig, validateRoomSpec } from '../../src/domain/room-compile.js';
import { parseQuantity, parseRoomDuration } from '../../src/domain/room-spec.js';
import {
  MAX_DEVICES_PER_USER,
  roomStreamConfig,
  userConsumerConfig,
  workerStreamConfig,
} from '../../src/infra/streams.js';

describe('Room spec', () => {
  test('defaults (docs/controller.md)', () => {
    const r = compileRoom('n5-evening', {});
    expect(r).toMatchObject({
      version: 1,
      roomId: 'n5-evening',
      title: 'n5-evening',
      maxParticipants: 100,
      features: { chat: true, whiteboard: true, raiseHand: true },
      media: { livekitRoom: 'n5-evening', broadcast: false },
      history: {
        maxAgeMs: 86_400_000,
        maxMessages: 100_000,
        maxBytes: 33_554_432,
        storage: 'file',
        replicas: 1,
        // one member (a teacher: chat, whiteboard, answers, and its broadcasts) holds at most half
        // of 32 MiB: 167 × (3 × 32 KiB + 2 KiB)
        maxMessagesPerUser: 167,
        maxMessageSize: 32 * 1024,
      },
    });
    expect(Object.keys(r.roles)).toEqual(['teacher', 'student', 'observer']);
    expect(r.roles.teacher).toMatchObject({
      moderator: true,
      chat: true,
      whiteboard: true,
      media: { canPublish: true },
    });
    expect(r.roles.student).toMatchObject({
      moderator: false,
      chat: true,
      whiteboard: false,
      media: { canPublish: false, canSubscribe: true },
    });
    expect(r.roles.observer?.permissions.publish).not.toContain('room.{roomId}.live.{userId}');
  });

  test('spec.roomId overrides metadata.name; roles and history come from the spec', () => {
    const r = compileRoom('k8s-name', {
      roomId: 'n5',
      roles: { host: { chat: true, moderator: true } },
      history: { maxAge: '7d', maxBytes: '1Gi', storage: 'memory', replicas: 3, maxMessages: 10 },
    });
    expect(r.roomId).toBe('n5');
    expect(Object.keys(r.roles)).toEqual(['host']);
    expect(r.history).toEqual({
      maxAgeMs: 604_800_000,
      maxMessages: 10,
      maxBytes: 1024 ** 3,
      storage: 'memory',
      replicas: 3,
      // 10 messages: half of them, for the host's chat, answers and broadcasts
      maxMessagesPerUser: 1,
      maxMessageSize: 32 * 1024,
    });
  });

  test.each([
    ['a.b', {}, /metadata\.name \(used as roomId\): invalid roomId "a\.b"/],
    ['ok', { roomId: 'sysJsWorker' }, /spec\.roomId: .*reserved/],
    ['ok', { maxParticipants: 0 }, /spec\.maxParticipants/],
    ['ok', { roles: {} }, /spec\.roles: define at least one role/],
    ['ok', { roles: { 'bad role': {} } }, /invalid role name "bad role"/],
    ['ok', { history: { maxAge: 'forever' } }, /spec\.history\.maxAge/],
    ['ok', { history: { maxBytes: '12Zi' } }, /spec\.history\.maxBytes/],
    ['ok', { history: { replicas: 2 } }, /spec\.history\.replicas: must be 1, 3 or 5/],
    ['ok', { history: { maxMessagesPerUser: 0 } }, /spec\.history\.maxMessagesPerUser: must be/],
    ['ok', { history: { maxMessagesPerUser: 1.5 } }, /spec\.history\.maxMessagesPerUser: must be/],
    [
      'ok',
      { history: { maxMessagesPerUser: 1_000 } },
      /maxMessagesPerUser: 1000 lets one member hold 1000 messages on each of its 3 subjects \(up to 32768 bytes each\) and 1000 broadcasts .*Use at most 167, or raise maxBytes to at least 200704000/,
    ],
    ['ok', { history: { maxMessageSize: '2Mi' } }, /spec\.history\.maxMessageSize: "2Mi" is not/],
    ['ok', { history: { maxMessageSize: '2Ki' } }, /spec\.history\.maxMessageSize: "2Ki" is not/],
    [
      'ok',
      { maxParticipants: 1_000, history: { maxMessageSize: '64Ki' } },
      /maxMessageSize: 64Ki cannot hold the initial data of 1000 participants/,
    ],
  ])('validate(%s, %j) reports the field', (name, spec, problem) => {
    const problems = validateRoomSpec(name, spec);
    expect(problems.join('\n')).toMatch(problem);
    expect(() => compileRoom(name, spec)).toThrow(problem);
  });

  test('history limits: defaults keep one member within half the budget; explicit ones are checked', () => {
    // Students only chat, observers neither: a room whose roles draw nothing has two subjects a
    // member can fill.
    const noBoard = compileRoom('n5', {
      roles: { teacher: { chat: true, moderator: true }, student: { chat: true } },
    });
    expect(noBoard.history.maxMessagesPerUser).toBe(248);
    // A larger budget allows more, up to the default's cap.
    expect(compileRoom('n5', { history: { maxBytes: '1Gi' } }).history.maxMessagesPerUser).toBe(
      1_000,
    );
    // Large rooms store a larger initial data answer: 256 bytes a seat.
    const big = compileRoom('lecture', { maxParticipants: 1_000, history: { maxBytes: '1Gi' } });
    expect(big.history.maxMessageSize).toBe(256_000);
    expect(
      big.history.maxMessagesPerUser * (3 * big.history.maxMessageSize + 2048),
    ).toBeLessThanOrEqual(0.5 * 1024 ** 3);
    // The most a room may set is accepted, one more is not.
    expect(
      compileRoom('n5', { history: { maxMessagesPerUser: 167, maxMessageSize: '32Ki' } }).history,
    ).toMatchObject({ maxMessagesPerUser: 167, maxMessageSize: 32_768 });
    expect(validateRoomSpec('n5', { history: { maxMessagesPerUser: 168 } })).toHaveLength(1);
    // Whatever the room, the default is at least one message.
    expect(compileRoom('n5', { history: { maxMessages: 3 } }).history.maxMessagesPerUser).toBe(1);
  });

  test('quantities and durations', () => {
    expect(parseQuantity('256Mi')).toBe(268_435_456);
    expect(parseQuantity('1G')).toBe(1e9);
    expect(parseQuantity(4096)).toBe(4096);
    expect(parseQuantity('-1')).toBeUndefined();
    expect(parseRoomDuration('1h30m')).toBe(5_400_000);
    expect(parseRoomDuration('')).toBeUndefined();
  });

  test('permission templates render per connection', () => {
    expect(
      renderPermissions(['sysJsWorker.{roomId}.{userId}', '_INBOX.{roomId}.{userId}.>'], 'r', 'u'),
    ).toEqual(['sysJsWorker.r.u', '_INBOX.r.u.>']);
  });

  test('KV records are validated before use', () => {
    expect(parseRoomConfig(compileRoom('n5', {}))).toBeDefined();
    expect(parseRoomConfig({ version: 2, roomId: 'x' })).toBeUndefined();
    expect(parseRoomConfig(null)).toBeUndefined();
    expect(parseRoomConfig({ version: 1, roomId: 'x', roles: {} })).toBeUndefined();
  });
});

describe('JetStream assets (docs/protocol.md)', () => {
  test('room stream follows the room history and allows a consumer per device of each participant', () => {
    const s = roomStreamConfig(
      compileRoom('n5', { maxParticipants: 700, history: { maxMessages: 5 } }),
    );
    expect(s).toMatchObject({
      name: 'n5',
      subjects: [
        'room.n5.chat.*',
        'room.n5.wb.*',
        'room.n5.evt',
        'room.n5.evt.*',
        'room.n5.user.*',
      ],
      max_msgs: 5,
      max_msgs_per_subject: 1,
      max_msg_size: 700 * 256,
      discard: 'old',
      max_consumers: 700 * (MAX_DEVICES_PER_USER + 1),
      num_replicas: 1,
      storage: 'file',
    });
    expect(roomStreamConfig(compileRoom('tiny', { maxParticipants: 2 })).max_consumers).toBe(64);
  });

  test('worker stream is a work queue with a duplicate window', () => {
    expect(workerStreamConfig()).toMatchObject({
      name: 'sysJsWorker',
      subjects: ['sysJsWorker.*.*.*'],
      retention: 'workqueue',
      duplicate_window: 120_000_000_000,
    });
  });

  test('user consumer: R1, memory, cumulative acks, non-overlapping filters', () => {
    expect(userConsumerConfig('n5', 'hana', 60_000)).toEqual({
      durable_name: 'hana',
      filter_subjects: [
        'room.n5.chat.*',
        'room.n5.wb.*',
        'room.n5.evt',
        'room.n5.evt.*',
        'room.n5.user.hana',
      ],
      ack_policy: 'all',
      deliver_policy: 'all',
      max_ack_pending: 1000,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: 60_000_000_000,
    });
  });
});
