import {
  compileRoom,
  parseQuantity,
  parseRoomConfig,
  parseRoomDuration,
  renderPermissions,
  validateRoomSpec,
} from '../../src/core/room.js';
import {
  MAX_DEVICES_PER_USER,
  roomStreamConfig,
  userConsumerConfig,
  workerStreamConfig,
} from '../../src/core/streams.js';

describe('Room spec', () => {
  test('defaults (DESIGN.md §10)', () => {
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
  ])('validate(%s, %j) reports the field', (name, spec, problem) => {
    const problems = validateRoomSpec(name, spec);
    expect(problems.join('\n')).toMatch(problem);
    expect(() => compileRoom(name, spec)).toThrow(problem);
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

describe('JetStream assets (DESIGN.md §5)', () => {
  test('room stream follows the room history and allows a consumer per device of each participant', () => {
    const s = roomStreamConfig(
      compileRoom('n5', { maxParticipants: 700, history: { maxMessages: 5 } }),
    );
    expect(s).toMatchObject({
      name: 'n5',
      subjects: ['room.n5.chat.*', 'room.n5.wb.*', 'room.n5.evt', 'room.n5.user.*'],
      max_msgs: 5,
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

  test('user consumer: R1, memory, explicit ack, non-overlapping filters', () => {
    expect(userConsumerConfig('n5', 'hana', 60_000)).toEqual({
      durable_name: 'hana',
      filter_subjects: ['room.n5.chat.*', 'room.n5.wb.*', 'room.n5.evt', 'room.n5.user.hana'],
      ack_policy: 'explicit',
      deliver_policy: 'all',
      max_ack_pending: 1000,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: 60_000_000_000,
    });
  });
});
