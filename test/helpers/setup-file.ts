// Runs in every test file: servers a failed test left running are killed when the file ends.
import { killFileChildren } from './procs.js';

afterAll(async () => {
  await killFileChildren();
});
