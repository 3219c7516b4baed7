import { checkRoomId, checkUserId, isReservedRoomId, isValidId } from '../../src/protocol/ids.js';
import { ValidationError } from '../../src/protocol/errors.js';

describe('ids (docs/protocol.md)', () => {
  test.each(['a', 'n5-evening', 'User_01', 'x'.repeat(64)])('accepts %s', (id) => {
    expect(isValidId(id)).toBe(true);
    expect(checkUserId(id)).toBe(id);
  });

  test.each([
    ['', /is empty/],
    ['a.b', /contains "\."/],
    ['a*', /contains "\*"/],
    ['a>', /contains ">"/],
    ['a b', /contains a space/],
    ['a\tb', /contains "\\t"/],
    ['日本', /contains "日"/],
    ['x'.repeat(65), /65 characters long/],
  ])('rejects %j with a clear reason', (id, reason) => {
    expect(isValidId(id)).toBe(false);
    expect(() => checkUserId(id, 'sub')).toThrow(ValidationError);
    expect(() => checkUserId(id, 'sub')).toThrow(reason);
    expect(() => checkUserId(id, 'sub')).toThrow(/^sub: invalid userId/);
  });

  test('non-strings are rejected, never coerced', () => {
    expect(() => checkRoomId(42)).toThrow(/roomId must be a string/);
    expect(() => checkRoomId(undefined)).toThrow(ValidationError);
  });

  test('stream names of Torii itself are reserved room ids, not user ids', () => {
    for (const id of ['sysJsWorker', 'torii', 'torii_rooms', 'toriiX']) {
      expect(isReservedRoomId(id)).toBe(true);
      expect(() => checkRoomId(id)).toThrow(/reserved/);
      expect(checkUserId(id)).toBe(id);
    }
    expect(checkRoomId('Torii-class')).toBe('Torii-class');
  });
});
