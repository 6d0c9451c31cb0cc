/**
 * The guides cannot drift from their examples: every code block marked
 * `<!-- example: docs/examples/<file> -->` in docs/embedding.md or docs/testing.md must be a
 * byte-for-byte copy of that file, every file in docs/examples must be quoted, and the complete
 * program must run to the end and print what the guide says it prints. (The partition-test
 * example, docs/examples/partition.test.ts, is a vitest file: the suite runs it as such.)
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GUIDE = 'docs/embedding.md';
const GUIDES = [GUIDE, 'docs/testing.md'];
const EXAMPLES_DIR = 'docs/examples';
/** The program elects a leader twice with the default 1 s election timeout: a few seconds. */
const RUN_TIMEOUT_MS = 30_000;

const MARKER = /^<!-- example: (\S+) -->$/;

/** The marked blocks of a markdown text, in order: the path each names and the block's content. */
function markedBlocks(markdown: string, guide: string): { path: string; code: string }[] {
  const lines = markdown.split('\n');
  const blocks: { path: string; code: string }[] = [];
  for (let k = 0; k < lines.length; k++) {
    const marker = MARKER.exec(lines[k]!);
    if (marker === null) continue;
    const path = marker[1]!;
    // The fence must follow the marker directly: a marker that quotes nothing is an error.
    expect(lines[k + 1], `${guide} line ${k + 2}: a \`\`\`ts fence must follow the marker for ${path}`).toBe('```ts');
    const end = lines.indexOf('```', k + 2);
    expect(end, `${guide}: the block for ${path} is not closed`).toBeGreaterThan(k);
    blocks.push({ path, code: lines.slice(k + 2, end).join('\n') + '\n' });
    k = end;
  }
  return blocks;
}

describe('docs/embedding.md, docs/testing.md and docs/examples', () => {
  it('quotes every example file byte for byte', async () => {
    const blocks = (await Promise.all(GUIDES.map(async (guide) => markedBlocks(await readFile(join(ROOT, guide), 'utf8'), guide)))).flat();
    const files = (await readdir(join(ROOT, EXAMPLES_DIR))).filter((f) => f.endsWith('.ts')).map((f) => `${EXAMPLES_DIR}/${f}`);
    expect(blocks.map((b) => b.path)).toContain(`${EXAMPLES_DIR}/embedded-cluster.ts`);
    expect(new Set(blocks.map((b) => b.path)), 'every example file is quoted in the guide').toEqual(new Set(files));
    for (const { path, code } of blocks) {
      expect(code, `the block marked ${path} differs from the file`).toBe(await readFile(join(ROOT, path), 'utf8'));
    }
  });

  it('runs the complete program: it exits 0 and prints the expected lines', async () => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--conditions=@raftkv/source', `${EXAMPLES_DIR}/embedded-cluster.ts`],
      { cwd: ROOT, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' },
    ); // rejects on a non-zero exit code or on the timeout
    expect(stderr).toBe('');
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(8);
    const [leader, read, cas, scan, stopped, readA, readB, closed] = lines;
    const first = /^leader: (n[123])$/.exec(leader!)?.[1];
    expect(first, leader).toBeDefined();
    expect(read).toMatch(/^read on follower n[123]: greeting = hello$/);
    expect(read).not.toContain(first);
    expect(cas).toBe('cas: first ok, second refused');
    expect(scan).toBe('scan users/: users/ada, users/bob, users/cy');
    const elected = /^stopped (n[123]); new leader (n[123]) in term (\d+)$/.exec(stopped!);
    expect(elected, stopped).not.toBeNull();
    expect(elected![1]).toBe(first);
    expect(elected![2]).not.toBe(first);
    // Both survivors, and only they, read the write made through the new leader.
    const survivors = ['n1', 'n2', 'n3'].filter((id) => id !== first);
    expect([readA, readB]).toEqual(survivors.map((id) => `${id} reads greeting = bonjour`));
    expect(closed).toBe('closed');
  });
});
