/**
 * The simulator watches what each replica does to its disk by wrapping the in-memory log and
 * state machine: entries are checked for log matching as they are persisted, applied entries for
 * state machine safety, installed snapshot images against the committed writes. The wrappers
 * change nothing: every call goes through to the memory implementation as it was made.
 */
import type { ApplyResult, MemoryImage, StagedSnapshot } from '@raftkv/kv';
import type { Done, LogWrite, MemoryReplicaLog, MemoryReplicaStateMachine, ReplicaLog, ReplicaStateMachine } from '@raftkv/node';
import { isRaftKvError, type ConfState, type Entry, type HardState, type LogIndex, type NodeId, type Snapshot, type SnapshotMeta, type Term } from '@raftkv/raft';
import type { SafetyChecker, Violation } from './safety.js';

const decoder = new TextDecoder();

export class CheckedLog implements ReplicaLog {
  readonly #inner: MemoryReplicaLog;
  readonly #onEntries: (entries: readonly Entry[], prevTermOf: (index: LogIndex) => Term | undefined) => Violation | null;
  readonly #fail: (v: Violation) => void;

  constructor(
    inner: MemoryReplicaLog,
    onEntries: (entries: readonly Entry[], prevTermOf: (index: LogIndex) => Term | undefined) => Violation | null,
    fail: (v: Violation) => void,
  ) {
    this.#inner = inner;
    this.#onEntries = onEntries;
    this.#fail = fail;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return this.#inner.initialState();
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    return this.#inner.entries(lo, hi, bytesMax);
  }

  term(i: LogIndex): Term {
    return this.#inner.term(i);
  }

  firstIndex(): LogIndex {
    return this.#inner.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.#inner.lastIndex();
  }

  snapshot(): Snapshot {
    return this.#inner.snapshot();
  }

  persist(write: LogWrite, done: Done): void {
    if (write.entries.length > 0) {
      const prevTermOf = (index: LogIndex): Term | undefined => {
        if (write.snapshot !== null && write.snapshot.meta.index === index) return write.snapshot.meta.term;
        try {
          return this.#inner.term(index);
        } catch (error) {
          if (isRaftKvError(error)) return undefined; // compacted, or dropped by this write's snapshot
          throw error;
        }
      };
      const v = this.#onEntries(write.entries, prevTermOf);
      if (v !== null) this.#fail(v);
    }
    this.#inner.persist(write, done);
  }

  compact(meta: SnapshotMeta, done: Done): void {
    this.#inner.compact(meta, done);
  }
}

export class CheckedStateMachine implements ReplicaStateMachine<MemoryImage> {
  readonly #inner: MemoryReplicaStateMachine;
  readonly #node: NodeId;
  readonly #checker: SafetyChecker;
  readonly #fail: (v: Violation) => void;
  readonly #onInstalled: () => void;

  constructor(inner: MemoryReplicaStateMachine, node: NodeId, checker: SafetyChecker, fail: (v: Violation) => void, onInstalled: () => void) {
    this.#inner = inner;
    this.#node = node;
    this.#checker = checker;
    this.#fail = fail;
    this.#onInstalled = onInstalled;
  }

  get appliedIndex(): LogIndex {
    return this.#inner.appliedIndex;
  }

  get appliedTerm(): Term {
    return this.#inner.appliedTerm;
  }

  get confState(): ConfState {
    return this.#inner.confState;
  }

  apply(entries: readonly Entry[], done: (error: Error | null, results: readonly ApplyResult[]) => void): void {
    // The loop applies one batch at a time, so nothing changes the applied index before this completes.
    const before = this.#inner.appliedIndex;
    this.#inner.apply(entries, (error, results) => {
      if (error === null) {
        let applied = before;
        for (const e of entries) {
          if (e.index <= applied) continue;
          const v = this.#checker.onApply(this.#node, applied, e);
          if (v !== null) this.#fail(v);
          applied = e.index;
        }
      }
      done(error, results);
    });
  }

  sync(done: Done): void {
    this.#inner.sync(done);
  }

  stage(meta: SnapshotMeta, image: MemoryImage, done: (error: Error | null, staged: StagedSnapshot | null) => void): void {
    this.#inner.stage(meta, image, done);
  }

  install(staged: StagedSnapshot, done: Done): void {
    this.#inner.install(staged, (error) => {
      if (error === null) {
        this.#onInstalled();
        const { index, term } = staged.meta;
        const v = this.#checker.onSnapshot(this.#node, index, term) ?? this.#checker.onImage(this.#node, index, this.#registers());
        if (v !== null) this.#fail(v);
      }
      done(error);
    });
  }

  discard(staged: StagedSnapshot, done: Done): void {
    this.#inner.discard(staged, done);
  }

  exportImage(): MemoryImage {
    return this.#inner.exportImage();
  }

  /** The state machine's registers as the checker compares them. */
  #registers(): Map<string, { value: string; modIndex: LogIndex }> {
    const out = new Map<string, { value: string; modIndex: LogIndex }>();
    for (const item of this.#inner.kv.scan('', Number.MAX_SAFE_INTEGER)) out.set(item.key, { value: decoder.decode(item.value), modIndex: item.modIndex });
    return out;
  }
}
