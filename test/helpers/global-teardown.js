// Jest global teardown: stops the shared control plane and fails the run when a test left a
// server process alive. Plain JavaScript, like global-setup.js.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';

function alive(pid) {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Servers this run started: their folders are inside the run's folder (tempDir). */
function testProcesses(runDir) {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (cmd.includes(`${runDir}/`) && !/\bjest\b/.test(cmd) && alive(Number(entry)))
        found.push(`${entry} ${cmd}`);
    } catch {
      // gone
    }
  }
  return found;
}

async function stopPids(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
}

export default async function globalTeardown() {
  const runDir = process.env.TORII_TEST_RUN_DIR;
  if (!runDir) return;
  const stateFile = path.join(runDir, 'control-plane.json');
  try {
    const state = JSON.parse(readFileSync(stateFile, 'utf8'));
    await stopPids(state.pids);
    rmSync(state.dir, { recursive: true, force: true });
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  rmSync(runDir, { recursive: true, force: true });
  const deadline = Date.now() + 10_000;
  let leaked = testProcesses(runDir);
  while (leaked.length > 0 && Date.now() < deadline) {
    await sleep(100);
    leaked = testProcesses(runDir);
  }
  if (leaked.length > 0) {
    // Report them, and do not let them outlive the run.
    for (const line of leaked) {
      try {
        process.kill(Number(line.split(' ')[0]), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    throw new Error(`the test run left processes alive:\n${leaked.join('\n')}`);
  }
}
