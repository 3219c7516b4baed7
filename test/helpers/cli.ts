/** Runs the built `torii` CLI (dist/cli.js) as a child process, as a user would. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/runtime/version.js';
import { freePort, track, trackGroup, waitFor } from './procs.js';

/** The compiled CLI entry point. */
export const CLI = path.join(PROJECT_ROOT, 'dist', 'cli.js');

function ensureBuilt(): void {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: run 'npm run build' (make test does) first`);
}

/** Environment without any TORII_* variable of the developer's shell. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('TORII_') || k === 'TORII_TOOLS_CACHE' || k === 'TORII_NATS_SERVER')
      env[k] = v;
  return { ...env, ...extra };
}

/** Runs `torii ...args` to completion. */
export function torii(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  ensureBuilt();
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: cleanEnv(opts.env),
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Starts a long-running `torii ...args` (e.g. `dev`), killed at teardown if still running.
 * `stdin: 'pipe'` to type into it; `group: true` makes it the leader of its own process group, as
 * a shell does, so a test can send Ctrl-C to the group (teardown kills the whole group).
 */
export function toriiSpawn(
  args: string[],
  opts: {
    cwd?: string;
    env?: Record<string, string>;
    stdin?: 'pipe' | 'ignore';
    group?: boolean;
  } = {},
): ChildProcess {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: cleanEnv(opts.env),
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    detached: opts.group === true,
  });
  return opts.group === true ? trackGroup(child) : track(child);
}

/**
 * Starts a role (`worker`, `controller`, …) as its own process with an ops port and waits until
 * its `/readyz` answers 200.
 */
export async function spawnRole(
  args: string[],
  opts: { env?: Record<string, string>; readyTimeoutMs?: number } = {},
): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const proc = toriiSpawn([...args, '--http-port', String(port), '--log-level', 'warn'], {
    env: opts.env ?? {},
  });
  await waitFor(
    `${args[0] ?? 'role'} ready`,
    async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200,
    { timeoutMs: opts.readyTimeoutMs ?? 30_000 },
  );
  return { proc, port };
}

/** What `torii dev` prints once every part of it runs. */
export const DEV_BANNER = 'Torii dev is running';

/** A free port for every listener of `torii dev`, and the `TORII_*` variables that move it there. */
export interface DevPorts {
  nats: number;
  natsMonitor: number;
  websocket: number;
  http: number;
  web: number;
  media: number;
  mediaRtc: number;
  env: Record<string, string>;
}

/** Free ports for `torii dev` (see {@link DevPorts}). */
export async function devPorts(): Promise<DevPorts> {
  const [nats, natsMonitor, websocket, http, web, media, mediaRtc] = (await Promise.all(
    Array.from({ length: 7 }, () => freePort()),
  )) as [number, number, number, number, number, number, number];
  return {
    nats,
    natsMonitor,
    websocket,
    http,
    web,
    media,
    mediaRtc,
    env: {
      TORII_PORT: String(nats),
      TORII_NATS_MONITOR_PORT: String(natsMonitor),
      TORII_WEBSOCKET_PORT: String(websocket),
      TORII_HTTP_PORT: String(http),
      TORII_WEB_PORT: String(web),
      TORII_MEDIA_PORT: String(media),
      TORII_MEDIA_RTC_PORT: String(mediaRtc),
    },
  };
}

/** Output of a running `torii dev`, as it grows. */
export interface DevOutput {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Collects what `dev` (a `torii dev`, or a `make dev`) prints and waits for its banner; a start
 * that never gets there fails with everything it printed.
 */
export async function waitForDev(dev: ChildProcess, timeoutMs = 60_000): Promise<DevOutput> {
  const out = { stdout: '', stderr: '' };
  dev.stdout?.on('data', (b: Buffer) => (out.stdout += b.toString()));
  dev.stderr?.on('data', (b: Buffer) => (out.stderr += b.toString()));
  await waitFor('dev banner', () => out.stdout.includes(DEV_BANNER), { timeoutMs }).catch(
    (e: Error) => {
      throw new Error(`${e.message}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`);
    },
  );
  return out;
}
