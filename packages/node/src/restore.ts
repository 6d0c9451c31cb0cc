/**
 * Building a node's data directory offline, for two procedures of docs/operations.md:
 *
 * - `restoreDataDir` (`raftkv restore`): one member of a NEW cluster from a backup file. Every
 *   member is restored from the same file with the same member list and its own id; then each
 *   starts as usual (its log is not empty, so the members given to `start` are not read).
 * - `forceNewCluster` (`raftkv recover --force-new-cluster`): the survivor of a cluster that lost
 *   a majority for good becomes a one-member cluster of its own.
 *
 * Both give the directory a new cluster id, so the transport's handshake refuses every node of
 * the old cluster ("cluster-mismatch"): an old node can never vote in, or send entries to, the
 * new cluster. Neither may run while a node owns the directory; LevelDB's lock on `<dataDir>/log`
 * refuses that (and `restoreDataDir` only writes into an empty directory).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openKvStateMachine, readBackupImage, summarizeImage, verifyBackupFile, type BackupInfo, type BackupMetadata, type KvStateMachine } from '@raftkv/kv';
import { assert, decodeConfChange, EntryType, ErrorCode, isRaftKvError, RaftKvError, type ConfState, type HardState, type LogIndex, type NodeId, type Term } from '@raftkv/raft';
import { openLevelLogStorage, type LevelLogStorage, type NodeIdentity } from '@raftkv/storage';

/** Where the node keeps its stores (node.ts opens the same two). */
const LOG_DIR = 'log';
const KV_DIR = 'kv';
/** A restore builds both stores here, inside the target, then moves them into place. */
const RESTORE_STAGING_DIR = '.restore-staging';
/** A recovery builds the new log here, next to the old one, then swaps the two. */
const RECOVER_NEW_LOG_DIR = 'log.recover-new';
const RECOVER_OLD_LOG_PREFIX = 'log.before-recover-';
/** Committed entries applied per batch during a recovery (bounds what one apply holds). */
const RECOVER_APPLY_BATCH_ENTRIES = 1024;
const NO_CONF: ConfState = { voters: [], learners: [] };
const EMPTY = new Uint8Array(0);
/** The suffix restore and recover add to a cluster id; stripped first, so ids do not grow with each use. */
const LINEAGE_SUFFIX = /-(restored|recovered)-[0-9a-f]{12}$/;

function invalidConfig(message: string): RaftKvError {
  return new RaftKvError(ErrorCode.INVALID_CONFIG, message);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Makes a directory's entries (renames, new files) durable. */
async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// ---- restore --------------------------------------------------------------------------------

export interface RestoreOptions {
  /** The backup file (`raftkv backup`). */
  readonly file: string;
  /** The new member's data directory: absent or empty. */
  readonly dataDir: string;
  /** This member's id, one of `members`. */
  readonly id: NodeId;
  /** The voters of the new cluster; every member must be restored with the same list. */
  readonly members: readonly NodeId[];
  /** The new cluster's id; default `restoredClusterId` (the same for every member restored from one file with one member list). */
  readonly clusterId?: string;
}

export interface RestoreReport {
  readonly dataDir: string;
  readonly nodeId: NodeId;
  readonly clusterId: string;
  /** The new configuration's voters, sorted. */
  readonly members: readonly NodeId[];
  readonly index: LogIndex;
  readonly term: Term;
  /** The backup file's SHA-256. */
  readonly sha256: string;
  readonly backup: BackupMetadata;
}

/**
 * The id of the cluster restored from the backup file whose SHA-256 is `sha256`, with these
 * voters: the source's name, `-restored-`, and 12 hex digits of a SHA-256 of the file's hash and
 * the sorted member list. Every member restored from one file with one list gets the same id, and
 * a member given another list gets another id, so the handshake keeps the two groups apart.
 */
export function restoredClusterId(sourceClusterId: string, sha256: string, members: readonly NodeId[]): string {
  const digest = createHash('sha256').update(`${sha256}\n${[...members].sort().join(',')}`).digest('hex');
  return `${sourceClusterId.replace(LINEAGE_SUFFIX, '')}-restored-${digest.slice(0, 12)}`;
}

/**
 * Builds the data directory of one member of a new cluster from a backup file:
 *
 * 1. checks the arguments, that the directory is absent or empty, and the whole file
 *    (`verifyBackupFile`): a damaged file is refused (BACKUP_INVALID) before anything is written;
 * 2. `<dataDir>/kv`: the backup's image, imported through the snapshot import (which checks it
 *    again), whose membership records are replaced: `c/conf` holds the new voters, the old
 *    cluster's member and removal records are dropped (they describe the old cluster's machines
 *    and its history of ids; the new cluster starts its own). Its state hash is then computed
 *    again and must be the backup's;
 * 3. `<dataDir>/log`: a log whose snapshot is at the backup's index and term with the new
 *    configuration, whose hard state commits that index in that term, and whose identity names
 *    the new cluster, this member and a fresh data-directory id.
 *
 * Both stores are built in `<dataDir>/.restore-staging` and moved into place, the log first: a
 * restore interrupted between the two moves leaves a log whose state machine is missing, which a
 * node refuses to start on (STORAGE_CORRUPT, see `reconcile`), never a node of the wrong cluster.
 * A restore that fails removes what it wrote.
 */
export async function restoreDataDir(options: RestoreOptions): Promise<RestoreReport> {
  const members = checkMembers(options.id, options.members);
  await checkEmptyTarget(options.dataDir);
  const info = await verifyBackupFile(options.file);
  const clusterId = options.clusterId ?? restoredClusterId(info.metadata.clusterId, info.sha256, members);
  if (clusterId === '') throw invalidConfig('the cluster id must not be empty');
  if (clusterId === info.metadata.clusterId) {
    throw invalidConfig(`the restored cluster needs an id of its own: ${JSON.stringify(clusterId)} is the id of the cluster the backup was taken from, whose nodes would then be let in`);
  }
  const conf: ConfState = { voters: members, learners: [] };
  const { index, term } = info.metadata;

  const created = !(await exists(options.dataDir));
  await mkdir(options.dataDir, { recursive: true });
  const staging = join(options.dataDir, RESTORE_STAGING_DIR);
  const placed: string[] = [];
  try {
    await mkdir(staging);
    await restoreKv(join(staging, KV_DIR), info, conf);
    await restoreLog(join(staging, LOG_DIR), { index, term }, conf, { clusterId, nodeId: options.id, uid: randomUUID() });
    await syncDir(staging);
    for (const name of [LOG_DIR, KV_DIR]) {
      await rename(join(staging, name), join(options.dataDir, name));
      placed.push(join(options.dataDir, name));
      await syncDir(options.dataDir);
    }
    await rmdir(staging);
    await syncDir(options.dataDir);
  } catch (error) {
    // Leave the directory as it was found: empty, or absent.
    await rm(staging, { recursive: true, force: true });
    for (const path of placed) await rm(path, { recursive: true, force: true });
    if (created) await rm(options.dataDir, { recursive: true, force: true });
    throw error;
  }
  return { dataDir: options.dataDir, nodeId: options.id, clusterId, members, index, term, sha256: info.sha256, backup: info.metadata };
}

/** The voters, sorted (every member then records the very same configuration); `id` must be one. */
function checkMembers(id: NodeId, members: readonly NodeId[]): NodeId[] {
  if (members.length === 0) throw invalidConfig('the new cluster needs at least one member');
  for (const member of members) if (typeof member !== 'string' || member === '') throw invalidConfig(`member ${JSON.stringify(member)} is not a node id`);
  if (new Set(members).size !== members.length) throw invalidConfig(`the members [${members.join(', ')}] name a node twice`);
  if (!members.includes(id)) throw invalidConfig(`node ${id} is not one of the members [${members.join(', ')}]`);
  return [...members].sort();
}

async function checkEmptyTarget(dataDir: string): Promise<void> {
  let names: string[];
  try {
    const st = await stat(dataDir);
    if (!st.isDirectory()) throw invalidConfig(`${dataDir} is not a directory; a restore writes a node's data directory`);
    names = await readdir(dataDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (names.length > 0) {
    const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? `, and ${names.length - 5} more` : '');
    throw invalidConfig(`${dataDir} is not empty (it holds ${shown}): a restore writes only into an empty or absent directory, so it never overwrites a node's data`);
  }
}

async function restoreKv(dir: string, info: BackupInfo, conf: ConfState): Promise<void> {
  const kv = await openKvStateMachine(dir);
  try {
    let staged;
    try {
      staged = await kv.importSnapshot({ index: info.metadata.index, term: info.metadata.term }, readBackupImage(info));
    } catch (error) {
      // The import wraps what its stream threw; a file that changed since it was verified is the backup's fault.
      const cause = (error as { cause?: unknown }).cause;
      throw isRaftKvError(cause, ErrorCode.BACKUP_INVALID) ? cause : error;
    }
    await kv.install(staged);
    assert(kv.appliedIndex === info.metadata.index && kv.appliedTerm === info.metadata.term, 'the restored state machine is at the backup position');
    await kv.resetMembership(conf, { keep: false, add: new Map() });
    const summary = await summarizeImage((await kv.exportSnapshot()).chunks, dir);
    if (summary.stateHash !== info.metadata.stateHash || summary.keyCount !== info.metadata.keyCount) {
      throw new RaftKvError(ErrorCode.STORAGE_CORRUPT, `${dir}: the restored state hashes to ${summary.stateHash} (${summary.keyCount} keys), the backup to ${info.metadata.stateHash} (${info.metadata.keyCount} keys)`);
    }
  } finally {
    await kv.close();
  }
}

/**
 * A log that begins after a snapshot at `position` with configuration `conf`. The hard state
 * commits that index (everything in a backup was committed) in the snapshot's term: a node's
 * term is never below its last entry's, and the new cluster's first election is in the next.
 */
async function restoreLog(dir: string, position: { index: LogIndex; term: Term }, conf: ConfState, identity: NodeIdentity): Promise<void> {
  const storage = await openLevelLogStorage(dir, NO_CONF);
  try {
    const hardState: HardState = { term: position.term, vote: null, commit: position.index };
    await storage.persist({ snapshot: { meta: { ...position, confState: conf }, data: EMPTY }, entries: [], hardState, mustSync: true });
    await storage.setIdentity(identity);
  } finally {
    await storage.close();
  }
}

// ---- recover --------------------------------------------------------------------------------

export interface ForceNewClusterOptions {
  /** The survivor's data directory; its node must be stopped. */
  readonly dataDir: string;
  /** The new cluster's id; default: the old one's name, `-recovered-` and 12 random hex digits. It must differ from the old id. */
  readonly clusterId?: string;
  /** For the name under which the old log is kept (default: now). */
  readonly now?: Date;
}

export interface ForceNewClusterReport {
  readonly dataDir: string;
  readonly nodeId: NodeId;
  readonly previousClusterId: string;
  readonly clusterId: string;
  /** The new log's snapshot: the state machine's applied index and term once recovered. */
  readonly index: LogIndex;
  readonly term: Term;
  /** Committed entries the state machine had not applied yet, applied by the recovery. */
  readonly appliedFromLog: number;
  /** Entries of the old log past its commit index, dropped (the old log keeps them). */
  readonly discardedEntries: number;
  /** The old cluster's other members, recorded as removed: never to be added again under these ids. */
  readonly retired: readonly NodeId[];
  /** Where the old log was kept, for diagnosis. */
  readonly previousLog: string;
  /** True when this run only finished a recovery interrupted after its new log was complete. */
  readonly resumed: boolean;
}

/**
 * Makes the survivor of a cluster that lost a majority for good a one-member cluster, as etcd's
 * `--force-new-cluster` does (etcd server/etcdserver/raft.go, restartAsStandaloneNode: keep the
 * committed entries, discard the uncommitted ones, force a configuration of this node alone):
 *
 * 1. the entries the log knows to be committed (up to its hard state's commit index) that the
 *    state machine has not applied are applied: they are committed, every replica applies them;
 * 2. the state machine's membership records become {this node} as the only voter; every other
 *    member of the old configuration (and any node an uncommitted change in the log named) is
 *    recorded as removed, so it is never added again under its id (a new machine gets a new id);
 * 3. a new log is built beside the old one: a snapshot at the state machine's applied index
 *    with that configuration, the hard state's term and vote, that index committed, and the
 *    identity of a new cluster (same node id and data-directory id). The old log is kept as
 *    `log.before-recover-<time>` with the entries past the commit index, which are dropped.
 *
 * What is lost is said in docs/operations.md, "Losing a majority". A run interrupted by a crash
 * is finished by running it again.
 */
export async function forceNewCluster(options: ForceNewClusterOptions): Promise<ForceNewClusterReport> {
  const { dataDir } = options;
  const logDir = join(dataDir, LOG_DIR);
  const kvDir = join(dataDir, KV_DIR);
  const newLogDir = join(dataDir, RECOVER_NEW_LOG_DIR);
  if (!(await exists(logDir)) && (await exists(newLogDir))) return finishInterrupted(dataDir);
  for (const dir of [logDir, kvDir]) {
    if (!(await exists(dir))) throw invalidConfig(`${dataDir} is not a node's data directory: it has no ${dir}`);
  }
  // A leftover of a run that stopped before its switch: incomplete by definition.
  await rm(newLogDir, { recursive: true, force: true });

  const storage = await openOwned(logDir);
  let identity: NodeIdentity;
  let hardState: HardState;
  let recovered: { index: LogIndex; term: Term; appliedFromLog: number; discardedEntries: number; retired: NodeId[] };
  let clusterId: string;
  try {
    const stored = storage.identity();
    if (stored === null) throw invalidConfig(`${logDir} records no node identity (a store older than identities): this node's id is unknown`);
    identity = stored;
    clusterId = options.clusterId ?? `${identity.clusterId.replace(LINEAGE_SUFFIX, '')}-recovered-${randomBytes(6).toString('hex')}`;
    if (clusterId === '' || clusterId === identity.clusterId) {
      throw invalidConfig(`the recovered cluster needs a new, non-empty cluster id (not ${JSON.stringify(identity.clusterId)}), so that the lost members can never rejoin it`);
    }
    hardState = storage.hardState();
    const kv = await openKvStateMachine(kvDir);
    try {
      recovered = await recoverStateMachine(storage, kv, identity.nodeId);
    } finally {
      await kv.close();
    }
  } finally {
    await storage.close();
  }

  const conf: ConfState = { voters: [identity.nodeId], learners: [] };
  const { index, term } = recovered;
  const fresh = await openLevelLogStorage(newLogDir, NO_CONF);
  try {
    // A term never goes back (paper figure 2), and the vote stands within its term.
    const newHardState: HardState = hardState.term >= term ? { term: hardState.term, vote: hardState.vote, commit: index } : { term, vote: null, commit: index };
    await fresh.persist({ snapshot: { meta: { index, term, confState: conf }, data: EMPTY }, entries: [], hardState: newHardState, mustSync: true });
    await fresh.setIdentity({ clusterId, nodeId: identity.nodeId, uid: identity.uid });
  } finally {
    await fresh.close();
  }
  const previousLog = join(dataDir, `${RECOVER_OLD_LOG_PREFIX}${(options.now ?? new Date()).toISOString().replace(/[:.]/g, '-')}`);
  await rename(logDir, previousLog);
  await syncDir(dataDir);
  await rename(newLogDir, logDir);
  await syncDir(dataDir);
  return {
    dataDir,
    nodeId: identity.nodeId,
    previousClusterId: identity.clusterId,
    clusterId,
    index,
    term,
    appliedFromLog: recovered.appliedFromLog,
    discardedEntries: recovered.discardedEntries,
    retired: recovered.retired,
    previousLog,
    resumed: false,
  };
}

/** Steps 1 and 2 of `forceNewCluster`. */
async function recoverStateMachine(
  storage: LevelLogStorage,
  kv: KvStateMachine,
  self: NodeId,
): Promise<{ index: LogIndex; term: Term; appliedFromLog: number; discardedEntries: number; retired: NodeId[] }> {
  const first = storage.firstIndex();
  const last = storage.lastIndex();
  const commit = Math.max(storage.hardState().commit, first - 1);
  if (kv.appliedIndex < first - 1) {
    throw new RaftKvError(
      ErrorCode.STORAGE_CORRUPT,
      `the state machine has applied up to index ${kv.appliedIndex}, but the log begins after index ${first - 1}: this node cannot be recovered from (was its kv directory removed or replaced?)`,
    );
  }
  let appliedFromLog = 0;
  while (kv.appliedIndex < commit) {
    const from = kv.appliedIndex + 1;
    const batch = storage.entries(from, Math.min(commit, from + RECOVER_APPLY_BATCH_ENTRIES - 1) + 1, Number.MAX_SAFE_INTEGER);
    await kv.apply(batch);
    appliedFromLog += batch.length;
  }
  if (appliedFromLog > 0) await kv.sync();
  const index = kv.appliedIndex;
  const term = kv.appliedTerm;
  if (index === 0) throw invalidConfig(`${storage.dataDir}: this node never applied an entry; there is nothing to recover a cluster from`);

  // Every node the old cluster knew of: the configuration applied, the log's snapshot's, and
  // any node a change still in the log names (a committed one is applied by now; an uncommitted
  // one may have reached the lost majority).
  const others = new Set<NodeId>([...kv.confState.voters, ...kv.confState.learners]);
  const snapshotConf = storage.snapshot().meta.confState;
  for (const id of [...snapshotConf.voters, ...snapshotConf.learners]) others.add(id);
  if (index < last) {
    for (const entry of storage.entries(Math.max(index + 1, first), last + 1, Number.MAX_SAFE_INTEGER)) {
      if (entry.type !== EntryType.ConfChange) continue;
      try {
        const { change } = decodeConfChange(entry.data);
        if (change.type === 'bootstrap') change.voters.forEach((id) => others.add(id));
        else others.add(change.id);
      } catch {
        // A configuration entry that does not decode changes nothing (as in apply).
      }
    }
  }
  others.delete(self);
  const retired = [...others].sort();
  await kv.resetMembership({ voters: [self], learners: [] }, { keep: true, add: new Map(retired.map((id) => [id, index])) });
  return { index, term, appliedFromLog, discardedEntries: Math.max(0, last - index), retired };
}

/** A run that crashed between moving the old log aside and moving the new one in: the new one is complete. */
async function finishInterrupted(dataDir: string): Promise<ForceNewClusterReport> {
  const logDir = join(dataDir, LOG_DIR);
  await rename(join(dataDir, RECOVER_NEW_LOG_DIR), logDir);
  await syncDir(dataDir);
  const previous = (await readdir(dataDir)).filter((name) => name.startsWith(RECOVER_OLD_LOG_PREFIX)).sort();
  const previousLog = previous.length === 0 ? null : join(dataDir, previous[previous.length - 1]!);
  const identityIn = async (dir: string): Promise<{ identity: NodeIdentity | null; index: LogIndex; term: Term }> => {
    const storage = await openOwned(dir);
    try {
      const { index, term } = storage.snapshot().meta;
      return { identity: storage.identity(), index, term };
    } finally {
      await storage.close();
    }
  };
  const now = await identityIn(logDir);
  assert(now.identity !== null, 'a recovered log records its identity before it is moved into place');
  const before = previousLog === null ? null : (await identityIn(previousLog)).identity;
  return {
    dataDir,
    nodeId: now.identity.nodeId,
    previousClusterId: before?.clusterId ?? 'unknown (the old log is gone)',
    clusterId: now.identity.clusterId,
    index: now.index,
    term: now.term,
    appliedFromLog: 0,
    discardedEntries: 0,
    retired: [],
    previousLog: previousLog ?? '',
    resumed: true,
  };
}

/** Opens an existing log store, with a plain message when a running node holds it. */
async function openOwned(logDir: string): Promise<LevelLogStorage> {
  try {
    return await openLevelLogStorage(logDir, NO_CONF);
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') throw invalidConfig(`${logDir} is in use by another process: stop the node first`);
    throw error;
  }
}
