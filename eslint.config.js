// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

/**
 * The layers of `src/`, each importing only the ones it lists (docs/architecture.md, "Layout").
 * protocol is the wire contract, domain pure logic, runtime the process plumbing, infra what
 * talks to NATS and keys; the roles wire those and never import each other; the SDK and the page
 * stay browser-safe; devtools (server launchers for `torii dev` and tests) is imported only by
 * the dev command.
 */
const LAYERS = {
  protocol: [],
  domain: ['protocol'],
  runtime: ['protocol', 'domain'],
  infra: ['protocol', 'domain', 'runtime'],
  devtools: ['protocol', 'domain', 'runtime', 'infra'],
  auth: ['protocol', 'domain', 'runtime', 'infra'],
  worker: ['protocol', 'domain', 'runtime', 'infra'],
  controller: ['protocol', 'domain', 'runtime', 'infra'],
  client: ['protocol', 'domain'],
  web: ['protocol', 'domain', 'client'],
  commands: [
    'protocol',
    'domain',
    'runtime',
    'infra',
    'devtools',
    'auth',
    'worker',
    'controller',
    'client',
  ],
};
/** Node's built-ins, which the browser has not. */
const NODE_ONLY = ['node:*', '@nats-io/transport-node'];

/** One `no-restricted-imports` block per layer: every other layer of src/ is refused. */
const layerRules = Object.entries(LAYERS).map(([layer, allowed]) => {
  const refused = Object.keys(LAYERS).filter((l) => l !== layer && !allowed.includes(l));
  const browser = layer === 'client' || layer === 'web';
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: `^\\.\\./(${refused.join('|')})/`,
              message: `src/${layer} may import only ${allowed.length ? allowed.map((l) => `src/${l}`).join(', ') : 'itself'} (docs/architecture.md, "Layout").`,
            },
            ...(browser
              ? [
                  {
                    group: NODE_ONLY,
                    message: `src/${layer} runs in browsers: no Node.js-only module.`,
                  },
                ]
              : []),
          ],
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.tools/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      'no-restricted-syntax': [
        'error',
        { selector: 'TSEnumDeclaration', message: 'Use an `as const` object and a union type.' },
      ],
    },
  },
  ...layerRules,
  {
    // Only `torii dev` starts servers of its own.
    files: ['src/commands/**/*.ts', 'src/cli.ts'],
    ignores: ['src/commands/dev.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.{1,2}/(\\.\\./)?(devtools|web)/',
              message:
                'only `torii dev` (src/commands/dev.ts) and tests import src/devtools; nothing imports src/web.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  prettier,
);
