/**
 * The callout's caches notice when what they remember is gone (issue 13): a member record deleted
 * behind its back is written again at the next admission, a consumer deleted with its stream
 * (or alone) is created again, however recently the callout created it, and so is a device on a
 * user's device list (the worker deletes the list after the retention period; the device's
 * consumer is deleted only when the list names it).
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { openBucket } from '../../src/infra/kv.js';
import { compileRoom } from '../../src/domain/room-compile.js';
import { devicesKey, memberKey } from '../../src/domain/room-state.js';
import { ensureRoomStream } from '../../src/infra/streams.js';
import { Bucket, deviceConnectionName } from '../../src/protocol/subjects.js';
import { connectClient, startCallout, token, type TestCallout } from '../helpers/callout.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { publishRoom } from '../helpers/room.js';

const ROOM = 'caches';
let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let roomState: KV;
let callout: TestCallout;

beforeAll(async () => {
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  await publishRoom(svc, ROOM);
  roomState = await openBucket(svc, Bucket.RoomState);
  callout = await startCallout(server.keys, [server.url]);
});
afterAll(async () => {
  await callout?.stop();
  await svc?.close();
  await server?.destroy();
});

/** Connects once as `user` (from `deviceId`, if given) and closes: an admission. */
async function admit(user: string, deviceId?: string): Promise<void> {
  const nc = await connectClient(
    server.url,
    ROOM,
    user,
    await token(server.keys, { room: ROOM, sub: user, role: 'student', name: user.toUpperCase() }),
    deviceId !== undefined ? { name: deviceConnectionName(deviceId) } : {},
  );
  await nc.close();
}

async function member(user: string): Promise<unknown> {
  const e = await roomState.get(memberKey(ROOM, user));
  return e?.operation === 'PUT' ? e.json() : undefined;
}

describe('member records', () => {
  test('a deleted record is back after the next admission', async () => {
    await admit('hana');
    expect(await member('hana')).toMatchObject({ userId: 'hana', name: 'HANA' });
    await roomState.delete(memberKey(ROOM, 'hana'));
    expect(await member('hana')).toBeUndefined();
    await admit('hana');
    expect(await member('hana')).toMatchObject({ userId: 'hana', name: 'HANA' });
  });

  test('a purged record is back after the next admission', async () => {
    await admit('kenji');
    await roomState.purge(memberKey(ROOM, 'kenji'));
    expect(await member('kenji')).toBeUndefined();
    await admit('kenji');
    expect(await member('kenji')).toMatchObject({ userId: 'kenji' });
  });
});

describe('user consumers', () => {
  test('deleted with its stream and the stream created again: the next admission creates it', async () => {
    await admit('yuki');
    await expect(jsm.consumers.info(ROOM, 'yuki')).resolves.toBeDefined();
    await jsm.streams.delete(ROOM);
    await ensureRoomStream(jsm, compileRoom(ROOM, {}));
    await admit('yuki');
    const ci = await jsm.consumers.info(ROOM, 'yuki');
    expect(ci.config.filter_subjects).toContain(`room.${ROOM}.user.yuki`);
  });

  test('deleted alone: the next admission creates it', async () => {
    await admit('taro');
    await jsm.consumers.delete(ROOM, 'taro');
    await admit('taro');
    await expect(jsm.consumers.info(ROOM, 'taro')).resolves.toMatchObject({ name: 'taro' });
  });
});

describe('device lists', () => {
  const devices = async (user: string): Promise<unknown> => {
    const e = await roomState.get(devicesKey(ROOM, user));
    return e?.operation === 'PUT' ? e.json() : undefined;
  };
  /** Waits until the callout has seen a write it did not make (it follows the keys). */
  const seen = (): Promise<void> => new Promise((r) => setTimeout(r, 200));

  test('purged (the user was cleaned up after leaving): the next admission lists the device again', async () => {
    await admit('mei', 'laptop');
    expect(await devices('mei')).toEqual(['laptop']);
    await roomState.purge(devicesKey(ROOM, 'mei'));
    await seen();
    await admit('mei', 'laptop');
    expect(await devices('mei')).toEqual(['laptop']);
  });

  test('rewritten without the device (another replica evicted it): the next admission adds it back', async () => {
    await admit('sho', 'laptop');
    await admit('sho', 'phone');
    await roomState.put(devicesKey(ROOM, 'sho'), JSON.stringify(['phone']));
    await seen();
    await admit('sho', 'laptop');
    expect(await devices('sho')).toEqual(['phone', 'laptop']);
  });
});
