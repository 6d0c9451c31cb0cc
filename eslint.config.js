// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** The consensus core must stay pure: no clock, no timers, no randomness of its own, no I/O. */
const impureGlobals = [
  'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate',
  'queueMicrotask', 'Date', 'performance', 'process', 'fetch', 'require',
].map((name) => ({ name, message: `packages/raft is pure: '${name}' is not allowed (time is tick(), effects leave through Ready).` }));

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly', URL: 'readonly', performance: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['packages/raft/src/**/*.ts'],
    languageOptions: { globals: { console: 'off', process: 'off', Buffer: 'off', setTimeout: 'off', clearTimeout: 'off', setImmediate: 'off', performance: 'off' } },
    rules: {
      'no-restricted-globals': ['error', ...impureGlobals],
      'no-restricted-properties': ['error',
        { object: 'Math', property: 'random', message: 'packages/raft is pure: take randomness from the injected source.' },
        { object: 'globalThis', message: 'packages/raft is pure: no ambient globals.' },
      ],
      'no-restricted-imports': ['error', { patterns: [
        { group: ['node:*', 'fs', 'net', 'os', 'crypto', 'timers', 'child_process', 'path'], message: 'packages/raft does no I/O and imports no Node.js module.' },
        { group: ['@raftkv/*'], message: 'packages/raft depends on nothing of ours.' },
      ] }],
      'no-restricted-syntax': ['error',
        { selector: "NewExpression[callee.name='Date']", message: 'packages/raft reads no clock.' },
      ],
    },
  },
);
