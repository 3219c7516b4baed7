/**
 * docs/platform.md's NestJS recipe, as the page gives it: every block of 'docs/platform.md' that
 * names this test is written to the file its `// file:` line names, compiled with the page's
 * tsconfig (legacy decorators and their metadata, as NestJS needs) and run with the page's command
 * from the folder `torii dev` runs in. A class of two then joins, raises and lowers a hand and
 * leaves, and a Room is deleted: the recipe prints each of those events once, and its calls
 * printed the rooms and a refusal with Torii's code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { RoomClient } from '../../src/client/index.js';
import { RequestEvent } from '../../src/protocol/events.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { cleanEnv, toriiSpawn } from '../helpers/cli.js';
import { codeBlocks, shellBlocks } from '../helpers/docs.js';
import { freePort, processGroupMembers, tempDir, track, waitFor } from '../helpers/procs.js';

const PAGE = 'docs/platform.md';
const ME = 'test/integration/platform-docs.test.ts';
const FILE_LINE = /^\/\/ file: (\S+)\n/;

type Line = Record<string, unknown>;

describe('docs/platform.md: the NestJS recipe against torii dev', () => {
  const dir = tempDir('platform-recipe');
  const roomsDir = path.join(dir, 'rooms');
  let dev: ChildProcess;
  let devOut = '';
  let recipe: ChildProcess | undefined;
  let out = '';
  let err = '';
  const lines = (): Line[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
  const clients: RoomClient[] = [];

  afterAll(async () => {
    for (const c of clients) await c.close({ leave: false }).catch(() => undefined);
    recipe?.kill('SIGTERM');
    if (dev?.pid) {
      process.kill(-dev.pid, 'SIGINT');
      const pid = dev.pid;
      await waitFor('dev gone', () => processGroupMembers(pid).length === 0, {
        timeoutMs: 20_000,
      });
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('the page names this test on each of its blocks', () => {
    const blocks = [...codeBlocks(PAGE, ['ts', 'json']), ...shellBlocks(PAGE)];
    expect(blocks.length).toBeGreaterThanOrEqual(7);
    for (const b of blocks)
      expect({ at: b.line, marker: b.marker?.arg }).toEqual({ at: b.line, marker: ME });
  });

  test('compiled and run, it calls the endpoints and hears the class, once each', async () => {
    // The recipe's files, as the page names them, in a folder with the project's packages.
    for (const b of codeBlocks(PAGE, ['ts', 'json'])) {
      const name = FILE_LINE.exec(b.body)?.[1];
      if (!name) throw new Error(`${PAGE}:${b.line}: no // file: line`);
      writeFileSync(path.join(dir, name), b.body.replace(FILE_LINE, ''));
    }
    symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    mkdirSync(roomsDir);
    cpSync(path.join(PROJECT_ROOT, 'examples', 'rooms'), roomsDir, { recursive: true });

    const port = await freePort();
    dev = toriiSpawn(['dev'], {
      cwd: dir,
      group: true,
      env: {
        TORII_PORT: String(port),
        TORII_NATS_MONITOR_PORT: String(await freePort()),
        TORII_WEBSOCKET_PORT: '0',
        TORII_WEB_PORT: '0',
        TORII_HTTP_PORT: String(await freePort()),
        TORII_ROOMS_DIR: roomsDir,
      },
    });
    dev.stdout?.on('data', (b: Buffer) => (devOut += b.toString()));
    await waitFor('dev banner', () => devOut.includes('Torii dev is running'), {
      timeoutMs: 60_000,
    });
    const url = `nats://127.0.0.1:${port}`;

    const [command] = shellBlocks(PAGE).flatMap((b) => b.commands);
    expect(command?.text).toBe('npx tsc -p tsconfig.json && node dist/main.js');
    recipe = track(
      spawn('bash', ['-c', command?.text ?? ''], {
        cwd: dir,
        env: cleanEnv({ NATS_URL: url }),
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    recipe.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    recipe.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    const printed = (what: string, pred: (l: Line) => boolean, timeoutMs = 30_000) =>
      waitFor(what, () => lines().find(pred), { timeoutMs }).catch((e: Error) => {
        throw new Error(`${e.message}\nstdout:\n${out}\nstderr:\n${err}`);
      });

    // Its calls: every room of the folder, and a refusal carrying Torii's code.
    await printed('the refusal', (l) => l.event === 'refused', 90_000);
    expect(
      lines()
        .filter((l) => l.event === 'room')
        .map((l) => l.roomId),
    ).toEqual(expect.arrayContaining(['demo', 'n5-lecture', 'kaiwa-tue-1900']));
    expect(lines().find((l) => l.event === 'refused')).toEqual({
      event: 'refused',
      code: 'NOT_FOUND',
      message: 'room no-such-room does not exist',
    });

    // A class of two, with the tokens dev printed.
    const tokenOf = (role: string, user: string): string =>
      new RegExp(`${role} ${user}:\\s+(\\S+)`).exec(devOut)?.[1] ?? '';
    const join = async (user: string, role: string): Promise<RoomClient> => {
      const c = await RoomClient.connect({
        connect,
        servers: url,
        roomId: 'demo',
        userId: user,
        token: tokenOf(role, user),
        autoRenew: false,
      });
      clients.push(c);
      return c;
    };
    const sensei = await join('sensei', 'teacher');
    const hana = await join('hana', 'student');
    await hana.request(RequestEvent.RaiseHand, { note: 'question' });
    await sensei.request(RequestEvent.LowerHand, { userId: 'hana' });
    await hana.close();
    await sensei.close();
    // And a Room deleted from the folder.
    rmSync(path.join(roomsDir, 'kaiwa-small-group.yaml'));

    const expected: Line[] = [
      { event: 'joined', userId: 'sensei', name: 'Tanaka Sensei', role: 'teacher' },
      { event: 'joined', userId: 'hana', name: 'Hana', role: 'student' },
      { event: 'hand raised', userId: 'hana', note: 'question' },
      { event: 'hand lowered', userId: 'hana', by: 'sensei' },
      { event: 'left', userId: 'hana', reason: 'leave' },
      { event: 'left', userId: 'sensei', reason: 'leave' },
    ];
    const matches = (want: Line) => (l: Line) => Object.entries(want).every(([k, v]) => l[k] === v);
    for (const want of expected)
      await printed(JSON.stringify(want), (l) => l.roomId === 'demo' && matches(want)(l));
    await printed('the room ended', (l) => l.event === 'room ended');
    for (const want of expected) {
      const got = lines().filter((l) => l.roomId === 'demo' && matches(want)(l));
      expect(got).toHaveLength(1);
      expect(Number.isNaN(Date.parse(String(got[0]?.at)))).toBe(false);
    }
    expect(lines().filter((l) => l.event === 'room ended')).toEqual([
      {
        event: 'room ended',
        roomId: 'kaiwa-tue-1900',
        reason: 'room deleted',
        at: expect.any(String) as unknown,
      },
    ]);
  });
});
