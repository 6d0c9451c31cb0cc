import { assert } from './assert.js';
import type { Entry, LogIndex, Snapshot, Term } from './types.js';

/**
 * The tail of the log that the caller has not yet reported durable, plus a snapshot received
 * from the leader and not yet persisted.
 *
 * Invariants: entry k of `entries` has index `offset + k`; when `snapshot` is set,
 * `offset === snapshot.meta.index + 1`.
 */
export class UnstableLog {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  offset: LogIndex;

  constructor(offset: LogIndex) {
    assert(offset >= 1, `unstable offset ${offset} < 1`);
    this.offset = offset;
  }

  /** Index of the first entry this tail may hold, if it holds a snapshot. */
  maybeFirstIndex(): LogIndex | undefined {
    return this.snapshot === null ? undefined : this.snapshot.meta.index + 1;
  }

  maybeLastIndex(): LogIndex | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === null ? undefined : this.snapshot.meta.index;
  }

  maybeTerm(i: LogIndex): Term | undefined {
    if (i < this.offset) {
      return this.snapshot !== null && this.snapshot.meta.index === i ? this.snapshot.meta.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** The caller reported entries up to (index, term) durable: drop them from the tail. */
  stableTo(index: LogIndex, term: Term): void {
    const t = this.maybeTerm(index);
    // The entry was overwritten after it was handed out (a new leader truncated it): the newer
    // entries are still unstable and will be handed out again.
    if (t !== term || index < this.offset) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  stableSnapTo(index: LogIndex): void {
    if (this.snapshot !== null && this.snapshot.meta.index === index) this.snapshot = null;
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.meta.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  /** Appends entries, truncating any conflicting suffix first. */
  truncateAndAppend(entries: readonly Entry[]): void {
    assert(entries.length > 0, 'truncateAndAppend with no entries');
    const from = entries[0]!.index;
    const end = this.offset + this.entries.length;
    if (from === end) {
      for (const e of entries) this.entries.push(e);
    } else if (from <= this.offset) {
      // Replaces the whole tail; the caller truncates stable storage from `from` when it persists.
      this.offset = from;
      this.entries = entries.slice();
    } else {
      assert(from < end, `truncateAndAppend leaves a gap: tail ends at ${end - 1}, appending from ${from}`);
      this.entries = this.entries.slice(0, from - this.offset).concat(entries);
    }
    assertContiguous(this.entries, this.offset);
  }

  slice(lo: LogIndex, hi: LogIndex): Entry[] {
    assert(lo <= hi && lo >= this.offset && hi <= this.offset + this.entries.length, `unstable slice [${lo}, ${hi}) out of [${this.offset}, ${this.offset + this.entries.length})`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

function assertContiguous(entries: readonly Entry[], offset: LogIndex): void {
  if (entries.length === 0) return;
  assert(entries[0]!.index === offset, `unstable entries start at ${entries[0]!.index}, offset is ${offset}`);
  assert(entries[entries.length - 1]!.index === offset + entries.length - 1, 'unstable entries are not contiguous');
}
