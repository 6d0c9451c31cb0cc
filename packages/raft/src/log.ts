import { assert } from './assert.js';
import { ErrorCode, isRaftKvError } from './errors.js';
import { UnstableLog } from './log-unstable.js';
import { limitBytes, type LogStorage } from './storage.js';
import type { Entry, LogIndex, Snapshot, Term } from './types.js';

/**
 * The replicated log as one node sees it: stable storage followed by the unstable tail.
 *
 * Invariants: applied <= committed <= lastIndex(); firstIndex() - 1 <= applied (entries are only
 * compacted once applied).
 */
export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: UnstableLog;
  /** Highest index known to be committed (paper figure 2, commitIndex). */
  committed: LogIndex;
  /** Highest index the caller has applied to its state machine (paper figure 2, lastApplied). */
  applied: LogIndex;
  /** Told of every append, after it happened: entries from `entries[0].index` on replaced what was there. */
  onAppend: ((entries: readonly Entry[]) => void) | null = null;

  constructor(storage: LogStorage, applied: LogIndex) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    // A restarted node starts from its snapshot: everything before the first index is applied.
    this.committed = first - 1;
    this.applied = first - 1;
    const { hardState } = storage.initialState();
    if (hardState.commit > this.committed) {
      assert(hardState.commit <= last, `persisted commit ${hardState.commit} is past the last stored index ${last}`);
      this.committed = hardState.commit;
    }
    if (applied > 0) this.appliedTo(Math.max(applied, this.applied));
  }

  firstIndex(): LogIndex {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** The last index that is durable (not in the unstable tail). */
  stableLastIndex(): LogIndex {
    if (this.unstable.snapshot !== null) return this.unstable.snapshot.meta.index - 1;
    return this.unstable.entries.length > 0 ? this.unstable.offset - 1 : this.storage.lastIndex();
  }

  lastTerm(): Term {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, `term of the last index ${this.lastIndex()} is unknown`);
    return t;
  }

  /** Term of entry i, or undefined when i is compacted or past the end of the log. */
  term(i: LogIndex): Term | undefined {
    const first = this.firstIndex();
    if (i < first - 1 || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (error) {
      if (isRaftKvError(error, ErrorCode.LOG_COMPACTED) || isRaftKvError(error, ErrorCode.LOG_UNAVAILABLE)) return undefined;
      throw error;
    }
  }

  matchTerm(i: LogIndex, term: Term): boolean {
    return this.term(i) === term;
  }

  /**
   * Raft's "last log is at least as up to date" test (paper section 5.4.1): compare the term of
   * the last entries first, then the length.
   */
  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries (paper section 5.3): if our log holds (index, logTerm),
   * append the entries that are new, truncating only from the first conflict, advance the
   * commit index, and return the index of the last entry the leader sent. Returns undefined when
   * the consistency check fails.
   */
  maybeAppend(index: LogIndex, logTerm: Term, committed: LogIndex, entries: readonly Entry[]): LogIndex | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      // Entries up to `committed` are in every future leader's log (leader completeness), so a
      // conflict there means the safety argument is broken.
      assert(conflict > this.committed, `entry ${conflict} conflicts with the committed prefix (committed ${this.committed})`);
      this.append(entries.slice(conflict - index - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /**
   * Index of the first entry that is not in our log with the same term, or 0 when every entry
   * is already there (a duplicated or reordered MsgApp must not truncate anything).
   */
  findConflict(entries: readonly Entry[]): LogIndex {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`: the leader and the follower both use it
   * to skip a whole term of conflicting entries per round trip (fast back-off).
   */
  findConflictByTerm(index: LogIndex, term: Term): { index: LogIndex; term: Term } {
    let i = Math.min(index, this.lastIndex());
    for (; i >= 0; i--) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  append(entries: readonly Entry[]): LogIndex {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index - 1;
    assert(after >= this.committed, `append after ${after} would overwrite committed entries (committed ${this.committed})`);
    this.unstable.truncateAndAppend(entries);
    this.onAppend?.(entries);
    return this.lastIndex();
  }

  commitTo(index: LogIndex): void {
    if (index <= this.committed) return; // never decrease commit
    assert(index <= this.lastIndex(), `commit ${index} is past the last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /**
   * The leader's commit rule (paper section 5.4.2, figure 8): an index replicated on a quorum is
   * committed only if its entry is from the current term.
   */
  maybeCommit(quorumIndex: LogIndex, term: Term): boolean {
    if (quorumIndex > this.committed && this.term(quorumIndex) === term) {
      this.commitTo(quorumIndex);
      return true;
    }
    return false;
  }

  appliedTo(index: LogIndex): void {
    if (index === 0) return;
    assert(index <= this.committed, `applied ${index} is past committed ${this.committed}`);
    assert(index >= this.applied, `applied went back: ${this.applied} -> ${index}`);
    this.applied = index;
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  /** Committed entries not yet handed out for applying, within `bytesMax`. */
  nextCommittedEntries(bytesMax: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed < lo) return [];
    return this.slice(lo, this.committed + 1, bytesMax);
  }

  /** Entries from `lo` on, within `bytesMax`; undefined when `lo` is compacted. */
  entriesFrom(lo: LogIndex, bytesMax: number): Entry[] | undefined {
    if (lo > this.lastIndex()) return [];
    if (lo < this.firstIndex()) return undefined;
    return this.slice(lo, this.lastIndex() + 1, bytesMax);
  }

  /** Entries [lo, hi) from storage and the unstable tail, within `bytesMax` (at least one). */
  slice(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi, `slice [${lo}, ${hi}) out of bounds [${this.firstIndex()}, ${this.lastIndex() + 1})`);
    if (lo === hi) return [];
    const offset = this.unstable.offset;
    let result: Entry[] = [];
    if (lo < offset) {
      result = this.storage.entries(lo, Math.min(hi, offset), bytesMax);
      if (result.length < Math.min(hi, offset) - lo) return result; // cut short by the byte limit
    }
    if (hi > offset) {
      const tail = this.unstable.slice(Math.max(lo, offset), hi);
      result = result.length === 0 ? tail : result.concat(tail);
    }
    return limitBytes(result, bytesMax);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Replaces the log with a snapshot from the leader (paper section 7). */
  restore(snapshot: Snapshot): void {
    assert(snapshot.meta.index > this.committed, `restore of snapshot ${snapshot.meta.index} at or below commit ${this.committed}`);
    this.committed = snapshot.meta.index;
    this.unstable.restore(snapshot);
  }
}
