/**
 * `torii auth-callout` as deployed: a separate process configured by flags and TORII_* variables,
 * serving /healthz, /readyz and /metrics, and shutting down gracefully on SIGTERM.
 */
import { once } from 'node:events';
import { connectClient, token } from '../helpers/callout.js';
import { torii, toriiSpawn } from '../helpers/cli.js';
import { startNats, type TestNats } from '../helpers/nats.js';
import { freePort, tempDir, waitFor } from '../helpers/procs.js';
import { publishRoom } from '../helpers/room.js';

let server: TestNats;
beforeAll(async () => {
  server = await startNats();
  const svc = await server.connectService();
  await publishRoom(svc, 'n5');
  await svc.close();
});
afterAll(async () => {
  await server?.destroy();
});

test('serves connections and ops endpoints, stops cleanly on SIGTERM', async () => {
  const port = await freePort();
  const proc = toriiSpawn(['auth-callout', '--keys-dir', server.keys.dir, '--log-level', 'info'], {
    env: { TORII_NATS_URL: server.url, TORII_HTTP_PORT: String(port) },
  });
  let logs = '';
  proc.stderr?.on('data', (b: Buffer) => (logs += b.toString()));
  const ops = `http://127.0.0.1:${port}`;
  await waitFor('readyz 200', async () => (await fetch(`${ops}/readyz`)).status === 200, {
    timeoutMs: 20_000,
  }).catch((e: Error) => {
    throw new Error(`${e.message}\n${logs}`);
  });
  expect((await fetch(`${ops}/healthz`)).status).toBe(200);
  const ready = (await (await fetch(`${ops}/readyz`)).json()) as { checks: Record<string, string> };
  expect(ready.checks).toEqual({ startup: 'ok', nats: 'ok', rooms: 'ok', callout: 'ok' });

  const nc = await connectClient(
    server.url,
    'n5',
    'hana',
    await token(server.keys, { room: 'n5', sub: 'hana', role: 'student' }),
  );
  await nc.close();
  await expect(connectClient(server.url, 'n5', 'hana', 'garbage')).rejects.toThrow(
    /Authorization Violation/,
  );

  const metrics = await (await fetch(`${ops}/metrics`)).text();
  expect(metrics).toMatch(/torii_auth_requests_total\{result="allowed"\} 1/);
  expect(metrics).toMatch(/torii_auth_requests_total\{result="rejected"\} 1/);
  expect(metrics).toMatch(/torii_auth_rejections_total\{reason="token_malformed"\} 1/);
  expect(metrics).toMatch(/torii_auth_duration_seconds_bucket/);

  // every line of the log is JSON with the role
  const lines = logs.trim().split('\n');
  for (const line of lines) expect(JSON.parse(line)).toMatchObject({ role: 'auth-callout' });
  expect(logs).toContain('"reason":"token_malformed"');
  expect(logs).not.toContain('garbage'); // the token itself is never logged

  proc.kill('SIGTERM');
  const [code] = (await once(proc, 'exit')) as [number | null];
  expect(code).toBe(0);
  expect(logs).toContain('shutdown complete');
});

test.each([
  [['--keys-dir', '/nonexistent'], /--keys-dir: cannot read \/nonexistent\/issuer\.nk: not found/],
  [['--clock-skew', '2m'], /--clock-skew .*at most 30s/],
  [['--inbox-policy', 'open'], /argument 'open' is invalid\. Allowed choices are private, shared/],
  [['--token-public-key-file', 'a.pem', '--token-secret-file', 'b'], /exclude each other/],
  [['--max-connections-per-user', '0'], /'0' is not an integer from 1 to 1000/],
  [['--admission-ttl', '500ms'], /--admission-ttl \(TORII_ADMISSION_TTL\): from 1s to 10m/],
])('refuses %j with one line and exit code 2', (args, pattern) => {
  const r = torii(['auth-callout', '--keys-dir', server.keys.dir, '--http-port', '0', ...args], {
    cwd: tempDir('callout-cli'),
  });
  expect(r.status).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
});

test('shuts down promptly on SIGTERM even when NATS is gone', async () => {
  const own = await startNats();
  const port = await freePort();
  const proc = toriiSpawn([
    'auth-callout',
    '--keys-dir',
    own.keys.dir,
    '--nats-url',
    own.url,
    '--http-port',
    String(port),
  ]);
  let logs = '';
  proc.stderr?.on('data', (b: Buffer) => (logs += b.toString()));
  await waitFor(
    'ready',
    async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
    { timeoutMs: 20_000 },
  );
  await own.destroy();
  await waitFor('disconnect noticed', () => logs.includes('NATS disconnected'));
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  // A hung drain would hold the process for the hook timeout (10 s per connection).
  const [code] = (await waitFor(
    'exit',
    () => Promise.race([exited, new Promise<false>((r) => setTimeout(() => r(false), 100))]),
    { timeoutMs: 5_000 },
  )) as [number | null];
  expect(code).toBe(0);
  expect(logs).toContain('shutdown complete');
});
