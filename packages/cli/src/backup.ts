/**
 * `raftkv backup`, `raftkv backup inspect`, `raftkv restore` and `raftkv recover`: the procedures
 * of docs/operations.md, "Back up and restore" and "Losing a majority". A failure throws; main.ts
 * prints it (`raftkv: <code>: <message>`) and exits 1.
 */
import { randomBytes } from 'node:crypto';
import { access, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { forceNewCluster, restoreDataDir, verifyBackupFile, type BackupInfo } from '@raftkv/node';
import { ErrorCode, isRaftKvError, RaftKvError } from '@raftkv/raft';
import { EXIT_OK } from './args.js';
import type { BackupConfig, BackupInspectConfig, BackupTakeConfig, RecoverConfig, RestoreConfig } from './backup-args.js';
import type { Output } from './output.js';

export async function runBackup(config: BackupConfig, out: Output): Promise<number> {
  return config.kind === 'inspect' ? runInspect(config, out) : runTake(config, out);
}

async function runInspect(config: BackupInspectConfig, out: Output): Promise<number> {
  printInfo(await verifyBackupFile(config.file), config.file, config.json, out);
  return EXIT_OK;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Downloads into a temporary file next to FILE (the same file system, so the final rename is
 * atomic), syncs it, verifies it from end to end, then renames it: FILE, once it exists, is a
 * complete, durable, verified backup, whatever happens to this process or the connection.
 */
async function runTake(config: BackupTakeConfig, out: Output): Promise<number> {
  const { file } = config;
  const refuseExisting = async (): Promise<void> => {
    if (await exists(file)) throw new RaftKvError(ErrorCode.INVALID_CONFIG, `${file} exists; a backup never overwrites a file (choose another name)`);
  };
  await refuseExisting();
  const started = performance.now();
  const temp = join(dirname(file), `.${basename(file)}.partial-${randomBytes(4).toString('hex')}`);
  const url = `${config.url}/v1/backup`;
  try {
    await download(url, temp, config.idleTimeoutMs);
    let info: BackupInfo;
    try {
      info = await verifyBackupFile(temp);
    } catch (error) {
      if (!isRaftKvError(error, ErrorCode.BACKUP_INVALID)) throw error;
      throw new RaftKvError(ErrorCode.BACKUP_INVALID, `the backup received from ${url} does not verify (the connection or the node failed while it streamed); nothing was kept: ${error.message}`, { cause: error });
    }
    await refuseExisting();
    await rename(temp, file);
    await syncDir(dirname(file));
    printInfo(info, file, config.json, out);
    if (!config.json) out.out(`  took        ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return EXIT_OK;
  } finally {
    await rm(temp, { force: true });
  }
}

/** GET `url` into a new file `path`, one chunk in memory at a time, synced; gives up after `idleTimeoutMs` without a byte. */
async function download(url: string, path: string, idleTimeoutMs: number): Promise<void> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const idle = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(new Error(`no byte from ${url} for ${idleTimeoutMs} ms`)), idleTimeoutMs);
  };
  idle();
  try {
    let response: Response;
    try {
      response = await fetch(url, { signal: abort.signal });
    } catch (error) {
      throw new Error(`cannot reach ${url}: ${reasonOf(error)}`, { cause: error });
    }
    if (!response.ok || response.body === null) {
      const text = await response.text().catch(() => '');
      throw errorFromAnswer(url, response.status, text);
    }
    const handle = await open(path, 'wx');
    try {
      try {
        for await (const chunk of response.body) {
          idle();
          await handle.write(chunk);
        }
      } catch (error) {
        throw new Error(`the backup stream from ${url} broke off: ${reasonOf(error)}`, { cause: error });
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
  } finally {
    clearTimeout(timer);
  }
}

/** A node's JSON error (`{code, message}`) as a RaftKvError with that code; anything else as it came. */
function errorFromAnswer(url: string, status: number, text: string): Error {
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown };
    const codes: readonly string[] = Object.values(ErrorCode);
    if (typeof body.code === 'string' && codes.includes(body.code) && typeof body.message === 'string') {
      return new RaftKvError(body.code as ErrorCode, `GET ${url} answered ${status}: ${body.message}`);
    }
  } catch {
    // not JSON: reported as it is below
  }
  return new Error(`GET ${url} answered ${status}: ${text.slice(0, 300)}`);
}

/** fetch hides the reason (ECONNREFUSED, ...) in `cause`. */
function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.message}${cause}`;
}

function printInfo(info: BackupInfo, file: string, json: boolean, out: Output): void {
  const m = info.metadata;
  if (json) {
    out.out(JSON.stringify({ file, fileBytes: info.fileBytes, sha256: info.sha256, ...m }));
    return;
  }
  const list = (ids: readonly string[]): string => (ids.length === 0 ? 'none' : ids.join(', '));
  out.out(`backup ${file} (verified)`);
  out.out(`  sha256      ${info.sha256} (${info.fileBytes} bytes)`);
  out.out(`  cluster     ${m.clusterId}, served by node ${m.nodeId}, created ${m.createdAt}`);
  out.out(`  position    index ${m.index}, term ${m.term}`);
  out.out(`  members     voters ${list(m.voters)}; learners ${list(m.learners)}`);
  out.out(`  keys        ${m.keyCount} (${m.dataBytes} bytes of keys and values; ${m.recordCount} records, image ${m.imageBytes} bytes)`);
  out.out(`  state hash  ${m.stateHash}`);
}

export async function runRestore(config: RestoreConfig, out: Output): Promise<number> {
  const report = await restoreDataDir({ file: config.file, dataDir: config.dataDir, id: config.id, members: config.members, ...(config.clusterId === undefined ? {} : { clusterId: config.clusterId }) });
  const b = report.backup;
  out.out(`restored node ${report.nodeId} of the new cluster ${report.clusterId} into ${report.dataDir}`);
  out.out(`  from        ${config.file} (sha256 ${report.sha256}), taken from cluster ${b.clusterId} at ${b.createdAt}`);
  out.out(`  position    index ${report.index}, term ${report.term}`);
  out.out(`  members     ${report.members.join(', ')} (voters)`);
  out.out(`  keys        ${b.keyCount}, state hash ${b.stateHash}`);
  out.out(`next: restore every other member from the same file with the same --members, then start each node with`);
  out.out(`      raftkv start (its data directory holds the cluster id; give no --cluster-id, or this one)`);
  return EXIT_OK;
}

export async function runRecover(config: RecoverConfig, out: Output): Promise<number> {
  const report = await forceNewCluster({ dataDir: config.dataDir, ...(config.clusterId === undefined ? {} : { clusterId: config.clusterId }) });
  if (report.resumed) {
    out.out(`finished an interrupted recovery of ${report.dataDir}: node ${report.nodeId} is the one member of cluster ${report.clusterId}`);
    out.out(`  position    index ${report.index}, term ${report.term}`);
    out.out(`  old log     ${report.previousLog || '(not found)'} (cluster ${report.previousClusterId})`);
    return EXIT_OK;
  }
  out.out(`node ${report.nodeId} is now the one member of the new cluster ${report.clusterId} (was ${report.previousClusterId})`);
  out.out(`  position    index ${report.index}, term ${report.term} (committed entries applied from the log: ${report.appliedFromLog})`);
  out.out(`  discarded   ${report.discardedEntries} (log entries past the commit index this node knew)`);
  out.out(`  retired     ${report.retired.length === 0 ? 'none' : report.retired.join(', ')} (never to be added again under these ids)`);
  out.out(`  old log     ${report.previousLog}`);
  out.out(`next: start the node with raftkv start and its own entry only in --peers; add new machines as learners under new ids`);
  return EXIT_OK;
}
