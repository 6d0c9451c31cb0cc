/**
 * Where the state machine's database lives, and how a snapshot import gets a fresh place and is
 * swapped in. Two homes: a directory of LevelDB databases (production), and a caller-supplied
 * database plus a factory for fresh ones (memory-level in tests).
 *
 * Layout of a data directory (`openKvStateMachine(dir)`):
 *
 *   <dir>/current/           the live LevelDB (records as in records.ts)
 *   <dir>/staging-<index>/   a snapshot being imported; incomplete by definition (deleted on open)
 *   <dir>/next/              a complete, verified snapshot committed to replace current/
 *   <dir>/old/               the previous current/ while a swap is under way (deleted on open)
 *
 * The swap (`DirectoryHome.swap`), with the directory fsynced after each rename:
 *
 *   1. close staging-<index> (its last write, the applied index, was synced)
 *   2. rename staging-<index> -> next       the commit point: from here on, recovery rolls forward
 *   3. close current
 *   4. rename current -> old
 *   5. rename next -> current
 *   6. delete old
 *   7. open current
 *
 * A crash at each point, and what the next open (`recoverDataDir`) finds and does:
 *
 *   - before 2: current/ (+ maybe staging-*)      -> delete staging-*; the old state, whole
 *   - after 2, before 4: current/ + next/         -> finish the swap: current -> old, next -> current, delete old
 *   - after 4, before 5: old/ + next/             -> next -> current, delete old
 *   - after 5, before or during 6: current/ + old/ -> delete old (the new state, whole)
 *   - old/ alone cannot happen (5 needs next/, which only 2 creates); if found, old -> current
 *
 * Every rename replaces nothing (its target is absent), so each is atomic on POSIX file systems.
 * One process at a time may own a data directory: recovery runs before LevelDB takes its lock on
 * current/, so the caller (the node) must hold its own lock on the node's directory.
 */
import { mkdir, open as openFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbstractLevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import { assert } from '@raftkv/raft';
import type { LogIndex } from '@raftkv/raft';
import { storageCorrupt } from './records.js';

/** The database type the state machine works on: bytes in, bytes out (encodings are spelled out per call). */
export type KvDb = AbstractLevel<string | Buffer | Uint8Array, Uint8Array, Uint8Array>;

export interface StagingDb {
  readonly db: KvDb;
  /** For messages: the directory, or "memory". */
  readonly where: string;
  readonly index: LogIndex;
}

export interface DbHome {
  /** For messages: the directory of the live database, or "memory". */
  readonly where: string;
  /** The live database, open; null after a swap failed past its commit point (reopen to recover). */
  readonly live: KvDb | null;
  createStaging(index: LogIndex): Promise<StagingDb>;
  discardStaging(staging: StagingDb): Promise<void>;
  /**
   * Makes `staging` the live database. If it throws before its commit point, `live` is the old
   * database, still open and unchanged; after it, `live` is null and the next open recovers.
   */
  swap(staging: StagingDb): Promise<void>;
  close(): Promise<void>;
}

// ---- a caller-supplied database (memory-level in tests) -----------------------------------

export class MemoryHome implements DbHome {
  readonly where = 'memory';
  #live: KvDb | null;
  readonly #createDb: (() => KvDb) | undefined;

  constructor(db: KvDb, createDb: (() => KvDb) | undefined) {
    this.#live = db;
    this.#createDb = createDb;
  }

  get live(): KvDb | null {
    return this.#live;
  }

  async createStaging(index: LogIndex): Promise<StagingDb> {
    assert(this.#createDb !== undefined, 'importing a snapshot into KvStateMachine.open(db) needs options.createStagingDb');
    const db = this.#createDb();
    await db.open();
    return { db, where: 'memory (staging)', index };
  }

  async discardStaging(staging: StagingDb): Promise<void> {
    await staging.db.close();
  }

  async swap(staging: StagingDb): Promise<void> {
    const old = this.#live;
    assert(old !== null, 'swap: no live database');
    assert(staging.db.status === 'open', 'swap: the staged database is open');
    this.#live = staging.db;
    await old.close();
  }

  async close(): Promise<void> {
    await this.#live?.close();
  }
}

// ---- a data directory of ClassicLevel databases --------------------------------------------

/** The file-system steps of a swap and of recovery. The real ones are `NODE_DIR_OPS`; tests inject faults. */
export interface DirOps {
  rename(from: string, to: string): Promise<void>;
  removeDir(path: string): Promise<void>;
  /** Makes the directory's entries (renames, deletions) durable. */
  syncDir(path: string): Promise<void>;
}

export const NODE_DIR_OPS: DirOps = {
  rename: (from, to) => rename(from, to),
  removeDir: (path) => rm(path, { recursive: true, force: true }),
  syncDir: async (path) => {
    const handle = await openFile(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

export const DIR_CURRENT = 'current';
export const DIR_NEXT = 'next';
export const DIR_OLD = 'old';
export const DIR_STAGING_PREFIX = 'staging-';

/** Which recovery path an open took (see the table at the top of this file). */
export type RecoveryAction = 'fresh' | 'clean' | 'finished-swap' | 'rolled-forward' | 'rolled-back';

export function openClassicLevel(location: string): ClassicLevel<Uint8Array, Uint8Array> {
  return new ClassicLevel<Uint8Array, Uint8Array>(location, {
    keyEncoding: 'view',
    valueEncoding: 'view',
    createIfMissing: true,
    errorIfExists: false,
    compression: true,
  });
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

/** Brings a data directory back to "current/ only" after a crash at any point of a swap. */
export async function recoverDataDir(dir: string, ops: DirOps = NODE_DIR_OPS): Promise<RecoveryAction> {
  await mkdir(dir, { recursive: true });
  const current = join(dir, DIR_CURRENT);
  const next = join(dir, DIR_NEXT);
  const old = join(dir, DIR_OLD);
  const [hasCurrent, hasNext, hasOld] = await Promise.all([exists(current), exists(next), exists(old)]);
  let action: RecoveryAction = hasCurrent ? 'clean' : 'fresh';
  if (hasNext) {
    // Crash after the commit point: the staged state is complete, finish the swap.
    if (hasCurrent) {
      if (hasOld) throw storageCorrupt(dir, 'current/, next/ and old/ all exist, which no crash point of a swap leaves');
      await ops.rename(current, old);
      await ops.syncDir(dir);
    }
    await ops.rename(next, current);
    await ops.syncDir(dir);
    action = 'rolled-forward';
  } else if (hasOld && !hasCurrent) {
    await ops.rename(old, current);
    await ops.syncDir(dir);
    action = 'rolled-back';
  } else if (hasOld) {
    action = 'finished-swap';
  }
  for (const name of await readdir(dir)) {
    if (name === DIR_OLD || name.startsWith(DIR_STAGING_PREFIX)) await ops.removeDir(join(dir, name));
  }
  await ops.syncDir(dir);
  return action;
}

export class DirectoryHome implements DbHome {
  readonly #dir: string;
  readonly #ops: DirOps;
  #live: ClassicLevel<Uint8Array, Uint8Array> | null;
  readonly recovery: RecoveryAction;

  private constructor(dir: string, ops: DirOps, live: ClassicLevel<Uint8Array, Uint8Array>, recovery: RecoveryAction) {
    this.#dir = dir;
    this.#ops = ops;
    this.#live = live;
    this.recovery = recovery;
  }

  static async open(dir: string, ops: DirOps = NODE_DIR_OPS): Promise<DirectoryHome> {
    const recovery = await recoverDataDir(dir, ops);
    const live = openClassicLevel(join(dir, DIR_CURRENT));
    await live.open();
    return new DirectoryHome(dir, ops, live, recovery);
  }

  get where(): string {
    return join(this.#dir, DIR_CURRENT);
  }

  get live(): KvDb | null {
    return this.#live;
  }

  async createStaging(index: LogIndex): Promise<StagingDb> {
    const where = join(this.#dir, `${DIR_STAGING_PREFIX}${index}`);
    // A leftover from an import that failed or was abandoned: it is never complete.
    await this.#ops.removeDir(where);
    const db = openClassicLevel(where);
    await db.open();
    return { db, where, index };
  }

  async discardStaging(staging: StagingDb): Promise<void> {
    await staging.db.close();
    await this.#ops.removeDir(staging.where);
  }

  async swap(staging: StagingDb): Promise<void> {
    const live = this.#live;
    assert(live !== null, 'swap: no live database');
    const current = join(this.#dir, DIR_CURRENT);
    const next = join(this.#dir, DIR_NEXT);
    const old = join(this.#dir, DIR_OLD);
    await staging.db.close();
    await this.#ops.rename(staging.where, next);
    // Past the commit point: whatever fails now, the next open rolls forward.
    this.#live = null;
    await live.close();
    await this.#ops.syncDir(this.#dir);
    await this.#ops.rename(current, old);
    await this.#ops.syncDir(this.#dir);
    await this.#ops.rename(next, current);
    await this.#ops.syncDir(this.#dir);
    await this.#ops.removeDir(old);
    const reopened = openClassicLevel(current);
    await reopened.open();
    this.#live = reopened;
  }

  async close(): Promise<void> {
    await this.#live?.close();
  }
}
