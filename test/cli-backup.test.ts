/**
 * The backup commands through the `raftkv` executable (main.ts): exit statuses and the messages
 * an operator sees. The procedures themselves run in-process in packages/cli/test.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'packages/cli/src/main.ts');
const NODE_FLAGS = ['--import', 'tsx', '--conditions=@raftkv/source'];

function raftkv(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...NODE_FLAGS, MAIN, ...args], { cwd: ROOT, timeout: 30_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('raftkv backup, restore and recover from the command line', () => {
  it('a file that is not a backup: inspect and restore exit 1 naming it, and restore writes nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-cli-backup-'));
    dirs.push(dir);
    const file = join(dir, 'not-a-backup.rkvbackup');
    await writeFile(file, 'hello\n'.repeat(100));
    const inspect = await raftkv(['backup', 'inspect', file]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toBe(`raftkv: RAFTKV_BACKUP_INVALID: backup file ${file}: does not start with RAFTKVBK: it is not a raftkv backup file, or its first bytes are damaged\n`);
    const restore = await raftkv(['restore', file, '--data-dir', join(dir, 'n1'), '--id', 'n1', '--members', 'n1,n2,n3']);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toContain(`RAFTKV_BACKUP_INVALID: backup file ${file}`);
    expect(await readdir(dir)).toEqual(['not-a-backup.rkvbackup']);
  });

  it('usage: recover needs --force-new-cluster (exit 2); --help describes each command (exit 0)', async () => {
    const recover = await raftkv(['recover', '--data-dir', '/nonexistent']);
    expect(recover.code).toBe(2);
    expect(recover.stderr).toContain('raftkv recover: --force-new-cluster is required');
    const help = await raftkv(['restore', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: raftkv restore FILE --data-dir DIR --id ID --members ID,ID,...');
    const top = await raftkv(['--help']);
    expect(top.stdout).toMatch(/backup {4}take a backup of a running cluster/);
  });
});
