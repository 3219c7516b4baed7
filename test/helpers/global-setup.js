// Jest global setup of the integration project. Plain JavaScript on purpose: jest loads this
// file outside its ESM/TypeScript pipeline. It only creates the run folder; the Kubernetes
// control plane is started by the first test that needs it (test/helpers/kube.ts) and shared.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';

export default function globalSetup() {
  process.env.TORII_TEST_RUN_DIR = mkdtempSync(path.join(os.tmpdir(), 'torii-test-run-'));
}
