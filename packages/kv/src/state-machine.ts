/**
 * The replicated key-value state machine: applies committed log entries to a LevelDB database,
 * answers reads from the current state, and exports and installs snapshots.
 *
 * Invariants:
 * - The applied position (`m/applied`) is written in the same batch as the effects of the entries
 *   it covers, so after a crash the state is exactly "entries 1..appliedIndex applied", and the
 *   node replays the log from appliedIndex + 1 (entries at or below it are skipped).
 * - Applying is deterministic: it reads nothing but the database and the entries (no clock, no
 *   per-node configuration except the cluster-wide `sessionCountMax`), and bad command bytes give
 *   a result, never an exception, so every replica reaches the same state and answers.
 * - One mutation at a time: `apply`, `install` and `sync` never overlap (the node's Ready loop
 *   runs them in order); overlapping them is a bug and fails an assertion. An export may start at
 *   any time: it waits for the mutation in progress.
 */
import { assert, ErrorCode, isRaftKvError, RaftAssertionError, RaftKvError } from '@raftkv/raft';
import type { ConfState, Entry, LogIndex, Term } from '@raftkv/raft';
import { isWellFormedText, validateCommand, validateKey } from './command.js';
import type { Command } from './command.js';
import { executeApply, planApply } from './apply-plan.js';
import { DirectoryHome, MemoryHome, NODE_DIR_OPS } from './home.js';
import type { DbHome, DirOps, KvDb, RecoveryAction, StagingDb } from './home.js';
import { resolveLimits } from './limits.js';
import type { KvLimits } from './limits.js';
import {
  asBuffer,
  CONF_KEY,
  dataKey,
  decodeConfRecord,
  decodeMemberRecord,
  decodeRemovedRecord,
  EMPTY_CONF,
  MEMBER_PREFIX,
  REMOVED_PREFIX,
  decodeAppliedRecord,
  decodeFormatRecord,
  decodeSessionRecord,
  decodeValueRecord,
  encodeAppliedRecord,
  encodeConfRecord,
  encodeFormatRecord,
  encodeRemovedRecord,
  FORMAT_VERSION,
  META_APPLIED_KEY,
  META_FORMAT_KEY,
  prefixRange,
  removedKey,
  SESSION_PREFIX,
  storageCorrupt,
  userKey,
} from './records.js';
import type { AppliedPosition, MemberInfo, SessionRecord, StoredValue } from './records.js';
import type { ApplyResult } from './result.js';
import { SessionTable } from './sessions.js';
import { exportFrames, importFrames } from './snapshot.js';

export interface KvStateMachineOptions extends Partial<KvLimits> {
  /**
   * Only for `KvStateMachine.open(db)`: makes the empty database a snapshot import writes into
   * (for memory-level, `() => new MemoryLevel({ keyEncoding: 'view', valueEncoding: 'view' })`).
   */
  readonly createStagingDb?: () => KvDb;
}

export interface KvDirOptions extends Partial<KvLimits> {
  /** The file-system steps of a snapshot swap (default: node:fs). Tests inject faults here. */
  readonly dirOps?: DirOps;
}

/** The log position a snapshot covers. */
export interface SnapshotPosition {
  readonly index: LogIndex;
  readonly term: Term;
}

export interface SnapshotExport {
  readonly meta: SnapshotPosition;
  /** The stream (format in snapshot.ts). Read it at most once; it closes its database snapshot when done. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /**
   * Closes the database snapshot now, whether or not the stream was read (idempotent). For a
   * consumer that may drop the stream before reading it: an async generator that never started
   * runs no `finally`, so the stream alone would hold the snapshot until the database closes.
   */
  close(): Promise<void>;
}

/** A verified snapshot written to a fresh place, waiting for `install` or `discard`. */
export interface StagedSnapshot {
  readonly meta: SnapshotPosition;
  readonly recordCount: number;
}

export interface KvValue {
  readonly value: Uint8Array;
  readonly modIndex: LogIndex;
}

export interface KvPair extends KvValue {
  readonly key: string;
}

type MachineState = 'open' | 'closed' | 'failed';

const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;
/**
 * Applied state is written without fsync: losing the latest batches in a crash is safe, because
 * the applied index goes back with them and the node replays those entries from its synced log.
 */
const WRITE_UNSYNCED: typeof VIEW & { readonly sync: boolean } = { ...VIEW, sync: false };
const WRITE_SYNCED: typeof VIEW & { readonly sync: boolean } = { ...VIEW, sync: true };

export class KvStateMachine {
  readonly #home: DbHome;
  readonly #limits: KvLimits;
  #sessions: SessionTable;
  #applied: AppliedPosition;
  /** The cluster configuration at the applied index (what `reconcile` records when it must). */
  #conf: ConfState;
  #state: MachineState = 'open';
  /** The mutation in progress, if any (see the invariants above). */
  #mutation: 'apply' | 'install' | 'sync' | 'membership' | null = null;
  /** Settles when the mutation in progress does (an export waits for it). */
  #mutationDone: Promise<unknown> = Promise.resolve();
  /** Reads wait for an install to finish rather than see the database handle change under them. */
  #installing: Promise<void> | null = null;
  /** Staged snapshots not yet installed or discarded, and the import under way (at most one in all). */
  readonly #staged = new Map<StagedSnapshot, StagingDb>();
  #importing: StagingDb | 'starting' | null = null;

  private constructor(home: DbHome, limits: KvLimits, applied: AppliedPosition, sessions: SessionTable, conf: ConfState) {
    this.#home = home;
    this.#limits = limits;
    this.#applied = applied;
    this.#sessions = sessions;
    this.#conf = conf;
  }

  /** Opens a state machine on a caller-supplied database (memory-level in tests); opens the database if needed. */
  static async open(db: KvDb, options: KvStateMachineOptions = {}): Promise<KvStateMachine> {
    const limits = resolveLimits(options);
    return KvStateMachine.#start(new MemoryHome(db, options.createStagingDb), limits);
  }

  /** Opens (or creates) the state machine in a data directory (layout in home.ts), recovering an interrupted swap. */
  static async openDir(dir: string, options: KvDirOptions = {}): Promise<KvStateMachine> {
    const limits = resolveLimits(options);
    const home = await DirectoryHome.open(dir, options.dirOps ?? NODE_DIR_OPS);
    return KvStateMachine.#start(home, limits);
  }

  static async #start(home: DbHome, limits: KvLimits): Promise<KvStateMachine> {
    const db = home.live;
    assert(db !== null, 'a freshly opened home has a live database');
    try {
      const { applied, sessions, conf } = await loadState(db, home.where);
      return new KvStateMachine(home, limits, applied, new SessionTable(limits.sessionCountMax, sessions), conf);
    } catch (error) {
      await home.close();
      throw error;
    }
  }

  /** The index of the last entry applied (0: none). */
  get appliedIndex(): LogIndex {
    return this.#applied.index;
  }

  /** The term of the entry at `appliedIndex` (0: none). */
  get appliedTerm(): Term {
    return this.#applied.term;
  }

  /** The cluster configuration as of `appliedIndex`. */
  get confState(): ConfState {
    return this.#conf;
  }

  get limits(): KvLimits {
    return this.#limits;
  }

  /** Which recovery path the open took, for a directory (see home.ts); null for `open(db)`. */
  get recovery(): RecoveryAction | null {
    return this.#home instanceof DirectoryHome ? this.#home.recovery : null;
  }

  /** Checks a command against this node's admission limits (see `validateCommand`). */
  validate(command: Command): void {
    validateCommand(command, this.#limits);
  }

  /**
   * Applies committed entries in order, in one batch that also writes the applied position.
   * Entries at or below `appliedIndex` are skipped (a replay after restart); the first entry
   * above it must be `appliedIndex + 1`. Returns one result per entry given, in order.
   */
  async apply(entries: readonly Entry[]): Promise<ApplyResult[]> {
    const db = this.#liveDb();
    assert(this.#mutation === null, `apply while ${String(this.#mutation)} is in progress`);
    this.#mutation = 'apply';
    const applying = this.#applyEntries(db, entries);
    this.#mutationDone = applying.catch(() => undefined);
    try {
      return await applying;
    } catch (error) {
      // The in-memory session table may be ahead of the database now: only a reopen is safe.
      if (!(error instanceof RaftAssertionError)) this.#state = 'failed';
      throw error;
    } finally {
      this.#mutation = null;
    }
  }

  async #applyEntries(db: KvDb, entries: readonly Entry[]): Promise<ApplyResult[]> {
    const plan = planApply(entries, this.#applied);
    if (plan.work.length === 0) return executeApply(plan, this.#applied, new Map(), this.#sessions, this.#conf).results.slice();
    const current = await this.#prefetch(db, plan.keys);
    const outcome = executeApply(plan, this.#applied, current, this.#sessions, this.#conf);
    await db.batch([...outcome.ops], WRITE_UNSYNCED);
    this.#applied = outcome.applied;
    this.#conf = outcome.conf;
    assert(outcome.results.length === entries.length, 'apply: one result per entry');
    return outcome.results.slice();
  }

  /** Reads, in one round trip, the current record of every key the batch's commands touch. */
  async #prefetch(db: KvDb, keys: readonly string[]): Promise<Map<string, StoredValue | null>> {
    const dbKeys = keys.map(dataKey);
    const records = await db.getMany(dbKeys, VIEW);
    const current = new Map<string, StoredValue | null>();
    keys.forEach((key, i) => {
      const record = records[i];
      const dbKey = dbKeys[i];
      assert(dbKey !== undefined, 'prefetch: one database key per key');
      current.set(key, record === undefined ? null : decodeValueRecord(this.#home.where, dbKey, record));
    });
    return current;
  }

  /**
   * Makes everything applied so far durable. Applies are written without fsync (see
   * WRITE_UNSYNCED); the node calls this before the log drops the entries that produced them, so
   * that a power loss can never leave the state machine behind the log's first index.
   */
  async sync(): Promise<void> {
    const db = this.#liveDb();
    assert(this.#mutation === null, `sync while ${String(this.#mutation)} is in progress`);
    this.#mutation = 'sync';
    try {
      // LevelDB has one write-ahead log: a synced write makes every earlier write durable too.
      await db.put(META_APPLIED_KEY, encodeAppliedRecord(this.#applied), WRITE_SYNCED);
    } catch (error) {
      this.#state = 'failed';
      throw error;
    } finally {
      this.#mutation = null;
    }
  }

  /**
   * Replaces the membership records, for `raftkv restore` and `raftkv recover` (node/src/restore.ts),
   * on a state machine no node is running: `c/conf` becomes `conf`; every `c/member/` record is
   * dropped (they hold addresses and identities of machines the new configuration does not have,
   * which the node's address book would otherwise take over); the `c/removed/` records are all
   * dropped (`keep: false`, a new cluster with a membership history of its own) or kept
   * (`keep: true`), and `add` records more ids as removed at the given index (an id already
   * removed keeps its record). One synced batch; the applied position does not move. The caller
   * writes the same configuration into the log, where Raft reads it: the two must agree, as they
   * do after every apply.
   */
  async resetMembership(conf: ConfState, tombstones: { readonly keep: boolean; readonly add: ReadonlyMap<string, LogIndex> }): Promise<void> {
    const db = this.#liveDb();
    assert(this.#mutation === null, `resetMembership while ${String(this.#mutation)} is in progress`);
    this.#mutation = 'membership';
    const writing = this.#writeMembership(db, conf, tombstones);
    this.#mutationDone = writing.catch(() => undefined);
    try {
      await writing;
      this.#conf = { voters: [...conf.voters], learners: [...conf.learners] };
    } catch (error) {
      this.#state = 'failed';
      throw error;
    } finally {
      this.#mutation = null;
    }
  }

  async #writeMembership(db: KvDb, conf: ConfState, tombstones: { readonly keep: boolean; readonly add: ReadonlyMap<string, LogIndex> }): Promise<void> {
    const ops: Array<{ type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }> = [];
    for await (const key of db.keys({ ...prefixRange(MEMBER_PREFIX), keyEncoding: 'view' })) ops.push({ type: 'del', key: asBuffer(key) });
    const kept = new Set<string>();
    for await (const [keyBytes, record] of db.iterator({ ...prefixRange(REMOVED_PREFIX), ...VIEW })) {
      const key = asBuffer(keyBytes);
      if (tombstones.keep) kept.add(decodeRemovedRecord(this.#home.where, key, record).id);
      else ops.push({ type: 'del', key });
    }
    for (const [id, index] of tombstones.add) {
      if (!kept.has(id)) ops.push({ type: 'put', key: removedKey(id), value: encodeRemovedRecord(id, index) });
    }
    ops.push({ type: 'put', key: CONF_KEY, value: encodeConfRecord(conf) });
    await db.batch(ops, WRITE_SYNCED);
  }

  /** The value and modification index of `key`, or null. Throws KEY_INVALID / KEY_TOO_LARGE, STORAGE_CORRUPT. */
  async get(key: string): Promise<KvValue | null> {
    validateKey(key, this.#limits.keyBytesMax);
    const db = await this.#readableDb();
    const dbKey = dataKey(key);
    const record = await this.#read(() => db.get(dbKey, VIEW));
    if (record === undefined) return null;
    const stored = decodeValueRecord(this.#home.where, dbKey, record);
    return { value: stored.value, modIndex: stored.modIndex };
  }

  /**
   * The keys starting with `prefix` ('' for all), in ascending order of their UTF-8 bytes, at
   * most `limit` of them, and never more than `scanCountMax`.
   */
  async scan(prefix: string, limit: number): Promise<KvPair[]> {
    if (typeof prefix !== 'string' || !isWellFormedText(prefix)) {
      throw new RaftKvError(ErrorCode.KEY_INVALID, 'scan prefix is not valid UTF-8 text');
    }
    if (Buffer.byteLength(prefix, 'utf8') > this.#limits.keyBytesMax) {
      throw new RaftKvError(ErrorCode.KEY_TOO_LARGE, `scan prefix is longer than the key limit of ${this.#limits.keyBytesMax} bytes`);
    }
    assert(Number.isSafeInteger(limit) && limit >= 0, `scan limit must be a non-negative integer, got ${limit}`);
    const count = Math.min(limit, this.#limits.scanCountMax);
    if (count === 0) return [];
    const db = await this.#readableDb();
    const iterator = db.iterator({ ...prefixRange(dataKey(prefix)), ...VIEW, limit: count });
    const rows = await this.#read(async () => {
      try {
        // nextv may return fewer entries than asked (classic-level stops at its buffer size): loop.
        const out: Array<[Uint8Array, Uint8Array]> = [];
        while (out.length < count) {
          const batch = await iterator.nextv(count - out.length);
          if (batch.length === 0) break;
          for (const row of batch) out.push(row);
        }
        return out;
      } finally {
        await iterator.close();
      }
    });
    assert(rows.length <= count, 'scan: the iterator honoured its limit');
    return rows.map(([keyBytes, record]) => {
      const dbKey = asBuffer(keyBytes);
      const stored = decodeValueRecord(this.#home.where, dbKey, record);
      return { key: userKey(dbKey), value: stored.value, modIndex: stored.modIndex };
    });
  }

  /** The members added by changes (what their changes said of them), and the ids removed for good. */
  async members(): Promise<{ members: Map<string, MemberInfo>; removed: Set<string> }> {
    const db = await this.#readableDb();
    const members = new Map<string, MemberInfo>();
    const removed = new Set<string>();
    await this.#read(async () => {
      for await (const [keyBytes, record] of db.iterator({ ...prefixRange(MEMBER_PREFIX), ...VIEW })) {
        const m = decodeMemberRecord(this.#home.where, asBuffer(keyBytes), record);
        members.set(m.id, m.info);
      }
      for await (const [keyBytes, record] of db.iterator({ ...prefixRange(REMOVED_PREFIX), ...VIEW })) {
        removed.add(decodeRemovedRecord(this.#home.where, asBuffer(keyBytes), record).id);
      }
    });
    return { members, removed };
  }

  /**
   * Starts a snapshot of the state at `appliedIndex`. If an apply or an install is in progress,
   * waits for it to finish first, so that the image and the position it announces always agree
   * (a snapshot may be asked for at any moment, e.g. by a peer connection). The database snapshot
   * is then taken synchronously, so later applies do not show in the stream; records are read
   * from it lazily, one chunk at a time, as the consumer pulls.
   */
  async exportSnapshot(): Promise<SnapshotExport> {
    this.#liveDb();
    while (this.#mutation !== null) await this.#mutationDone;
    const db = this.#liveDb();
    const snapshot = db.snapshot();
    const meta = { index: this.#applied.index, term: this.#applied.term };
    let closing: Promise<void> | null = null;
    const close = (): Promise<void> => (closing ??= snapshot.close());
    return { meta, chunks: exportFrames(db, snapshot, meta, this.#limits.snapshotChunkBytes, this.#home.where, close), close };
  }

  /**
   * Writes a snapshot stream into a fresh database (a `staging-<index>` directory next to the live
   * one), verifying it as it goes. The live state is not touched. Throws SNAPSHOT_TRANSFER_FAILED
   * (and removes what it wrote) when the stream breaks off, does not verify, or is not for `meta`.
   */
  async importSnapshot(meta: SnapshotPosition, chunks: AsyncIterable<Uint8Array>): Promise<StagedSnapshot> {
    this.#liveDb();
    assert(this.#importing === null && this.#staged.size === 0, 'one snapshot import at a time: install or discard the previous one');
    if (!Number.isSafeInteger(meta.index) || meta.index < 1 || !Number.isSafeInteger(meta.term) || meta.term < 0) {
      throw new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, `snapshot position ${meta.index}/${meta.term} is invalid`);
    }
    const position = { index: meta.index, term: meta.term };
    this.#importing = 'starting';
    let staging: StagingDb | null = null;
    try {
      staging = await this.#home.createStaging(position.index);
      this.#importing = staging;
      const imported = await importFrames(staging.db, position, chunks, staging.where);
      this.#liveDb(); // closed meanwhile: do not leave a staged database behind
      const staged: StagedSnapshot = Object.freeze({ meta: imported.position, recordCount: imported.recordCount });
      this.#staged.set(staged, staging);
      return staged;
    } catch (error) {
      if (staging !== null) await this.#home.discardStaging(staging).catch(() => undefined);
      if (error instanceof RaftAssertionError || isRaftKvError(error, ErrorCode.SNAPSHOT_TRANSFER_FAILED)) throw error;
      throw new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, `snapshot import at ${position.index}/${position.term} failed: ${String(error)}`, { cause: error });
    } finally {
      this.#importing = null;
    }
  }

  /** Drops a staged snapshot without installing it. */
  async discard(staged: StagedSnapshot): Promise<void> {
    const staging = this.#staged.get(staged);
    assert(staging !== undefined, 'discard: unknown staged snapshot (already installed or discarded?)');
    this.#staged.delete(staged);
    await this.#home.discardStaging(staging);
  }

  /**
   * Swaps a staged snapshot in as the live state (directory steps and crash cases in home.ts).
   * If it fails before the commit point, the old state stays live and usable and the error is
   * SNAPSHOT_TRANSFER_FAILED; after it, this instance is unusable (STORAGE_CLOSED) and reopening
   * the directory finishes the swap.
   */
  async install(staged: StagedSnapshot): Promise<void> {
    this.#liveDb();
    assert(this.#mutation === null, `install while ${String(this.#mutation)} is in progress`);
    const staging = this.#staged.get(staged);
    assert(staging !== undefined, 'install: unknown staged snapshot (already installed or discarded?)');
    // Raft installs a snapshot only past its commit index (paper section 7), so never behind what was applied.
    assert(staged.meta.index >= this.#applied.index, `install: snapshot at ${staged.meta.index} is behind the applied index ${this.#applied.index}`);
    this.#staged.delete(staged);
    this.#mutation = 'install';
    const done = this.#swapIn(staged, staging);
    this.#installing = done.catch(() => undefined);
    this.#mutationDone = this.#installing;
    try {
      await done;
    } finally {
      this.#mutation = null;
      this.#installing = null;
    }
  }

  async #swapIn(staged: StagedSnapshot, staging: StagingDb): Promise<void> {
    try {
      await this.#home.swap(staging);
    } catch (error) {
      const kept = this.#home.live !== null;
      if (kept) await this.#home.discardStaging(staging).catch(() => undefined);
      else this.#state = 'failed';
      const outcome = kept ? 'the old state is kept' : 'reopen the directory to finish the swap';
      throw new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, `installing the snapshot at ${staged.meta.index} failed (${outcome}): ${String(error)}`, { cause: error });
    }
    const db = this.#home.live;
    assert(db !== null, 'a completed swap leaves a live database');
    try {
      const { applied, sessions, conf } = await loadState(db, this.#home.where);
      assert(applied.index === staged.meta.index && applied.term === staged.meta.term, 'the installed state is at the staged position');
      this.#applied = applied;
      this.#conf = conf;
      this.#sessions = new SessionTable(this.#limits.sessionCountMax, sessions);
    } catch (error) {
      this.#state = 'failed';
      throw error;
    }
  }

  /** Closes the database and drops any staged snapshot. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#installing !== null) await this.#installing;
    for (const [staged, staging] of this.#staged) {
      this.#staged.delete(staged);
      await this.#home.discardStaging(staging);
    }
    // An import under way fails on its next write and removes its own staging.
    if (this.#importing !== null && this.#importing !== 'starting') await this.#importing.db.close();
    await this.#home.close();
  }

  #liveDb(): KvDb {
    if (this.#state !== 'open') {
      throw new RaftKvError(ErrorCode.STORAGE_CLOSED, `kv state machine at ${this.#home.where} is ${this.#state === 'failed' ? 'unusable after a failure: reopen it' : 'closed'}`);
    }
    const db = this.#home.live;
    assert(db !== null, 'an open state machine has a live database');
    return db;
  }

  async #readableDb(): Promise<KvDb> {
    if (this.#installing !== null) await this.#installing;
    return this.#liveDb();
  }

  /** Runs a database read; if the machine was closed meanwhile, the failure is STORAGE_CLOSED. */
  async #read<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (this.#state !== 'open') throw new RaftKvError(ErrorCode.STORAGE_CLOSED, `kv state machine at ${this.#home.where} closed during a read`, { cause: error });
      throw error;
    }
  }
}

/** Opens (or creates) a state machine in a data directory; see `KvStateMachine.openDir`. */
export function openKvStateMachine(dir: string, options: KvDirOptions = {}): Promise<KvStateMachine> {
  return KvStateMachine.openDir(dir, options);
}

/** Reads (or, for an empty database, initialises) the format, the applied position and the sessions. */
async function loadState(db: KvDb, where: string): Promise<{ applied: AppliedPosition; sessions: SessionRecord[]; conf: ConfState }> {
  await db.open();
  const format = await db.get(META_FORMAT_KEY, VIEW);
  if (format === undefined) {
    const anyKeys = await db.keys({ keyEncoding: 'view', limit: 1 }).all();
    if (anyKeys.length > 0) throw storageCorrupt(where, 'the database holds records but no format record: it is not a raftkv state machine');
    const applied = { index: 0, term: 0 };
    await db.batch(
      [
        { type: 'put', key: META_FORMAT_KEY, value: encodeFormatRecord() },
        { type: 'put', key: META_APPLIED_KEY, value: encodeAppliedRecord(applied) },
      ],
      WRITE_SYNCED,
    );
    return { applied, sessions: [], conf: EMPTY_CONF };
  }
  const version = decodeFormatRecord(where, format);
  if (version !== FORMAT_VERSION) throw storageCorrupt(where, `format version ${version} is not supported (this build reads ${FORMAT_VERSION})`);
  const appliedRecord = await db.get(META_APPLIED_KEY, VIEW);
  if (appliedRecord === undefined) throw storageCorrupt(where, 'the applied-index record is missing');
  const applied = decodeAppliedRecord(where, appliedRecord);
  const sessions: SessionRecord[] = [];
  for await (const [keyBytes, record] of db.iterator({ ...prefixRange(SESSION_PREFIX), ...VIEW })) {
    sessions.push(decodeSessionRecord(where, asBuffer(keyBytes), record));
  }
  const confRecord = await db.get(CONF_KEY, VIEW);
  const conf = confRecord === undefined ? EMPTY_CONF : decodeConfRecord(where, confRecord);
  return { applied, sessions, conf };
}
