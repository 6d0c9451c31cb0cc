import { describe, expect, it } from 'vitest';
import { parseBackupArgs, parseRecoverArgs, parseRestoreArgs, UsageError } from '@raftkv/cli';

function usageError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  return expect.unreachable('no UsageError thrown');
}

describe('raftkv backup, restore and recover arguments', () => {
  it('backup: --from a base URL (http:// may be left out) and one FILE; inspect: one FILE', () => {
    expect(parseBackupArgs(['--from', '10.0.0.2:8001', 'b.rkvbackup'])).toEqual({ kind: 'take', url: 'http://10.0.0.2:8001', file: 'b.rkvbackup', json: false, idleTimeoutMs: 60_000 });
    expect(parseBackupArgs(['--from', 'http://h:1/', '--json', '--idle-timeout-ms', '500', 'f'])).toMatchObject({ url: 'http://h:1', json: true, idleTimeoutMs: 500 });
    expect(parseBackupArgs(['inspect', '--json', 'f'])).toEqual({ kind: 'inspect', file: 'f', json: true });
    expect(usageError(() => parseBackupArgs(['b.rkvbackup']))).toBe('--from is required');
    expect(usageError(() => parseBackupArgs(['--from', 'h:1']))).toContain('expected one FILE to write, got 0');
    expect(usageError(() => parseBackupArgs(['--from', 'http://h:1/v1/backup', 'f']))).toContain('must be a base URL');
    expect(usageError(() => parseBackupArgs(['inspect']))).toContain('backup inspect takes one FILE, got 0');
    expect(usageError(() => parseBackupArgs(['inspect', 'a', 'b']))).toContain('got 2');
  });

  it('restore: FILE, --data-dir, --id among --members', () => {
    expect(parseRestoreArgs(['f', '--data-dir', 'd', '--id', 'n2', '--members', 'n1, n2,n3'])).toEqual({ file: 'f', dataDir: 'd', id: 'n2', members: ['n1', 'n2', 'n3'] });
    expect(parseRestoreArgs(['f', '--data-dir', 'd', '--id', 'n1', '--members', 'n1', '--cluster-id', 'copy'])).toMatchObject({ clusterId: 'copy' });
    expect(usageError(() => parseRestoreArgs(['f', '--data-dir', 'd', '--id', 'n4', '--members', 'n1,n2']))).toBe('--id n4 is not one of --members n1,n2');
    expect(usageError(() => parseRestoreArgs(['f', '--data-dir', 'd', '--id', 'n1', '--members', 'n1,n1']))).toContain('names a node twice');
    expect(usageError(() => parseRestoreArgs(['f', '--data-dir', 'd', '--id', 'n1', '--members', 'n1,bad id']))).toContain('must be 1-64 letters');
    expect(usageError(() => parseRestoreArgs(['--data-dir', 'd', '--id', 'n1', '--members', 'n1']))).toContain('expected one backup FILE');
    expect(usageError(() => parseRestoreArgs(['f', '--id', 'n1', '--members', 'n1']))).toBe('--data-dir is required');
  });

  it('recover: only with --force-new-cluster', () => {
    expect(parseRecoverArgs(['--force-new-cluster', '--data-dir', 'd'])).toEqual({ dataDir: 'd' });
    expect(parseRecoverArgs(['--force-new-cluster', '--data-dir', 'd', '--cluster-id', 'x'])).toEqual({ dataDir: 'd', clusterId: 'x' });
    expect(usageError(() => parseRecoverArgs(['--data-dir', 'd']))).toContain('--force-new-cluster is required');
    expect(usageError(() => parseRecoverArgs(['--force-new-cluster']))).toBe('--data-dir is required');
  });
});
