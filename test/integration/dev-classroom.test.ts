/**
 * The whole developer experience, end to end, as a user runs it: `torii dev` in a terminal (its
 * own process group), the printed client command for the teacher, and `torii client` for two
 * students with the printed tokens. Chat, raise hand, lower hand and leave are seen by the others;
 * a student cannot lower someone else's hand; Ctrl-C on dev leaves no process behind.
 */
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { CLI, toriiSpawn } from '../helpers/cli.js';
import { freePort, isAlive, processGroupMembers, tempDir, waitFor } from '../helpers/procs.js';

/** A `torii client` process: what it printed, and a keyboard. */
interface ClientProc {
  name: string;
  proc: ChildProcess;
  /** Parsed lines (`--json`) or raw lines (text mode). */
  json: Record<string, unknown>[];
  text: string[];
  stderr: string;
  type(line: string): void;
}

function startClient(name: string, args: string[], o: { cwd: string }): ClientProc {
  const proc = toriiSpawn(args, { cwd: o.cwd, stdin: 'pipe' });
  const c: ClientProc = {
    name,
    proc,
    json: [],
    text: [],
    stderr: '',
    type: (line) => void proc.stdin?.write(line + '\n'),
  };
  let buf = '';
  proc.stdout?.on('data', (b: Buffer) => {
    buf += b.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      c.text.push(line);
      if (line.startsWith('{')) c.json.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  proc.stderr?.on('data', (b: Buffer) => (c.stderr += b.toString()));
  return c;
}

/** Waits until the client has printed a JSON line matching `pred`. */
async function sees(
  c: ClientProc,
  what: string,
  pred: (m: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  let hit: Record<string, unknown> | undefined;
  await waitFor(
    `${c.name} sees ${what}`,
    () => {
      hit = c.json.find(pred);
      return hit !== undefined;
    },
    { timeoutMs: 10_000 },
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nstdout:\n${c.text.join('\n')}\nstderr:\n${c.stderr}`);
  });
  return hit as Record<string, unknown>;
}

const event =
  (name: string, userId: string) =>
  (m: Record<string, unknown>): boolean => {
    const body = m['body'] as { event?: string; data?: { userId?: string } } | undefined;
    return m['kind'] === 'event' && body?.event === name && body.data?.userId === userId;
  };

const chat =
  (from: string, text: string) =>
  (m: Record<string, unknown>): boolean =>
    m['kind'] === 'chat' && m['from'] === from && (m['body'] as { text?: string }).text === text;

describe('torii dev + torii client: a class of three', () => {
  let dev: ChildProcess;
  let stdout = '';
  let stderr = '';
  const cwd = tempDir('dev-classroom');

  afterAll(() => {
    for (const pid of dev?.pid ? processGroupMembers(dev.pid) : []) process.kill(pid, 'SIGKILL');
  });

  test('join, chat, raise and lower hands, leave; Ctrl-C stops everything', async () => {
    const [port, monitorPort, wsPort, opsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    dev = toriiSpawn(
      [
        'dev',
        '--port',
        String(port),
        '--nats-monitor-port',
        String(monitorPort),
        '--websocket-port',
        String(wsPort),
        '--http-port',
        String(opsPort),
      ],
      { cwd, group: true },
    );
    dev.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    dev.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    await waitFor('dev banner', () => stdout.includes('Torii dev is running'), {
      timeoutMs: 30_000,
    }).catch((e: Error) => {
      throw new Error(`${e.message}\nstdout: ${stdout}\nstderr: ${stderr}`);
    });
    const devPid = dev.pid as number;
    // nats-server runs in dev's process group (so a terminal's Ctrl-C reaches both).
    await waitFor('nats-server in the group', () => processGroupMembers(devPid).length >= 2);

    const token = (role: string, user: string): string => {
      const t = new RegExp(`${role} ${user}:\\s+(\\S+)`).exec(stdout)?.[1];
      if (!t) throw new Error(`no ${role} token for ${user} in the banner:\n${stdout}`);
      return t;
    };
    // The ready-to-run command the banner prints for the teacher, run as printed.
    const printed = /^ {2}(node \S+cli\.js|torii) client (.+)$/m.exec(stdout);
    expect(printed).not.toBeNull();
    const printedArgs = (printed?.[2] ?? '').split(' ');
    expect(printedArgs).toEqual([
      '--nats-url',
      `nats://127.0.0.1:${port}`,
      '--token',
      token('teacher', 'sensei'),
    ]);
    expect(printed?.[1]).toBe(`node ${CLI}`);

    const sensei = startClient('sensei', ['client', ...printedArgs, '--json'], { cwd });
    const joined = await sees(sensei, 'joined', (m) => m['kind'] === 'joined');
    expect(joined).toMatchObject({
      room: { id: 'demo' },
      me: { userId: 'sensei', role: 'teacher' },
    });

    const url = `nats://127.0.0.1:${port}`;
    const hana = startClient(
      'hana',
      ['client', '--nats-url', url, '--token', token('student', 'hana'), '--json'],
      { cwd },
    );
    await sees(hana, 'joined', (m) => m['kind'] === 'joined');
    await sees(sensei, 'hana joining', event('EVT_PARTICIPANT_JOINED', 'hana'));
    // kenji runs the text client, as a person at a terminal would.
    const kenji = startClient(
      'kenji',
      ['client', '--nats-url', url, '--token', token('student', 'kenji')],
      { cwd },
    );
    const kenjiSays = (re: RegExp): Promise<unknown> =>
      waitFor(`kenji prints ${re}`, () => kenji.text.some((l) => re.test(l)), {
        timeoutMs: 10_000,
      }).catch((e: Error) => {
        throw new Error(`${e.message}\nstdout:\n${kenji.text.join('\n')}\n${kenji.stderr}`);
      });
    await kenjiSays(/^joined "[^"]+" \(demo\) as kenji \(student\)$/);
    await kenjiSays(/^here: .*Tanaka Sensei \(teacher\).*Hana \(student\)/);
    await sees(sensei, 'kenji joining', event('EVT_PARTICIPANT_JOINED', 'kenji'));
    await sees(hana, 'kenji joining', event('EVT_PARTICIPANT_JOINED', 'kenji'));

    // Chat
    hana.type('konnichiwa, sensei!');
    await sees(sensei, 'hana chatting', chat('hana', 'konnichiwa, sensei!'));
    await kenjiSays(/^<Hana> konnichiwa, sensei!$/);
    sensei.type('ohayou gozaimasu');
    await sees(hana, 'sensei chatting', chat('sensei', 'ohayou gozaimasu'));
    await kenjiSays(/^<Tanaka Sensei> ohayou gozaimasu$/);

    // Raise a hand
    hana.type('/raise I have a question');
    await sees(sensei, 'hana raising', event('EVT_HAND_RAISED', 'hana'));
    await kenjiSays(/^\* Hana raised a hand: I have a question$/);

    // A student may not lower someone else's hand, and nothing is broadcast.
    kenji.type('/lower hana');
    await waitFor('kenji told FORBIDDEN', () => /\/lower: FORBIDDEN/.test(kenji.stderr), {
      timeoutMs: 10_000,
    });

    // The teacher lowers it
    sensei.type('/lower hana');
    const lowered = await sees(hana, 'hand lowered', event('EVT_HAND_LOWERED', 'hana'));
    expect(lowered['body']).toMatchObject({ data: { userId: 'hana', by: 'sensei' } });
    await kenjiSays(/^\* Tanaka Sensei lowered Hana's hand$/);
    // the only lowering anyone saw is the teacher's
    expect(sensei.json.filter(event('EVT_HAND_LOWERED', 'hana'))).toHaveLength(1);

    // Leave: immediate for the others (not after the 15 s presence grace).
    kenji.type('/leave');
    const [kenjiCode] = (await once(kenji.proc, 'exit')) as [number | null];
    expect(kenjiCode).toBe(0);
    expect(kenji.text.at(-1)).toBe('left the room');
    const leftAt = Date.now();
    await sees(sensei, 'kenji leaving', event('EVT_PARTICIPANT_LEFT', 'kenji'));
    await sees(hana, 'kenji leaving', event('EVT_PARTICIPANT_LEFT', 'kenji'));
    expect(Date.now() - leftAt).toBeLessThan(15_000);

    // End of input (Ctrl-D) leaves too.
    hana.proc.stdin?.end();
    expect(((await once(hana.proc, 'exit')) as [number | null])[0]).toBe(0);
    await sees(sensei, 'hana leaving', event('EVT_PARTICIPANT_LEFT', 'hana'));
    sensei.proc.stdin?.end();
    expect(((await once(sensei.proc, 'exit')) as [number | null])[0]).toBe(0);

    // Ctrl-C in dev's terminal: the whole group gets SIGINT.
    const members = processGroupMembers(devPid);
    process.kill(-devPid, 'SIGINT');
    const [code] = (await once(dev, 'exit')) as [number | null];
    expect(code).toBe(0);
    await waitFor(
      'every process of the group gone',
      () => processGroupMembers(devPid).length === 0,
    );
    for (const pid of members) expect(isAlive(pid)).toBe(false);
    expect(stderr).toContain('shutdown complete');
  });
});
