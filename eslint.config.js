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
  {
    // The Ready loop runs unchanged in the simulator: time, randomness and I/O come only through
    // the interfaces it is given, so that a seed replays a run exactly.
    files: ['packages/node/src/replica/**/*.ts'],
    languageOptions: { globals: { console: 'off', process: 'off', Buffer: 'off', setTimeout: 'off', clearTimeout: 'off', setImmediate: 'off', performance: 'off' } },
    rules: {
      'no-restricted-globals': ['error', ...impureGlobals.map((g) => ({ ...g, message: g.message.replace('packages/raft is pure', 'the Ready loop is deterministic') }))],
      'no-restricted-properties': ['error',
        { object: 'Math', property: 'random', message: 'the Ready loop is deterministic: take randomness from the injected source.' },
        { object: 'globalThis', message: 'the Ready loop is deterministic: no ambient globals.' },
      ],
      'no-restricted-imports': ['error', { patterns: [
        { group: ['node:*', 'fs', 'net', 'os', 'crypto', 'timers', 'child_process', 'path'], message: 'the Ready loop does its I/O through the interfaces in replica/io.ts.' },
      ] }],
      'no-restricted-syntax': ['error',
        { selector: "NewExpression[callee.name='Date']", message: 'the Ready loop reads time from its Clock.' },
      ],
    },
  },
);
