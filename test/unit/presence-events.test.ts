import { clientUserName, Sys } from '../../src/protocol/subjects.js';
import { identityOf, shutdownServerId } from '../../src/worker/presence-events.js';

/** The subject one server's shutdown event comes on. */
const shutdownOf = (serverId: string): string => Sys.SERVER_SHUTDOWN_ALL.replace('*', serverId);

describe('identityOf: the room and user of a connection, from its user JWT name', () => {
  test('the name the callout sets gives both ids back', () => {
    expect(identityOf(clientUserName('room-1', 'user_A'))).toEqual({
      roomId: 'room-1',
      userId: 'user_A',
    });
  });

  test.each([
    ['no name', undefined],
    ['an empty name', ''],
    ['a service user', 'torii-worker'],
    ['a third part', 'room-1/user/extra'],
    ['an empty user id', 'room-1/'],
    ['an empty room id', '/user'],
    ['a dot in the room id (a subject injection)', 'room.x/user'],
    ['a wildcard in the user id', 'room-1/*'],
    ['an id longer than 64 characters', `room-1/${'u'.repeat(65)}`],
  ])('%s is nobody: presence ignores the connection', (_why, user) => {
    expect(identityOf(user)).toBeUndefined();
  });
});

describe('shutdownServerId: which server a shutdown event is about', () => {
  test('the subject names it', () => {
    expect(shutdownServerId(shutdownOf('NSERVER1'), { id: 'NOTHER' })).toBe('NSERVER1');
  });

  test('a subject without it (the wildcard itself) falls back to the body, the server info', () => {
    expect(shutdownServerId(Sys.SERVER_SHUTDOWN_ALL, { id: 'NSERVER2', name: 'n2' })).toBe(
      'NSERVER2',
    );
  });

  test.each([
    ['no body', undefined],
    ['a null body', null],
    ['a body without id', { name: 'n2' }],
    ['an empty id', { id: '' }],
    ['an id that is not a string', { id: 42 }],
  ])('neither subject nor body naming it (%s) names no server', (_why, body) => {
    expect(shutdownServerId(Sys.SERVER_SHUTDOWN_ALL, body)).toBeUndefined();
  });
});
