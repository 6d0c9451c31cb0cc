import { defineConfig } from 'vitest/config';

// .ci/run sets VITEST_JSON_OUT to get a machine-readable report next to the usual output.
const jsonOut = process.env['VITEST_JSON_OUT'];

export default defineConfig({
  ssr: { resolve: { conditions: ['@raftkv/source'] } },
  resolve: { conditions: ['@raftkv/source'] },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'docs/examples/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    ...(jsonOut === undefined ? {} : { reporters: ['default', 'json'], outputFile: { json: jsonOut } }),
  },
});
