/**
 * The `torii` CLI as a user runs it: keys, tokens, nats-config and dev mode, and its answers to
 * bad input (one line on stderr, exit code 2, nothing changed).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { fromCurveSeed, fromSeed } from '@nats-io/nkeys';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { findTool } from '../../src/devtools/tools.js';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { KeyFile } from '../../src/infra/keys.js';
import { ServiceUser } from '../../src/infra/natsconf.js';
import { CLI, torii, toriiSpawn } from '../helpers/cli.js';
import { websocketUpgrade } from '../helpers/assert-nats.js';
import { RoomClient } from '../../src/client/index.js';
import { freePort, isAlive, processGroupMembers, run, tempDir, waitFor } from '../helpers/procs.js';

const read = (dir: string, f: string): string => readFileSync(path.join(dir, f), 'utf8').trim();
const mode = (dir: string, f: string): number => statSync(path.join(dir, f)).mode & 0o777;
const hashDir = (dir: string): string => {
  const h = createHash('sha256');
  for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(path.join(dir, f)));
  return h.digest('hex');
};

/** Asserts a usage error: exit code 2 and exactly one line on stderr. */
function expectUsageError(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  expect(r.status).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

describe('torii keys generate', () => {
  const cwd = tempDir('cli-keys');
  const dir = path.join(cwd, 'keys');
  let out: Record<string, unknown>;

  beforeAll(() => {
    const r = torii(['keys', 'generate', '--out', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    out = JSON.parse(r.stdout) as Record<string, unknown>;
  });

  test('writes valid nkey and xkey pairs', () => {
    const enc = new TextEncoder();
    const issuer = fromSeed(enc.encode(read(dir, KeyFile.IssuerSeed)));
    expect(issuer.getPublicKey()).toBe(read(dir, KeyFile.IssuerPublic));
    expect(issuer.getPublicKey()).toMatch(/^A[A-Z2-7]{55}$/);
    expect(out.issuer).toBe(issuer.getPublicKey());
    // a real signature round trip, not just a prefix check
    const sig = issuer.sign(enc.encode('torii'));
    expect(issuer.verify(enc.encode('torii'), sig)).toBe(true);

    const xkey = fromCurveSeed(enc.encode(read(dir, KeyFile.XkeySeed)));
    expect(xkey.getPublicKey()).toBe(read(dir, KeyFile.XkeyPublic));
    expect(xkey.getPublicKey()).toMatch(/^X[A-Z2-7]{55}$/);
    const peer = fromCurveSeed(enc.encode(read(dir, KeyFile.XkeySeed)));
    const sealed = xkey.seal(enc.encode('secret'), peer.getPublicKey());
    expect(
      new TextDecoder().decode(peer.open(sealed, xkey.getPublicKey()) ?? new Uint8Array()),
    ).toBe('secret');
  });

  test('secrets are 0600, public keys 0644', () => {
    for (const f of [
      KeyFile.IssuerSeed,
      KeyFile.XkeySeed,
      KeyFile.TokenSigningJwk,
      KeyFile.AuthPassword,
      KeyFile.ServicePassword,
      KeyFile.SystemPassword,
    ]) {
      expect([f, mode(dir, f)]).toEqual([f, 0o600]);
    }
    for (const f of [KeyFile.IssuerPublic, KeyFile.XkeyPublic, KeyFile.TokenJwks])
      expect([f, mode(dir, f)]).toEqual([f, 0o644]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  test('prints no secret unless asked with --print', () => {
    const r = torii(['keys', 'generate', '--out', dir]);
    // (refused: keys exist) — check the first run's output instead
    expect(r.status).toBe(2);
    const text = JSON.stringify(out);
    for (const f of [KeyFile.IssuerSeed, KeyFile.XkeySeed, KeyFile.ServicePassword])
      expect(text).not.toContain(read(dir, f));
    expect(text).not.toContain((JSON.parse(read(dir, KeyFile.TokenSigningJwk)) as { d: string }).d);

    const other = path.join(cwd, 'printed');
    const printed = torii(['keys', 'generate', '--out', other, '--print']);
    expect(printed.status).toBe(0);
    const secrets = (JSON.parse(printed.stdout) as { secrets: Record<string, string> }).secrets;
    expect(secrets[KeyFile.IssuerSeed]).toBe(read(other, KeyFile.IssuerSeed));
    expect(secrets[KeyFile.ServicePassword]).toBe(read(other, KeyFile.ServicePassword));
  });

  test('refuses to overwrite existing keys without --force, and changes nothing', () => {
    const before = hashDir(dir);
    const r = torii(['keys', 'generate', '--out', dir]);
    expectUsageError(r, /--out: .* already holds keys .*--force/);
    expect(hashDir(dir)).toBe(before);
    const forced = torii(['keys', 'generate', '--out', dir, '--force', '--hs256']);
    expect(forced.status).toBe(0);
    expect(hashDir(dir)).not.toBe(before);
    expect(read(dir, KeyFile.TokenSecret).length).toBeGreaterThanOrEqual(43);
  });
});

describe('torii token', () => {
  const cwd = tempDir('cli-token');
  beforeAll(() => {
    expect(torii(['keys', 'generate'], { cwd }).status).toBe(0);
  });
  const keysDir = (): string => path.join(cwd, '.torii', 'keys');

  test('mints an EdDSA token with the claims of docs/auth-callout.md, verifiable with the JWKS', async () => {
    const r = torii(
      [
        'token',
        '--room',
        'n5-evening',
        '--user',
        'hana',
        '--role',
        'student',
        '--name',
        'Hana Sato',
        '--ttl',
        '30m',
      ],
      { cwd },
    );
    expect(r.status).toBe(0);
    const token = r.stdout.trim();
    const jwks = createLocalJWKSet(JSON.parse(read(keysDir(), KeyFile.TokenJwks)) as JSONWebKeySet);
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: 'torii',
      audience: 'torii-nats',
      algorithms: ['EdDSA'],
    });
    expect(protectedHeader.alg).toBe('EdDSA');
    expect(protectedHeader.kid).toBe(
      (JSON.parse(read(keysDir(), KeyFile.TokenSigningJwk)) as { kid: string }).kid,
    );
    expect(payload).toMatchObject({
      sub: 'hana',
      room: 'n5-evening',
      role: 'student',
      name: 'Hana Sato',
    });
    expect((payload.exp as number) - (payload.iat as number)).toBe(1800);
    expect(Math.abs((payload.iat as number) - Date.now() / 1000)).toBeLessThan(60);
  });

  test('flags can come from TORII_* environment variables; flags win', async () => {
    const r = torii(['token', '--role', 'teacher'], {
      cwd,
      env: { TORII_ROOM: 'env-room', TORII_USER: 'env-user', TORII_TTL: '2h' },
    });
    expect(r.status).toBe(0);
    const jwks = createLocalJWKSet(JSON.parse(read(keysDir(), KeyFile.TokenJwks)) as JSONWebKeySet);
    const { payload } = await jwtVerify(r.stdout.trim(), jwks, {
      issuer: 'torii',
      audience: 'torii-nats',
    });
    expect(payload).toMatchObject({ room: 'env-room', sub: 'env-user', role: 'teacher' });
    expect((payload.exp as number) - (payload.iat as number)).toBe(7200);

    const flagWins = torii(['token', '--role', 'teacher', '--room', 'flag-room'], {
      cwd,
      env: { TORII_ROOM: 'env-room', TORII_USER: 'u' },
    });
    const { payload: p2 } = await jwtVerify(flagWins.stdout.trim(), jwks, {
      issuer: 'torii',
      audience: 'torii-nats',
    });
    expect(p2.room).toBe('flag-room');
  });

  test('HS256 keys mint HS256 tokens', async () => {
    const dir = path.join(cwd, 'hs');
    expect(torii(['keys', 'generate', '--out', dir, '--hs256']).status).toBe(0);
    const r = torii([
      'token',
      '--keys-dir',
      dir,
      '--room',
      'r1',
      '--user',
      'u1',
      '--role',
      'observer',
    ]);
    expect(r.status).toBe(0);
    expect(decodeProtectedHeader(r.stdout.trim()).alg).toBe('HS256');
    const { payload } = await jwtVerify(
      r.stdout.trim(),
      new TextEncoder().encode(read(dir, KeyFile.TokenSecret)),
      { issuer: 'torii', audience: 'torii-nats' },
    );
    expect(payload.sub).toBe('u1');
  });

  test.each([
    [
      ['--room', 'a.b', '--user', 'u', '--role', 'student'],
      /--room .*invalid roomId "a\.b": contains "\."/,
    ],
    [['--room', 'a*', '--user', 'u', '--role', 'student'], /invalid roomId "a\*": contains "\*"/],
    [['--room', 'r', '--user', 'u>', '--role', 'student'], /invalid userId "u>": contains ">"/],
    [
      ['--room', 'r', '--user', 'has space', '--role', 'student'],
      /invalid userId "has space": contains a space/,
    ],
    [
      ['--room', 'x'.repeat(65), '--user', 'u', '--role', 'student'],
      /65 characters long \(at most 64\)/,
    ],
    [['--room', 'sysJsWorker', '--user', 'u', '--role', 'student'], /reserved/],
    [['--room', 'torii_rooms', '--user', 'u', '--role', 'student'], /reserved/],
    [['--room', 'r', '--user', 'u', '--role', 'stu.dent'], /role: invalid role/],
    [
      ['--room', 'r', '--user', 'u', '--role', 'student', '--ttl', '90'],
      /--ttl .*'90' is not a duration/,
    ],
    [['--room', 'r', '--user', 'u', '--role', 'student', '--ttl', '30d'], /--ttl .*outside 10s–7d/],
    [['--room', 'r', '--user', 'u'], /required option '--role <role>' not specified/],
    [['--room', 'r', '--user', 'u', '--role', 'student', '--bogus'], /unknown option '--bogus'/],
  ])('refuses %j with one clear line and exit code 2', (args, pattern) => {
    const r = torii(['token', ...args], { cwd });
    expectUsageError(r, pattern);
    expect(r.stdout).toBe('');
  });

  test('a missing key folder is named in the error', () => {
    const r = torii([
      'token',
      '--keys-dir',
      '/nonexistent/keys',
      '--room',
      'r',
      '--user',
      'u',
      '--role',
      'student',
    ]);
    expectUsageError(
      r,
      /--keys-dir: no token signing key in \/nonexistent\/keys .*torii keys generate/,
    );
  });
});

describe('torii nats-config', () => {
  const cwd = tempDir('cli-natsconf');
  const keys = path.join(cwd, 'keys');
  beforeAll(() => {
    expect(torii(['keys', 'generate', '--out', keys]).status).toBe(0);
  });

  test.each([
    ['single server', []],
    [
      'websocket and cluster',
      [
        '--websocket-port',
        '8081',
        '--websocket-origins',
        'https://classroom.example.com,http://localhost:8090',
        '--max-subscriptions',
        '50',
        '--max-payload',
        '32768',
        '--server-name',
        'n1',
        '--cluster-name',
        'torii',
        '--routes',
        'nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224',
      ],
    ],
    [
      'custom accounts',
      [
        '--auth-account',
        'CALLOUT',
        '--app-account',
        'CLASSROOM',
        '--client-account',
        'PUPILS',
        '--sys-account',
        'SYSTEM',
      ],
    ],
  ])('nats-server -t accepts the rendered config (%s)', (_name, extra) => {
    const out = path.join(cwd, `nats-${_name.replace(/\W/g, '_')}.conf`);
    const r = torii([
      'nats-config',
      '--keys-dir',
      keys,
      '--jetstream-dir',
      path.join(cwd, 'js'),
      '--out',
      out,
      ...extra,
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const text = readFileSync(out, 'utf8');
    expect(text).toContain(`issuer: "${read(keys, KeyFile.IssuerPublic)}"`);
    expect(text).toContain(`xkey: "${read(keys, KeyFile.XkeyPublic)}"`);
    const check = run(findTool('nats-server'), ['-t', '-c', out]);
    expect(`${check.stdout}${check.stderr}`).toMatch(/configuration file .* is valid/);
    expect(check.status).toBe(0);
  });

  test('prints to stdout by default', () => {
    const r = torii(['nats-config', '--keys-dir', keys]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/auth_callout \{/);
  });

  test.each([
    [
      ['--keys-dir', '/nonexistent'],
      /--keys-dir: cannot read \/nonexistent\/issuer\.nk: not found/,
    ],
    [['--routes', 'nats-route://a:6222'], /--routes .*routes need --cluster-name/],
    [['--port', '4222', '--http-port', '4222'], /--port .*ports must differ/],
    [['--port', '70000'], /--port .*'70000' is not a port/],
    [['--app-account', 'A.B'], /--app-account .*not a valid account name/],
    [['--client-account', 'APP'], /--client-account .*account names must differ/],
    [
      ['--websocket-port', '8081', '--websocket-origins', 'https://classroom.example.com/app'],
      /--websocket-origins .*not an origin: scheme:\/\/host\[:port\] only/,
    ],
    [
      ['--websocket-origins', 'https://classroom.example.com'],
      /--websocket-origins .*origins need a websocket \(--websocket-port\)/,
    ],
    [['--max-payload', '1024'], /--max-payload .*'1024' is not an integer from 32768 to 1048576/],
    [['--max-subscriptions', '0'], /--max-subscriptions .*'0' is not an integer from 1 to 100000/],
  ])('refuses %j with one clear line and exit code 2', (args, pattern) => {
    const r = torii([
      'nats-config',
      ...(args[0] === '--keys-dir' ? [] : ['--keys-dir', keys]),
      ...args,
    ]);
    expectUsageError(r, pattern);
  });
});

describe('torii help and version', () => {
  test('--version prints the package version', () => {
    const pkg = JSON.parse(readFileSync(path.resolve('package.json'), 'utf8')) as {
      version: string;
    };
    const r = torii(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  test.each([['dev'], ['keys', 'generate'], ['nats-config'], ['token']])(
    '%s --help shows examples and env variables',
    (...cmd) => {
      const r = torii([...cmd, '--help']);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('Examples:');
      expect(r.stdout).toMatch(/env: TORII_[A-Z_]+/);
    },
  );

  test('help piped into a reader that is already gone (| head) ends quietly with 0', () => {
    // `true` exits before node writes: the write fails with EPIPE.
    const r = run('bash', [
      '-c',
      `node ${CLI} worker --help | true; echo "status=\${PIPESTATUS[0]}"`,
    ]);
    expect(r.stdout).toBe('status=0\n');
    expect(r.stderr).toBe('');
  });

  test('an unknown command is a usage error', () => {
    expectUsageError(torii(['frobnicate']), /unknown command 'frobnicate'/);
  });
});

describe('torii dev', () => {
  test('runs nats-server, the controller on examples/rooms and the callout; printed tokens work; Ctrl-C stops everything', async () => {
    const cwd = tempDir('cli-dev');
    const [port, httpPort, wsPort] = [await freePort(), await freePort(), await freePort()];
    const [opsPort, webPort] = [await freePort(), await freePort()];
    const dev = toriiSpawn(
      [
        'dev',
        '--port',
        String(port),
        '--nats-monitor-port',
        String(httpPort),
        '--websocket-port',
        String(wsPort),
        '--http-port',
        String(opsPort),
        '--web-port',
        String(webPort),
        // media has its own tests (dev-classroom, web-media); off here, as the flag promises
        '--media',
        'off',
      ],
      { cwd },
    );
    let stdout = '';
    dev.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    let stderr = '';
    dev.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    await waitFor('dev banner', () => stdout.includes('Torii dev is running'), {
      timeoutMs: 20_000,
    }).catch((e: Error) => {
      throw new Error(`${e.message}\nstdout: ${stdout}\nstderr: ${stderr}`);
    });
    expect(stdout).toContain(`nats://127.0.0.1:${port}`);
    expect(stdout).toContain(`ws://127.0.0.1:${wsPort}`);
    expect(stdout).toMatch(/^ {2}Media {7}off \(--media off/m);
    expect(stdout).toMatch(
      /client --nats-url \S+ --token "\$\(node \S+ token --room demo --user aiko --role student\)"/,
    );

    const natsDir = path.join(cwd, '.torii', 'nats');
    const portsFile = readdirSync(natsDir).find((f) => f.endsWith('.ports'));
    const natsPid = Number(/_(\d+)\.ports$/.exec(portsFile ?? '')?.[1]);
    expect(isAlive(natsPid)).toBe(true);
    expect(readFileSync(path.join(natsDir, 'nats-server.conf'), 'utf8')).toContain('auth_callout');
    expect((await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status).toBe(200);

    // Browsers reach the websocket only from the classroom page dev serves (and apps, with no Origin).
    const ws = `ws://127.0.0.1:${wsPort}`;
    for (const page of [`http://127.0.0.1:${webPort}`, `http://localhost:${webPort}`, undefined])
      expect(await websocketUpgrade(ws, page)).toEqual({ status: 101, info: 'INFO' });
    for (const foreign of ['https://evil.example', `http://127.0.0.1:${port}`])
      expect(await websocketUpgrade(ws, foreign)).toEqual({ status: 403 });

    // The printed tokens get in through the callout, into the example room "demo".
    const url = `nats://127.0.0.1:${port}`;
    for (const [user, role] of [
      ['sensei', 'teacher'],
      ['hana', 'student'],
    ] as const) {
      const token = new RegExp(`${role} ${user}:\\s+(\\S+)`).exec(stdout)?.[1] ?? '';
      const nc = await connect({ servers: url, token, inboxPrefix: `_INBOX.demo.${user}` });
      const info = await nc.request(`$JS.API.CONSUMER.INFO.demo.${user}`, '', { timeout: 2_000 });
      expect(info.json<{ stream_name: string }>().stream_name).toBe('demo');
      await nc.close();
      // and the workers answer room events
      const client = await RoomClient.connect({
        connect,
        servers: url,
        token,
        roomId: 'demo',
        userId: user,
        autoRenew: false,
      });
      const initial = await client.request<{ me: { role: string } }>('REQ_INITIAL_DATA');
      expect(initial.me.role).toBe(role);
      await expect(client.request('REQ_MEDIA_SERVER_DATA')).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
      await client.close();
    }
    // A token minted with `torii token` in the same folder is accepted as well.
    const minted = torii(['token', '--room', 'demo', '--user', 'kenji', '--role', 'student'], {
      cwd,
    });
    expect(minted.status).toBe(0);
    const kenji = await connect({
      servers: url,
      token: minted.stdout.trim(),
      inboxPrefix: '_INBOX.demo.kenji',
    });
    await kenji.close();
    await expect(
      connect({ servers: url, token: 'forged', maxReconnectAttempts: 0 }),
    ).rejects.toThrow(/Authorization Violation/);

    // The service user bypasses the callout.
    const nc = await connect({
      servers: url,
      user: ServiceUser.Service,
      pass: read(path.join(cwd, '.torii', 'keys'), KeyFile.ServicePassword),
    });
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info('kaiwa-tue-1900')).config.name).toBe('kaiwa-tue-1900');
    await nc.close();

    dev.kill('SIGINT');
    const [code] = (await once(dev, 'exit')) as [number | null];
    expect(code).toBe(0);
    await waitFor('nats-server stopped', () => !isAlive(natsPid));
    expect(stderr).toContain('shutdown complete');
    expect(existsSync(path.join(cwd, '.torii', 'keys', KeyFile.IssuerSeed))).toBe(true);
  });

  test('a start that fails (no livekit-server) stops what it had started and says how to go on', async () => {
    const [port, monitor, ws, ops, media] = await Promise.all(
      Array.from({ length: 5 }, () => freePort()),
    );
    const dev = toriiSpawn(['dev', '--log-level', 'warn', '--web-port', '0'], {
      cwd: tempDir('cli-dev-no-livekit'),
      group: true,
      env: {
        TORII_PORT: String(port),
        TORII_NATS_MONITOR_PORT: String(monitor),
        TORII_WEBSOCKET_PORT: String(ws),
        TORII_HTTP_PORT: String(ops),
        TORII_MEDIA_PORT: String(media),
        TORII_LIVEKIT_SERVER: path.join(PROJECT_ROOT, 'README.md'),
      },
    });
    let stderr = '';
    dev.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const [code] = (await once(dev, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toMatch(/TORII_LIVEKIT_SERVER=\S+README\.md is not an executable file/);
    expect(stderr).toContain('torii dev --media off runs without media');
    // nats-server, started before, is gone with it (same process group)
    await waitFor('no process of dev left', () => processGroupMembers(dev.pid ?? 0).length === 0);
  });

  test('refuses a non-loopback host', () => {
    const r = torii(['dev', '--host', '0.0.0.0'], { cwd: tempDir('cli-dev-host') });
    expectUsageError(r, /--host .*loopback only/);
  });
});
