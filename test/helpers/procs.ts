/**
 * Bookkeeping for processes and folders that tests create: every server a test starts is
 * registered here and killed when the test process exits, even after a failed test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../../src/protocol/errors.js';

/** Temp folders of test servers start with this; a leak check looks for it in command lines. */
export const TEST_DIR_PREFIX = 'torii-test-';

const children = new Set<ChildProcess>();
const fileChildren = new Set<ChildProcess>();
const dirs = new Set<string>();

/**
 * Kills a child with SIGKILL when this process exits, and (scope `file`, the default) when the
 * current test file ends, even after a failed test. Scope `run` is for servers shared by the
 * whole run (the Kubernetes control plane), which the global teardown stops.
 */
export function track(child: ChildProcess, scope: 'file' | 'run' = 'file'): ChildProcess {
  children.add(child);
  if (scope === 'file') fileChildren.add(child);
  child.once('exit', () => {
    children.delete(child);
    fileChildren.delete(child);
  });
  return child;
}

/** Group leaders whose whole process group is killed at teardown. */
const groups = new Set<number>();

/**
 * Like {@link track} for a child spawned with `detached: true` (its own process group): teardown
 * kills every process of the group, so grandchildren (a nats-server started by `torii dev`) go too.
 */
export function trackGroup(child: ChildProcess): ChildProcess {
  if (child.pid !== undefined) groups.add(child.pid);
  return track(child);
}

function killGroups(): void {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  groups.clear();
}

/** Live processes in process group `pgid` (from /proc, zombies excluded). */
export function processGroupMembers(pgid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp …: comm may contain spaces, so split after the last ')'
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z' && Number(fields[2]) === pgid) found.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Kills every file-scoped child still running and waits for them to exit. */
export async function killFileChildren(): Promise<void> {
  killGroups();
  const alive = [...fileChildren].filter((c) => c.exitCode === null && c.signalCode === null);
  await Promise.all(
    alive.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
}

/**
 * A fresh temp folder, removed when this process exits. Inside the run's folder when jest made
 * one, so the run's leak check finds only its own servers, never another run's on the machine.
 */
export function tempDir(label: string): string {
  const base = process.env['TORII_TEST_RUN_DIR'] ?? os.tmpdir();
  const dir = mkdtempSync(path.join(base, `${TEST_DIR_PREFIX}${label}-`));
  dirs.add(dir);
  return dir;
}

/** Removes a temp folder now. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  // A port the kernel hands out for `listen(0)` comes from the ephemeral range, which every
  // outgoing connection draws from too: between this check and the server's own bind, a client
  // of another test could take it ("bind: address already in use", seen with cluster routes). So
  // a port below that range is picked at random and checked; the kernel's pick is the fallback.
  const [low] = ephemeralRange();
  const floor = Math.max(1_024, low - PORT_SPAN);
  for (let i = 0; i < 50; i++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    if (await canListen(port)) return port;
  }
  return listenOnce(0);
}

/** How many ports below the ephemeral range {@link freePort} picks from. */
const PORT_SPAN = 12_000;

/** The kernel's ephemeral port range (Linux), or its usual default elsewhere. */
function ephemeralRange(): [number, number] {
  try {
    const [a, b] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (a !== undefined && b !== undefined && a > 1_024 && b >= a) return [a, b];
  } catch {
    // not Linux
  }
  return [32_768, 60_999];
}

const canListen = (port: number): Promise<boolean> =>
  listenOnce(port).then(
    () => true,
    () => false,
  );

/** Listens on `port` (0: any) of 127.0.0.1, closes, and resolves with the port listened on. */
function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Polls `check` until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 10_000, intervalMs = 50 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${describeError(lastError)}` : ''}`,
      );
    }
    await sleep(intervalMs);
  }
}

/** True while a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Pids of live processes whose command line contains a test folder. */
export function leakedTestProcesses(): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (cmd.includes(`/${TEST_DIR_PREFIX}`) && isAlive(pid) && !/\bjest\b/.test(cmd))
        found.push({ pid, cmd });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Runs a command synchronously; returns its exit status and output. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    input: opts.input,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs a command without blocking the event loop (needed when this process serves the command,
 * e.g. the in-process auth callout answering the `nats` CLI).
 */
export function runAsync(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = track(
      spawn(cmd, args, {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
