/**
 * Which roles' open connections a Room change must close (issue 22): those that lost a right or
 * were removed, never those that only gained or stayed the same.
 */
import { compileRoom } from '../../src/domain/room-compile.js';
import { DEFAULT_ROLE_SPECS, type RoomSpec } from '../../src/domain/room-spec.js';
import { rightsDigest, rolesLosingRights } from '../../src/worker/room-changes.js';

const room = (spec: RoomSpec = {}) => compileRoom('r', spec);
const withRole = (name: string, change: object): RoomSpec => ({
  roles: {
    ...DEFAULT_ROLE_SPECS,
    [name]: { ...DEFAULT_ROLE_SPECS[name], ...change },
  },
});

test('no change closes nothing, and its digest is the same', () => {
  expect(rolesLosingRights(room(), room())).toEqual([]);
  expect(rightsDigest(room())).toBe(rightsDigest(room()));
});

test("a role's chat turned off closes that role only", () => {
  expect(rolesLosingRights(room(), room(withRole('student', { chat: false })))).toEqual([
    'student',
  ]);
});

test('the room feature turned off closes every role that had it', () => {
  expect(rolesLosingRights(room(), room({ features: { chat: false } }))).toEqual([
    'teacher',
    'student',
  ]);
  expect(rolesLosingRights(room(), room({ features: { whiteboard: false } }))).toEqual(['teacher']);
});

test('a right gained closes nothing, though the digest changes', () => {
  const before = room(withRole('student', { chat: false }));
  expect(rolesLosingRights(before, room())).toEqual([]);
  expect(rightsDigest(before)).not.toBe(rightsDigest(room()));
  expect(rolesLosingRights(room(), room(withRole('observer', { chat: true })))).toEqual([]);
});

test('live, moderator and media grants taken away close the role', () => {
  expect(rolesLosingRights(room(), room(withRole('student', { live: false })))).toEqual([
    'student',
  ]);
  expect(rolesLosingRights(room(), room(withRole('teacher', { moderator: false })))).toEqual([
    'teacher',
  ]);
  expect(
    rolesLosingRights(
      room(),
      room(
        withRole('teacher', {
          media: { canPublish: false, canSubscribe: true, canPublishData: true },
        }),
      ),
    ),
  ).toEqual(['teacher']);
});

test('a removed role closes its connections', () => {
  const rest = Object.fromEntries(
    Object.entries(DEFAULT_ROLE_SPECS).filter(([name]) => name !== 'observer'),
  );
  expect(rolesLosingRights(room(), room({ roles: rest }))).toEqual(['observer']);
});

test('a title or size change is no change of rights', () => {
  const a = room();
  const b = room({ title: 'renamed', maxParticipants: 5 });
  expect(rolesLosingRights(a, b)).toEqual([]);
  expect(rightsDigest(a)).toBe(rightsDigest(b));
});
