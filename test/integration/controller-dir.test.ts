/**
 * The controller fed by a folder of Room YAML files (`--rooms-dir`, what `torii dev` uses), and
 * `torii rooms` reading back what it published.
 */
import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { openBucket } from '../../src/infra/kv.js';
import { parseRoomConfig, type CompiledRoomConfig } from '../../src/domain/room-compile.js';
import { Bucket } from '../../src/protocol/subjects.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { torii } from '../helpers/cli.js';
import { startController, type TestController } from '../helpers/controller.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { tempDir, waitFor } from '../helpers/procs.js';
import { putPresence } from '../helpers/room.js';

const EXAMPLES = path.join(PROJECT_ROOT, 'examples', 'rooms');
let server: TestNats;
let svc: NatsConnection;
let jsm: JetStreamManager;
let ctl: TestController;
let dir: string;

async function kvRoom(roomId: string): Promise<CompiledRoomConfig | undefined> {
  const e = await (await openBucket(svc, Bucket.Rooms)).get(roomId);
  return e?.operation === 'PUT' ? parseRoomConfig(e.json()) : undefined;
}
const streamExists = (name: string): Promise<boolean> =>
  jsm.streams.info(name).then(
    () => true,
    () => false,
  );

beforeAll(async () => {
  dir = tempDir('rooms-dir');
  for (const f of readdirSync(EXAMPLES)) copyFileSync(path.join(EXAMPLES, f), path.join(dir, f));
  server = await startNats();
  svc = await server.connectService();
  jsm = await jetstreamManager(svc);
  ctl = await startController(server.keys, [server.url], { roomsDir: dir });
});
afterAll(async () => {
  await ctl?.stop();
  await svc?.close();
  await server?.destroy();
});

test('every example Room is published with its stream', async () => {
  for (const id of ['n5-lecture', 'kaiwa-tue-1900', 'demo']) {
    await waitFor(
      `${id} published`,
      async () => (await kvRoom(id)) !== undefined && (await streamExists(id)),
    );
  }
  expect(await kvRoom('n5-lecture')).toMatchObject({
    maxParticipants: 200,
    media: { broadcast: true },
    source: 'classes/n5-lecture',
  });
  expect(Object.keys((await kvRoom('n5-lecture'))?.roles ?? {})).toEqual([
    'teacher',
    'assistant',
    'student',
    'observer',
  ]);
  expect((await jsm.streams.info('kaiwa-tue-1900')).config.max_bytes).toBe(16 * 1024 * 1024);
});

test('torii rooms lists what is published, with participants', async () => {
  await putPresence(svc, { roomId: 'demo', userId: 'hana', state: 'online' });
  // the Room status follows presence (debounced: at most one status write per Room per 5 s)
  await waitFor(
    'joinedParticipants in status',
    () => ctl.source.get('default/demo')?.status?.joinedParticipants === 1,
    { timeoutMs: 15_000 },
  );
  const r = torii(['rooms', '--nats-url', server.url, '--keys-dir', server.keys.dir, '--json']);
  expect(r.stderr).toBe('');
  const rows = JSON.parse(r.stdout) as {
    roomId: string;
    participants: number;
    maxParticipants: number;
    stream: unknown;
  }[];
  expect(rows.map((x) => x.roomId)).toEqual(['demo', 'kaiwa-tue-1900', 'n5-lecture']);
  expect(rows[0]).toMatchObject({
    roomId: 'demo',
    participants: 1,
    maxParticipants: 30,
    stream: { messages: 0 },
  });
  const table = torii(['rooms', '--nats-url', server.url, '--keys-dir', server.keys.dir]);
  expect(table.stdout.split('\n')[0]).toMatch(
    /^ROOM ID\s+PARTICIPANTS\s+MESSAGES\s+ROLES\s+SOURCE\s+TITLE$/,
  );
  expect(table.stdout).toMatch(
    /demo\s+1\/30\s+0\s+teacher,student,observer\s+default\/demo\s+Demo classroom/,
  );
});

test('editing a file updates the room', async () => {
  const file = path.join(dir, 'demo.yaml');
  writeFileSync(
    file,
    readFileSync(file, 'utf8').replace('maxParticipants: 30', 'maxParticipants: 40'),
  );
  await waitFor('updated', async () => (await kvRoom('demo'))?.maxParticipants === 40);
});

test('a file that stops parsing keeps its rooms; an invalid spec is not published', async () => {
  const file = path.join(dir, 'demo.yaml');
  const good = readFileSync(file, 'utf8');
  writeFileSync(file, good + '\n  : this is : not yaml [\n');
  writeFileSync(
    path.join(dir, 'bad.yaml'),
    'apiVersion: torii.io/v1alpha1\nkind: Room\nmetadata: { name: bad }\nspec: { maxParticipants: 0 }\n',
  );
  const reconciles = await ctl.reconciles();
  await waitFor('rescans', async () => (await ctl.reconciles()) >= reconciles + 4);
  expect(await kvRoom('demo')).toBeDefined();
  expect(await streamExists('demo')).toBe(true);
  expect(await kvRoom('bad')).toBeUndefined();
  writeFileSync(file, good);
});

test('removing a file closes its rooms by their deletion policy', async () => {
  rmSync(path.join(dir, 'kaiwa-small-group.yaml'));
  rmSync(path.join(dir, 'n5-lecture.yaml'));
  await waitFor(
    'unpublished',
    async () =>
      (await kvRoom('kaiwa-tue-1900')) === undefined && (await kvRoom('n5-lecture')) === undefined,
  );
  await waitFor('Delete policy: stream gone', async () => !(await streamExists('kaiwa-tue-1900')));
  expect(await streamExists('n5-lecture')).toBe(true); // Retain
  expect(ctl.source.keys().sort()).toEqual(['default/bad', 'default/demo']);
});
