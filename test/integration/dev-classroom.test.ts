/**
 * The whole developer experience, end to end, as the README tells it: `make dev` in a terminal
 * (its own process group), the client command the banner prints (teacher), `torii client` with
 * the printed student tokens, and the README's "Getting started" command for one more student.
 * Chat, raise hand, lower hand and leave are seen by the others; a student cannot lower someone
 * else's hand; Ctrl-C leaves no process behind. Reads its commands from 'README.md'.
 */
import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { TokenVerifier } from 'livekit-server-sdk';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { cleanEnv, devPorts, waitForDev, type DevOutput } from '../helpers/cli.js';
import { blockStartingWith } from '../helpers/docs.js';
import {
  isAlive,
  processGroupMembers,
  tempDir,
  track,
  trackGroup,
  waitFor,
} from '../helpers/procs.js';

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

/** Runs a client command line as typed in a terminal (bash, in the project folder). */
function startClient(name: string, command: string, env: Record<string, string> = {}): ClientProc {
  const proc = track(
    spawn('bash', ['-c', command], {
      cwd: PROJECT_ROOT,
      env: cleanEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
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

describe('make dev + torii client: a class of four', () => {
  let dev: ChildProcess;
  let out: DevOutput;
  const stateDir = tempDir('dev-classroom');
  const quickStart = blockStartingWith('README.md', 'make dev');
  const gettingStarted = blockStartingWith('README.md', 'node dist/cli.js client');

  afterAll(() => {
    for (const pid of dev?.pid ? processGroupMembers(dev.pid) : []) process.kill(pid, 'SIGKILL');
  });

  test('the README quick start: make dev, and make test is what CI runs', () => {
    const commands = quickStart.commands.map((c) => c.text.replace(/\s+#.*$/, ''));
    expect(commands).toEqual(['make dev', 'make test']);
    expect(readFileSync(path.join(PROJECT_ROOT, '.ci', 'run'), 'utf8')).toMatch(/^make test\b/m);
  });

  test('join, chat, raise and lower hands, leave; Ctrl-C stops everything', async () => {
    const ports = await devPorts();
    // `make dev` as the README says; every flag of dev is also an environment variable, which
    // moves it to free ports and a scratch state folder.
    const devEnv = { ...ports.env, TORII_STATE_DIR: stateDir };
    dev = trackGroup(
      spawn('bash', ['-c', `exec ${quickStart.commands[0]?.text ?? ''}`], {
        cwd: PROJECT_ROOT,
        env: cleanEnv(devEnv),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      }),
    );
    out = await waitForDev(dev);
    const devPid = dev.pid as number;
    // make, torii dev, nats-server and livekit-server share the terminal's process group.
    await waitFor('the servers in the group', () => processGroupMembers(devPid).length >= 4);
    const mediaUrl = `ws://127.0.0.1:${ports.media}`;
    expect(out.stdout).toMatch(new RegExp(`^ {2}Media {7}${mediaUrl} \\(LiveKit`, 'm'));

    const token = (role: string, user: string): string => {
      const t = new RegExp(`${role} ${user}:\\s+(\\S+)`).exec(out.stdout)?.[1];
      if (!t) throw new Error(`no ${role} token for ${user} in the banner:\n${out.stdout}`);
      return t;
    };
    const url = `nats://127.0.0.1:${ports.nats}`;
    // The ready-to-run command the banner prints for the teacher, run as printed.
    const printed = /^ {2}(node dist\/cli\.js client --nats-url (\S+) --token (\S+))$/m.exec(
      out.stdout,
    );
    expect(printed?.[2]).toBe(url);
    expect(printed?.[3]).toBe(token('teacher', 'sensei'));

    const sensei = startClient('sensei', `${printed?.[1] ?? ''} --json`);
    const joined = await sees(sensei, 'joined', (m) => m['kind'] === 'joined');
    expect(joined).toMatchObject({
      room: { id: 'demo' },
      me: { userId: 'sensei', role: 'teacher' },
    });

    // Media: the workers answer with dev's LiveKit and a token signed with dev's own key pair
    // (in the state folder; never LiveKit's well-known devkey/secret).
    sensei.type('/media');
    const media = await sees(sensei, 'a media answer', (m) => m['kind'] === 'media');
    expect(media).toMatchObject({ url: mediaUrl, room: 'demo', identity: 'sensei' });
    const livekitDir = path.join(stateDir, 'livekit');
    const grants = await new TokenVerifier(
      readFileSync(path.join(livekitDir, 'api-key'), 'utf8').trim(),
      readFileSync(path.join(livekitDir, 'api-secret'), 'utf8').trim(),
    ).verify(String(media['token']));
    expect(grants).toMatchObject({ sub: 'sensei', video: { room: 'demo', canPublish: true } });
    expect(grants.iss).not.toBe('devkey');
    expect(Date.parse(String(media['expiresAt']))).toBeGreaterThan(Date.now());
    // and LiveKit itself answers there
    expect(await (await fetch(`http://127.0.0.1:${ports.media}/`)).text()).toBe('OK');

    const hana = startClient(
      'hana',
      `node dist/cli.js client --nats-url ${url} --token ${token('student', 'hana')} --json`,
    );
    await sees(hana, 'joined', (m) => m['kind'] === 'joined');
    await sees(sensei, 'hana joining', event('EVT_PARTICIPANT_JOINED', 'hana'));
    // kenji runs the text client, as a person at a terminal would.
    const kenji = startClient(
      'kenji',
      `node dist/cli.js client --nats-url ${url} --token ${token('student', 'kenji')}`,
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

    // The README's "Getting started" command, verbatim, in the same folder as dev (here: with
    // dev's state folder and port, given as the environment variables of the flags).
    const aiko = startClient('aiko', gettingStarted.commands[0]?.text ?? '', {
      TORII_NATS_URL: url,
      TORII_KEYS_DIR: path.join(stateDir, 'keys'),
    });
    await sees(sensei, 'aiko joining', event('EVT_PARTICIPANT_JOINED', 'aiko'));
    aiko.type('/raise');
    await sees(sensei, 'aiko raising', event('EVT_HAND_RAISED', 'aiko'));
    aiko.type('/leave');
    expect(((await once(aiko.proc, 'exit')) as [number | null])[0]).toBe(0);
    await sees(sensei, 'aiko leaving', event('EVT_PARTICIPANT_LEFT', 'aiko'));
    expect(aiko.text).toContain('left the room');

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
    await waitFor(
      'every process of the group gone',
      () => processGroupMembers(devPid).length === 0,
    );
    for (const pid of members) expect(isAlive(pid)).toBe(false);
    expect(out.stderr).toContain('shutdown complete');
  });
});
