import {
  assert,
  ErrorCode,
  MemoryStorage,
  RaftKvError,
  type ConfState,
  type Entry,
  type HardState,
  type LogIndex,
  type LogStorage,
  type Ready,
  type Snapshot,
  type SnapshotMeta,
  type Term,
} from '@raftkv/raft';
import { writeBatch, type LogDatabase } from './database.js';
import { encodeIdentity, encodePeerUid, KEY, peerKey, type NodeIdentity } from './format.js';
import { loadStore, type StoredState } from './load.js';
import { planBootstrap, planCompact, planWrite, type Plan } from './plan.js';

export interface LevelLogStorageOptions {
  /** Where the database lives; named in every error about its data. */
  readonly dataDir: string;
  /** The initial configuration, used only when the store is empty (a new node). */
  readonly bootstrap: ConfState;
}

/**
 * The durable Raft log store: entries, hard state and snapshot metadata on LevelDB (see
 * format.ts for the layout).
 *
 * The core reads synchronously, so the store keeps an in-memory mirror of everything it holds
 * (a MemoryStorage, the model every LogStorage must behave like), loaded and verified at open.
 * Memory stays bounded because the node compacts the log regularly. Each write is one atomic,
 * synced LevelDB batch; the mirror changes only after that batch is durable, so a write that
 * fails leaves the store as it was. One write at a time: the caller awaits each (the Ready loop
 * does); overlapping writes are a bug and fail an assertion.
 *
 * **Snapshot data is not stored here.** The KV state machine holds the state and produces the
 * snapshot image itself; this store keeps the snapshot's metadata (index, term, configuration),
 * and `snapshot()` returns it with empty `data`. `persist` never stores a Ready's snapshot data
 * (step 4 of the Ready contract installs it into the state machine). Only `compact` and
 * `applySnapshot`, given non-empty bytes (tests, and the LogStorage contract that round-trips
 * them), keep them, up to SNAPSHOT_DATA_BYTES_MAX; production passes empty data and stores
 * nothing.
 */
export class LevelLogStorage implements LogStorage {
  readonly #db: LogDatabase;
  readonly #dataDir: string;
  readonly #mirror: MemoryStorage;
  #identity: NodeIdentity | null;
  readonly #peers: Map<string, string>;
  /** The write in progress, if any; close() waits for it. */
  #writing: Promise<void> | null = null;
  #closed = false;

  private constructor(db: LogDatabase, dataDir: string, stored: StoredState) {
    this.#db = db;
    this.#dataDir = dataDir;
    this.#mirror = buildMirror(stored);
    this.#identity = stored.identity;
    this.#peers = new Map(stored.peers);
  }

  /**
   * Opens the store in `db` (opening the database if needed), verifying every record, or
   * initialises an empty one at `options.bootstrap`. Throws STORAGE_CORRUPT on bad data. The
   * store owns `db` from here: `close()` closes it, and so does a failed open.
   */
  static async open(db: LogDatabase, options: LevelLogStorageOptions): Promise<LevelLogStorage> {
    try {
      await db.open();
      let stored = await loadStore(db, options.dataDir);
      if (stored === null) {
        await writeBatch(db, planBootstrap(options.bootstrap));
        stored = emptyStore(options.bootstrap);
      }
      return new LevelLogStorage(db, options.dataDir, stored);
    } catch (error) {
      // Release the database (and its directory lock); the open's own error is the one to report.
      await db.close().catch(() => undefined);
      throw error;
    }
  }

  get dataDir(): string {
    return this.#dataDir;
  }

  // --- LogStorage: served from the mirror. ---

  initialState(): { hardState: HardState; confState: ConfState } {
    return this.#open().initialState();
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    return this.#open().entries(lo, hi, bytesMax);
  }

  term(i: LogIndex): Term {
    return this.#open().term(i);
  }

  firstIndex(): LogIndex {
    return this.#open().firstIndex();
  }

  lastIndex(): LogIndex {
    return this.#open().lastIndex();
  }

  snapshot(): Snapshot {
    return this.#open().snapshot();
  }

  hardState(): HardState {
    return this.#open().hardState();
  }

  // --- Identity: whose log this is, and the peers it has seen. ---

  /** Who this store belongs to; null until `setIdentity` (and for stores written before identities were kept). */
  identity(): NodeIdentity | null {
    this.#open();
    return this.#identity;
  }

  /** Records who this store belongs to, durably. Once only: a different identity is refused. */
  async setIdentity(identity: NodeIdentity): Promise<void> {
    this.#open();
    const current = this.#identity;
    if (current !== null) {
      if (current.clusterId === identity.clusterId && current.nodeId === identity.nodeId && current.uid === identity.uid) return;
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `${this.#dataDir} belongs to node ${current.nodeId} of cluster ${current.clusterId}, not to ${identity.nodeId} of ${identity.clusterId}`);
    }
    await writeBatch(this.#db, [{ type: 'put', key: KEY.identity, value: encodeIdentity(identity) }]);
    this.#identity = identity;
  }

  /** The data-directory id first seen from each peer (see `rememberPeer`). */
  peerIdentities(): ReadonlyMap<string, string> {
    this.#open();
    return this.#peers;
  }

  /**
   * Records, durably, the data-directory id a peer presented the first time it was seen. A peer
   * that later presents another one lost its data directory (it forgot its votes and its log) and
   * must not take part again under that id. Independent of the log's writes (it changes nothing
   * the core reads), so it may run while one is in progress.
   */
  async rememberPeer(peer: string, uid: string): Promise<'ok' | 'mismatch'> {
    this.#open();
    const known = this.#peers.get(peer);
    if (known !== undefined) return known === uid ? 'ok' : 'mismatch';
    await writeBatch(this.#db, [{ type: 'put', key: peerKey(peer), value: encodePeerUid(uid) }]);
    // Two first handshakes may race: the first recorded wins, the other is a mismatch.
    const raced = this.#peers.get(peer);
    if (raced !== undefined) return raced === uid ? 'ok' : 'mismatch';
    this.#peers.set(peer, uid);
    return 'ok';
  }

  // --- Writes: one synced batch each. ---

  /**
   * Step 2 of the Ready contract, in one atomic synced batch: the snapshot's metadata (dropping
   * the entries it covers; later entries are kept only if the log holds the snapshot's last
   * entry), then the entries (truncating stored entries from `entries[0].index` on), then the
   * hard state. Throws SNAPSHOT_OUT_OF_DATE for a snapshot not newer than the stored one.
   */
  async persist(ready: Pick<Ready, 'hardState' | 'entries' | 'snapshot'> & { readonly mustSync?: boolean }): Promise<void> {
    // A Ready whose only change is the commit index need not reach the disk before the node
    // goes on (Ready.mustSync is false): it is written unsynced, and a crash may lose it.
    // Entries, a snapshot, or no word from the caller: synced.
    const sync = ready.mustSync !== false || ready.entries.length > 0 || ready.snapshot !== null;
    await this.#write(() => planWrite(this.#open(), { snapshot: ready.snapshot, keepSnapshotData: false, entries: ready.entries, hardState: ready.hardState }), sync);
  }

  /** Drops every stored entry at or after `entries[0].index`, then appends; entries before the first index are ignored. */
  async append(entries: readonly Entry[]): Promise<void> {
    await this.#write(() => planWrite(this.#open(), { snapshot: null, keepSnapshotData: false, entries, hardState: null }));
  }

  async setHardState(hardState: HardState): Promise<void> {
    await this.#write(() => planWrite(this.#open(), { snapshot: null, keepSnapshotData: false, entries: [], hardState }));
  }

  /** Installs a snapshot from a leader (see `persist`); keeps small data (SNAPSHOT_DATA_BYTES_MAX). */
  async applySnapshot(snapshot: Snapshot): Promise<void> {
    await this.#write(() => planWrite(this.#open(), { snapshot, keepSnapshotData: true, entries: [], hardState: null }));
  }

  /**
   * Records a snapshot the state machine took at `meta.index` (stored) and deletes the entries
   * it covers; a no-op at or below the current snapshot. Production passes empty `data`.
   */
  async compact(meta: SnapshotMeta, data: Uint8Array): Promise<void> {
    await this.#write(() => planCompact(this.#open(), meta, data));
  }

  /** Closes the database once the write in progress (if any) settles. Later calls throw STORAGE_CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writing?.catch(() => undefined);
    await this.#db.close();
  }

  /** Plans (checking everything), writes one batch (synced unless told), then replays the plan on the mirror. */
  async #write(plan: () => Plan | null, sync = true): Promise<void> {
    this.#open();
    assert(this.#writing === null, `${this.#dataDir}: a write started while another is in progress`);
    const p = plan();
    if (p === null || p.ops.length === 0) return;
    const writing = writeBatch(this.#db, p.ops, sync);
    this.#writing = writing;
    try {
      await writing;
    } finally {
      this.#writing = null;
    }
    // LevelDB itself refuses every later write after a failed sync, so a failure here cannot be
    // followed by a write planned against a disk state we do not know.
    for (const step of p.steps) step(this.#mirror);
    assert(this.#mirror.firstIndex() === p.firstIndex, `first index ${this.#mirror.firstIndex()} after a write planned for ${p.firstIndex}`);
    assert(this.#mirror.lastIndex() === p.lastIndex, `last index ${this.#mirror.lastIndex()} after a write planned for ${p.lastIndex}`);
  }

  #open(): MemoryStorage {
    if (this.#closed) throw new RaftKvError(ErrorCode.STORAGE_CLOSED, `the log store in ${this.#dataDir} is closed`);
    return this.#mirror;
  }
}

/** What planBootstrap writes, as loadStore would read it back. */
function emptyStore(confState: ConfState): StoredState {
  return { hardState: { term: 0, vote: null, commit: 0 }, snapshot: { meta: { index: 0, term: 0, confState }, data: new Uint8Array(0) }, entries: [], identity: null, peers: new Map() };
}

/** The mirror of a verified store, built through the model's own writers (which check it again). */
function buildMirror(stored: StoredState): MemoryStorage {
  const { snapshot, entries, hardState } = stored;
  const mirror = new MemoryStorage(snapshot.meta.confState);
  if (snapshot.meta.index > 0) mirror.applySnapshot(snapshot);
  mirror.append(entries);
  mirror.setHardState(hardState);
  const last = entries[entries.length - 1]?.index ?? snapshot.meta.index;
  assert(mirror.firstIndex() === snapshot.meta.index + 1 && mirror.lastIndex() === last, `mirror [${mirror.firstIndex()}, ${mirror.lastIndex()}] of a store holding (${snapshot.meta.index}, ${last}]`);
  return mirror;
}
