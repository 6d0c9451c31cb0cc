/**
 * The in-memory twins of the durable edges: a log and a state machine that keep everything in
 * memory, for embedded clusters that need no disk and for the deterministic simulator. They
 * model durability the way the disk does, so that a simulated power loss is meaningful:
 *
 * - A write is *in flight* from the call until its completion runs, then *written*; a synced write
 *   makes everything written before it durable.
 * - `crash(kept)` loses power: what survives is the durable state plus the first `kept` writes
 *   after it (written or in flight), in order. LevelDB's write-ahead log behaves so: it loses a
 *   suffix of its batches, never one in the middle, and a batch whole or not at all.
 *
 * When a completion runs is up to the `IoScheduler` the owner passes (the simulator draws
 * latencies from its seed; an embedded cluster completes on the next event-loop turn).
 */
import { MemoryKvStateMachine, type ApplyResult, type KvLimits, type MemoryImage, type StagedSnapshot } from '@raftkv/kv';
import { assert, MemoryStorage, type ConfState, type Entry, type HardState, type LogIndex, type Snapshot, type SnapshotMeta, type Term } from '@raftkv/raft';
import type { Done, LogWrite, ReplicaLog, ReplicaStateMachine } from '../replica/io.js';

/** The operations a scheduler is asked to complete, so that it can give each its own latency. */
export type IoOperation = 'persist' | 'compact' | 'apply' | 'sync' | 'stage' | 'install' | 'discard';

/** Runs `complete` later: the moment an operation's effect lands and its callback runs. */
export type IoScheduler = (operation: IoOperation, complete: () => void) => void;

/** Completes on the next turn of the event loop (embedded clusters). */
export const NEXT_TURN: IoScheduler = (_operation, complete) => setImmediate(complete);

const EMPTY = new Uint8Array(0);

type LogStep = (storage: MemoryStorage) => void;

/** The replica's log, in memory. */
export class MemoryReplicaLog implements ReplicaLog {
  readonly #schedule: IoScheduler;
  /** What the core reads: every completed write. */
  #live: MemoryStorage;
  /** What survives a power loss. */
  #durable: MemoryStorage;
  /** Completed writes not yet durable, oldest first. */
  #written: LogStep[] = [];
  /** Started writes not yet completed, oldest first. */
  #inFlight: LogStep[] = [];
  /** Bumped by a crash: completions scheduled before it do nothing. */
  #epoch = 0;

  constructor(confState: ConfState, schedule: IoScheduler) {
    this.#schedule = schedule;
    this.#live = new MemoryStorage(confState);
    this.#durable = new MemoryStorage(confState);
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return this.#live.initialState();
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    return this.#live.entries(lo, hi, bytesMax);
  }

  term(i: LogIndex): Term {
    return this.#live.term(i);
  }

  firstIndex(): LogIndex {
    return this.#live.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.#live.lastIndex();
  }

  snapshot(): Snapshot {
    return this.#live.snapshot();
  }

  /** Completed writes that are not durable yet (a process crash keeps them; a power loss may not). */
  get writtenCount(): number {
    return this.#written.length;
  }

  /** Started writes that have not completed (a crash may keep or lose each, in order). */
  get inFlightCount(): number {
    return this.#inFlight.length;
  }

  persist(write: LogWrite, done: Done): void {
    const { snapshot, entries, hardState } = write;
    const step: LogStep = (s) => {
      if (snapshot !== null) s.applySnapshot({ meta: snapshot.meta, data: EMPTY });
      if (entries.length > 0) s.append(entries);
      if (hardState !== null) s.setHardState(hardState);
    };
    this.#start(step, write.sync, 'persist', done);
  }

  compact(meta: SnapshotMeta, done: Done): void {
    this.#start((s) => s.compact(meta, EMPTY), true, 'compact', done);
  }

  /**
   * A crash: the durable state plus the first `kept` writes after it (completed ones first, then
   * those in flight) survive. A process crash keeps at least the completed ones (they reached
   * the operating system); a power loss may keep any prefix.
   */
  crash(kept: number): void {
    const pending = [...this.#written, ...this.#inFlight];
    assert(Number.isInteger(kept) && kept >= 0 && kept <= pending.length, `crash keeps ${kept} of ${pending.length} writes`);
    for (const step of pending.slice(0, kept)) step(this.#durable);
    this.#live = copyStorage(this.#durable);
    this.#written = [];
    this.#inFlight = [];
    this.#epoch++;
  }

  #start(step: LogStep, sync: boolean, operation: IoOperation, done: Done): void {
    const epoch = this.#epoch;
    this.#inFlight.push(step);
    this.#schedule(operation, () => {
      if (epoch !== this.#epoch) return; // lost with a crash
      assert(this.#inFlight[0] === step, 'memory log writes complete in the order they started');
      this.#inFlight.shift();
      try {
        step(this.#live);
      } catch (error) {
        return done(error instanceof Error ? error : new Error(String(error)));
      }
      this.#written.push(step);
      if (sync) {
        for (const w of this.#written) w(this.#durable);
        this.#written = [];
      }
      done(null);
    });
  }
}

/** A copy sharing the (immutable) entries: what a restart reads back. */
function copyStorage(from: MemoryStorage): MemoryStorage {
  const snapshot = from.snapshot();
  const copy = new MemoryStorage(snapshot.meta.confState);
  if (snapshot.meta.index > 0) copy.applySnapshot(snapshot);
  if (from.lastIndex() >= from.firstIndex()) copy.append(from.entries(from.firstIndex(), from.lastIndex() + 1, Number.MAX_SAFE_INTEGER));
  copy.setHardState(from.hardState());
  return copy;
}

/** The replica's state machine, in memory: a `MemoryKvStateMachine` whose operations land when the scheduler says. */
export class MemoryReplicaStateMachine implements ReplicaStateMachine<MemoryImage> {
  readonly kv: MemoryKvStateMachine;
  readonly #schedule: IoScheduler;
  #epoch = 0;

  constructor(limits: Partial<KvLimits>, schedule: IoScheduler) {
    this.kv = new MemoryKvStateMachine(limits);
    this.#schedule = schedule;
  }

  get appliedIndex(): LogIndex {
    return this.kv.appliedIndex;
  }

  get appliedTerm(): Term {
    return this.kv.appliedTerm;
  }

  get confState(): ConfState {
    return this.kv.confState;
  }

  apply(entries: readonly Entry[], done: (error: Error | null, results: readonly ApplyResult[]) => void): void {
    this.#later('apply', () => this.kv.apply(entries), (error, results) => done(error, results ?? []));
  }

  sync(done: Done): void {
    this.#later('sync', () => this.kv.sync(), (error) => done(error));
  }

  stage(meta: SnapshotMeta, image: MemoryImage, done: (error: Error | null, staged: StagedSnapshot | null) => void): void {
    this.#later('stage', () => this.kv.stage(meta, image), (error, staged) => done(error, staged ?? null));
  }

  install(staged: StagedSnapshot, done: Done): void {
    this.#later('install', () => this.kv.install(staged), (error) => done(error));
  }

  discard(staged: StagedSnapshot, done: Done): void {
    this.#later('discard', () => this.kv.discard(staged), (error) => done(error));
  }

  exportImage(): MemoryImage {
    return this.kv.exportImage();
  }

  /** A power loss (see `MemoryKvStateMachine.crash`); operations in flight are lost. */
  crash(kept: number): void {
    this.#epoch++;
    this.kv.crash(kept);
  }

  #later<T>(operation: IoOperation, run: () => T, done: (error: Error | null, value: T | undefined) => void): void {
    const epoch = this.#epoch;
    this.#schedule(operation, () => {
      if (epoch !== this.#epoch) return;
      let value: T;
      try {
        value = run();
      } catch (error) {
        return done(error instanceof Error ? error : new Error(String(error)), undefined);
      }
      done(null, value);
    });
  }
}
