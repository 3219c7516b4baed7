// Native ESM under jest (node --experimental-vm-modules): several dependencies ship ESM only.
// ts-jest transpiles without type checking; `make typecheck` does that once for the whole tree.
/** @type {import('ts-jest').TsJestTransformerOptions} */
const tsJest = { useESM: true };

/** @type {import('jest').Config} */
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['ts-jest', tsJest] },
  testEnvironment: 'node',
  setupFilesAfterEnv: ['<rootDir>/test/helpers/setup-file.ts'],
};

/** @type {import('jest').Config} */
export default {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/helpers/global-setup.js',
      globalTeardown: '<rootDir>/test/helpers/global-teardown.js',
    },
  ],
  // A guard against hangs, not a performance bound: the first kube test starts the control plane.
  testTimeout: 120_000,
};
