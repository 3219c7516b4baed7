// Jest global setup of the integration project. Plain JavaScript on purpose: jest loads this
// file outside its ESM/TypeScript pipeline. It only creates the run folder; the Kubernetes
// control plane is started by the first test that needs it (test/helpers/kube.ts) and shared.
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';

export default function globalSetup() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'torii-test-run-'));
  // Servers' folders live inside (tempDir), and some tests run them as an unprivileged user:
  // the run's folder must let it pass, as the system's temp folder does.
  chmodSync(dir, 0o755);
  process.env.TORII_TEST_RUN_DIR = dir;
}
