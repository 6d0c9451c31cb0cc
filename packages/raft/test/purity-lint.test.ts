import { ESLint } from 'eslint';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/** The lint rules that keep the core pure, checked against code that breaks each one. */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const eslint = new ESLint({ cwd: root });

async function rulesHit(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => m.ruleId ?? 'parse-error');
}

describe('packages/raft stays pure', () => {
  it.each([
    ['a wall clock read', 'export const t = Date.now();\n', 'no-restricted-globals'],
    ['a Date object', 'export const t = new Date();\n', 'no-restricted-syntax'],
    ['Math.random', 'export const r = Math.random();\n', 'no-restricted-properties'],
    ['a timer', 'setTimeout(() => undefined, 1);\n', 'no-restricted-globals'],
    ['performance.now', 'export const t = performance.now();\n', 'no-restricted-globals'],
    ['a Node.js import', "import { readFileSync } from 'node:fs';\nexport const f = readFileSync;\n", 'no-restricted-imports'],
    ['an import of another raftkv package', "import { x } from '@raftkv/node';\nexport const y = x;\n", 'no-restricted-imports'],
  ])('rejects %s', async (_what, code, rule) => {
    expect(await rulesHit(code, 'packages/raft/src/probe.ts')).toContain(rule);
  });

  it('allows the same code outside the core', async () => {
    expect(await rulesHit('export const t = Date.now();\n', 'packages/testing/src/probe.ts')).toEqual([]);
  });
});
