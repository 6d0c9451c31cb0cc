/**
 * Turning a write (what a Ready asks to persist, or a compaction) into one batch of LevelDB
 * operations, and the matching change to the in-memory mirror. Planning reads the mirror and
 * changes nothing: the store runs the batch, and only once it is durable replays the steps on
 * the mirror. Every check on the data happens here, before a byte is written.
 */
import {
  assert,
  ErrorCode,
  RaftKvError,
  type ConfState,
  type Entry,
  type HardState,
  type LogIndex,
  type MemoryStorage,
  type Snapshot,
  type SnapshotMeta,
  type Term,
} from '@raftkv/raft';
import type { BatchOp } from './database.js';
import { encodeEntry, encodeHardState, encodeSnapshotData, encodeSnapshotMeta, encodeVersion, entryKey, KEY, SNAPSHOT_DATA_BYTES_MAX } from './format.js';

export interface Plan {
  /** Applied in order, atomically. */
  readonly ops: readonly BatchOp[];
  /** Replays the write on the mirror (MemoryStorage, the model), after the batch is durable. */
  readonly steps: readonly ((mirror: MemoryStorage) => void)[];
  /** Where the log stands once the write is done: checked against the mirror afterwards. */
  readonly firstIndex: LogIndex;
  readonly lastIndex: LogIndex;
}

/** A Ready's worth of writes, persisted in this order (see `Ready` in @raftkv/raft). */
export interface WriteRequest {
  readonly snapshot: Snapshot | null;
  /** Keep the snapshot's data (small images, for compact/applySnapshot) or only its metadata. */
  readonly keepSnapshotData: boolean;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
}

const EMPTY_DATA = new Uint8Array(0);

export function planWrite(mirror: MemoryStorage, request: WriteRequest): Plan {
  const ops: BatchOp[] = [];
  const steps: ((m: MemoryStorage) => void)[] = [];
  let first = mirror.firstIndex();
  let last = mirror.lastIndex();
  let snapshotTerm = mirror.snapshot().meta.term;
  const committed = mirror.hardState().commit;

  const { snapshot } = request;
  if (snapshot !== null) {
    const { index, term } = snapshot.meta;
    if (index <= first - 1) {
      throw new RaftKvError(ErrorCode.SNAPSHOT_OUT_OF_DATE, `snapshot ${index} is not newer than the stored snapshot ${first - 1}`);
    }
    checkSnapshotMeta(snapshot.meta, snapshotTerm);
    // Paper section 7: keep the entries after the snapshot only if the log holds its last entry.
    const keep = index <= last && mirror.term(index) === term;
    assert(keep || last <= index || committed <= index, `snapshot ${index} drops committed entries up to ${Math.min(committed, last)}`);
    deleteEntries(ops, first, keep ? index : last);
    const data = putSnapshot(ops, snapshot.meta, request.keepSnapshotData ? snapshot.data : EMPTY_DATA);
    steps.push((m) => m.applySnapshot({ meta: snapshot.meta, data }));
    first = index + 1;
    if (!keep) last = index;
    snapshotTerm = term;
  }

  // Entries the snapshot (old or new) covers are ignored, as MemoryStorage.append does.
  checkEntries(request.entries);
  const firstGiven = request.entries[0]?.index ?? first;
  const toAdd = firstGiven < first ? request.entries.slice(first - firstGiven) : request.entries;
  const start = toAdd[0]?.index;
  if (start !== undefined) {
    assert(start <= last + 1, `append leaves a gap: last index ${last}, appending from ${start}`);
    // Entries up to `last` that the snapshot step kept are still the mirror's.
    const prevTerm = start - 1 === first - 1 ? snapshotTerm : mirror.term(start - 1);
    assert(toAdd[0]!.term >= prevTerm, `append: entry ${start} has term ${toAdd[0]!.term}, lower than the term ${prevTerm} before it`);
    checkCommittedKept(mirror, toAdd, Math.min(committed, last));
    for (const entry of toAdd) ops.push({ type: 'put', key: entryKey(entry.index), value: encodeEntry(entry) });
    const newLast = toAdd[toAdd.length - 1]!.index;
    // Truncate on conflict: nothing stored may outlive the new last entry.
    deleteEntries(ops, newLast + 1, last);
    last = newLast;
    steps.push((m) => m.append(toAdd));
  }

  const { hardState } = request;
  if (hardState !== null) {
    checkHardState(mirror.hardState(), hardState);
    ops.push({ type: 'put', key: KEY.hardState, value: encodeHardState(hardState) });
    steps.push((m) => m.setHardState(hardState));
  }
  // Raft never truncates a committed entry (paper section 5.4, Leader Completeness), and the
  // core persists commit together with the entries it covers; open() checks this again.
  const commit = (hardState ?? mirror.hardState()).commit;
  assert(commit <= last, `write leaves the committed index ${commit} past the last log entry ${last}`);
  return { ops, steps, firstIndex: first, lastIndex: last };
}

/**
 * Records a snapshot the state machine took at `meta.index` (stored) and drops the entries it
 * covers. Null when `meta` is at or below the current snapshot: nothing to do.
 */
export function planCompact(mirror: MemoryStorage, meta: SnapshotMeta, data: Uint8Array): Plan | null {
  const first = mirror.firstIndex();
  const last = mirror.lastIndex();
  if (meta.index <= first - 1) return null;
  assert(meta.index <= last, `compact ${meta.index} is past the last index ${last}`);
  assert(mirror.term(meta.index) === meta.term, `compact: term of ${meta.index} is ${mirror.term(meta.index)}, snapshot says ${meta.term}`);
  checkSnapshotMeta(meta, mirror.snapshot().meta.term);
  const ops: BatchOp[] = [];
  deleteEntries(ops, first, meta.index);
  const stored = putSnapshot(ops, meta, data);
  return { ops, steps: [(m) => m.compact(meta, stored)], firstIndex: meta.index + 1, lastIndex: last };
}

/** The records a new store starts with: the format version, an empty log at `confState`, a zero hard state. */
export function planBootstrap(confState: ConfState): readonly BatchOp[] {
  checkConfState(confState);
  return [
    { type: 'put', key: KEY.version, value: encodeVersion() },
    { type: 'put', key: KEY.snapshot, value: encodeSnapshotMeta({ index: 0, term: 0, confState }) },
    { type: 'put', key: KEY.hardState, value: encodeHardState({ term: 0, vote: null, commit: 0 }) },
  ];
}

/**
 * Deletes entries [from, to], one key each, in the same batch as the rest of the write (a range
 * delete, `db.clear`, is a separate operation and would break the write's atomicity).
 */
function deleteEntries(ops: BatchOp[], from: LogIndex, to: LogIndex): void {
  for (let i = from; i <= to; i++) ops.push({ type: 'del', key: entryKey(i) });
}

/** Writes the snapshot metadata, and its data when there is any; returns the data kept. */
function putSnapshot(ops: BatchOp[], meta: SnapshotMeta, data: Uint8Array): Uint8Array {
  ops.push({ type: 'put', key: KEY.snapshot, value: encodeSnapshotMeta(meta) });
  if (data.byteLength === 0) {
    // An older snapshot's image must not outlive it.
    ops.push({ type: 'del', key: KEY.snapshotData });
    return EMPTY_DATA;
  }
  assert(
    data.byteLength <= SNAPSHOT_DATA_BYTES_MAX,
    `snapshot data of ${data.byteLength} bytes: the log store keeps at most ${SNAPSHOT_DATA_BYTES_MAX} (the state machine holds snapshot images, not the log store)`,
  );
  ops.push({ type: 'put', key: KEY.snapshotData, value: encodeSnapshotData(meta.index, data) });
  return data;
}

function checkSnapshotMeta(meta: SnapshotMeta, currentTerm: Term): void {
  assert(Number.isSafeInteger(meta.index) && meta.index >= 1, `snapshot index ${meta.index}`);
  assert(Number.isSafeInteger(meta.term) && meta.term >= 1, `snapshot ${meta.index} has term ${meta.term}`);
  assert(meta.term >= currentTerm, `snapshot ${meta.index} has term ${meta.term}, lower than the stored snapshot's ${currentTerm}`);
  checkConfState(meta.confState);
}

function checkConfState(confState: ConfState): void {
  const members = [...confState.voters, ...confState.learners];
  for (const id of members) assert(typeof id === 'string' && id !== '', `configuration member ${JSON.stringify(id)}`);
  assert(new Set(members).size === members.length, `a node appears twice in the configuration ${JSON.stringify(confState)}`);
}

/**
 * Raft never changes or removes a committed entry (paper section 5.4, Leader Completeness; the
 * core truncates only on conflict, above its commit index). Entries [toAdd[0].index, committed]
 * may be written again only as themselves: same index and term means the same entry (Log
 * Matching, paper section 5.3).
 */
function checkCommittedKept(mirror: MemoryStorage, toAdd: readonly Entry[], committed: LogIndex): void {
  const start = toAdd[0]!.index;
  for (let i = start; i <= committed; i++) {
    const entry = toAdd[i - start];
    assert(entry !== undefined, `append ending at ${start + toAdd.length - 1} drops committed entry ${i}`);
    assert(entry.term === mirror.term(i), `append overwrites committed entry ${i} (term ${mirror.term(i)}) with term ${entry.term}`);
  }
}

/** A batch of entries is contiguous, ascending, and its terms never decrease. */
function checkEntries(entries: readonly Entry[]): void {
  let prev: Entry | undefined;
  for (const entry of entries) {
    assert(Number.isSafeInteger(entry.index) && entry.index >= 1, `entry index ${entry.index}`);
    assert(Number.isSafeInteger(entry.term) && entry.term >= 1, `entry ${entry.index} has term ${entry.term}`);
    assert(entry.data instanceof Uint8Array, `entry ${entry.index} data is not binary`);
    if (prev !== undefined) {
      assert(entry.index === prev.index + 1, `append: entries are not contiguous at ${entry.index} (after ${prev.index})`);
      assert(entry.term >= prev.term, `append: term goes back at ${entry.index}: ${prev.term} -> ${entry.term}`);
    }
    prev = entry;
  }
}

/** Paper figure 2: currentTerm only grows, and votedFor is fixed once cast within a term. */
function checkHardState(current: HardState, next: HardState): void {
  assert(Number.isSafeInteger(next.term) && next.term >= 0, `hard state term ${next.term}`);
  assert(Number.isSafeInteger(next.commit) && next.commit >= 0, `hard state commit ${next.commit}`);
  assert(next.vote === null || (typeof next.vote === 'string' && next.vote !== ''), `hard state vote ${JSON.stringify(next.vote)}`);
  assert(next.term >= current.term, `hard state term went back: ${current.term} -> ${next.term}`);
  assert(
    next.term > current.term || current.vote === null || next.vote === current.vote,
    `vote changed within term ${next.term}: ${current.vote} -> ${String(next.vote)}`,
  );
}
