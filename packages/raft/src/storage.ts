import { assert } from './assert.js';
import { ErrorCode, RaftKvError } from './errors.js';
import type { ConfState, Entry, HardState, LogIndex, Snapshot, SnapshotMeta, Term } from './types.js';

/**
 * The core's read-only view of stable storage: what `Ready` asked the caller to persist, and
 * nothing else. The caller owns writes (see `Ready` for the contract); the core only reads.
 * Every method is synchronous: a durable implementation keeps the log tail it serves in memory
 * and writes through to disk.
 *
 * Invariant: entries [firstIndex(), lastIndex()] are present and contiguous, and
 * `term(firstIndex() - 1)` is the term of the latest snapshot (0 when there is none).
 */
export interface LogStorage {
  /** Persisted hard state and the configuration in force at the last stored entry. */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries [lo, hi), cut short so that their total size stays within `bytesMax` (but always
   * at least one entry). Throws LOG_COMPACTED if lo < firstIndex(), LOG_UNAVAILABLE if
   * hi > lastIndex() + 1.
   */
  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[];
  /** Term of entry i, for i in [firstIndex() - 1, lastIndex()]; throws LOG_COMPACTED / LOG_UNAVAILABLE outside it. */
  term(i: LogIndex): Term;
  firstIndex(): LogIndex;
  lastIndex(): LogIndex;
  /** The most recent snapshot. */
  snapshot(): Snapshot;
}

/** Per-entry overhead counted towards byte limits, on top of the command bytes. */
export const ENTRY_OVERHEAD_BYTES = 24;

export function entryBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** Keeps a prefix of `entries` whose total size is within `bytesMax`, and never fewer than one entry. */
export function limitBytes(entries: Entry[], bytesMax: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entryBytes(entries[0]!);
  let count = 1;
  while (count < entries.length) {
    size += entryBytes(entries[count]!);
    if (size > bytesMax) break;
    count++;
  }
  return count === entries.length ? entries : entries.slice(0, count);
}

const EMPTY_DATA = new Uint8Array(0);

/**
 * Log storage held in memory: the stable storage of the simulator and of tests, and the model a
 * durable store must behave like (the same contract tests run against both).
 *
 * Layout: `#entries[0]` is a sentinel whose index and term are those of the latest snapshot;
 * entry i lives at position i - `#entries[0].index`.
 */
export class MemoryStorage implements LogStorage {
  #hardState: HardState = { term: 0, vote: null, commit: 0 };
  #snapshot: Snapshot;
  #entries: Entry[];

  /** A fresh, empty log whose initial configuration is `confState` (cluster bootstrap). */
  constructor(confState: ConfState) {
    this.#snapshot = { meta: { index: 0, term: 0, confState }, data: EMPTY_DATA };
    this.#entries = [sentinel(0, 0)];
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.#hardState, confState: this.#snapshot.meta.confState };
  }

  hardState(): HardState {
    return this.#hardState;
  }

  setHardState(hardState: HardState): void {
    assert(hardState.term >= this.#hardState.term, `hard state term went back: ${this.#hardState.term} -> ${hardState.term}`);
    this.#hardState = hardState;
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    const offset = this.#offset();
    if (lo <= offset) throw new RaftKvError(ErrorCode.LOG_COMPACTED, `entry ${lo} is compacted (first index ${offset + 1})`);
    if (hi > this.lastIndex() + 1) {
      throw new RaftKvError(ErrorCode.LOG_UNAVAILABLE, `entries up to ${hi - 1} requested, last index is ${this.lastIndex()}`);
    }
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    if (lo === hi) return [];
    return limitBytes(this.#entries.slice(lo - offset, hi - offset), bytesMax);
  }

  term(i: LogIndex): Term {
    const offset = this.#offset();
    if (i < offset) throw new RaftKvError(ErrorCode.LOG_COMPACTED, `term of ${i} is compacted (snapshot index ${offset})`);
    if (i - offset >= this.#entries.length) {
      throw new RaftKvError(ErrorCode.LOG_UNAVAILABLE, `term of ${i} requested, last index is ${this.lastIndex()}`);
    }
    return this.#entries[i - offset]!.term;
  }

  firstIndex(): LogIndex {
    return this.#offset() + 1;
  }

  lastIndex(): LogIndex {
    return this.#offset() + this.#entries.length - 1;
  }

  snapshot(): Snapshot {
    return this.#snapshot;
  }

  /**
   * Appends entries, first dropping every stored entry at or after `entries[0].index` (the
   * core only sends a suffix that conflicts or extends; Raft truncates only on conflict, and
   * the core has already checked that). Entries before the first index are ignored.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1]!.index;
    if (last < first) return;
    const toAdd = entries[0]!.index < first ? entries.slice(first - entries[0]!.index) : entries;
    const start = toAdd[0]!.index;
    assert(start <= this.lastIndex() + 1, `append leaves a gap: last index ${this.lastIndex()}, appending from ${start}`);
    for (let k = 1; k < toAdd.length; k++) {
      assert(toAdd[k]!.index === start + k, `append: entries are not contiguous at ${toAdd[k]!.index}`);
    }
    this.#entries.length = start - this.#offset();
    for (const e of toAdd) this.#entries.push(e);
  }

  /**
   * Replaces the log with a snapshot received from a leader: entries after the snapshot that
   * agree with it are kept (paper section 7: "retain log entries following it").
   */
  applySnapshot(snapshot: Snapshot): void {
    const { index, term } = snapshot.meta;
    if (index <= this.#snapshot.meta.index) {
      throw new RaftKvError(ErrorCode.SNAPSHOT_OUT_OF_DATE, `snapshot ${index} is not newer than ${this.#snapshot.meta.index}`);
    }
    const keep = index <= this.lastIndex() && this.term(index) === term;
    const rest = keep ? this.#entries.slice(index - this.#offset() + 1) : [];
    this.#snapshot = snapshot;
    this.#entries = [sentinel(index, term), ...rest];
  }

  /**
   * Records a snapshot the state machine took at `meta.index` (which must be stored) and drops
   * the entries it covers.
   */
  compact(meta: SnapshotMeta, data: Uint8Array): void {
    const offset = this.#offset();
    if (meta.index <= offset) return;
    assert(meta.index <= this.lastIndex(), `compact ${meta.index} is past the last index ${this.lastIndex()}`);
    assert(this.term(meta.index) === meta.term, `compact: term of ${meta.index} is ${this.term(meta.index)}, snapshot says ${meta.term}`);
    this.#snapshot = { meta, data };
    this.#entries = [sentinel(meta.index, meta.term), ...this.#entries.slice(meta.index - offset + 1)];
  }

  #offset(): LogIndex {
    return this.#entries[0]!.index;
  }
}

function sentinel(index: LogIndex, term: Term): Entry {
  return { index, term, type: 'normal', data: EMPTY_DATA };
}
