/**
 * The edges of the Ready loop: everything the replica does to the outside world goes through
 * these narrow interfaces, each with a real implementation (LevelDB, TCP, the wall clock) and a
 * deterministic one (memory, the simulated network, logical time).
 *
 * I/O completes through callbacks, never promises: a completion is an event the replica reacts
 * to, like a message or a tick. The simulator decides when each callback runs, so a seed replays
 * the same interleaving of disk, network and timers every time (a promise would settle on the
 * microtask queue, out of the simulator's hands). A callback is called exactly once, and never
 * from inside the call that started the operation... unless the implementation says so: the
 * replica tolerates both.
 */
import type { ApplyResult, StagedSnapshot } from '@raftkv/kv';
import type { ConfState, Entry, HardState, LogIndex, LogStorage, Message, MsgSnap, NodeId, Snapshot, SnapshotMeta, Term } from '@raftkv/raft';

/** Completion of an operation that returns nothing: `null` when it succeeded. */
export type Done = (error: Error | null) => void;

/** One Ready's worth of log writes (step 2 of the persistence contract on `Ready`). */
export interface LogWrite {
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
  /** Durable before `done`; when false (only the commit index changed), a crash may lose it. */
  readonly sync: boolean;
}

/**
 * The Raft log: read synchronously by the core (`LogStorage`, served from memory), written
 * through the replica one operation at a time. A failed write leaves the log as it was.
 */
export interface ReplicaLog extends LogStorage {
  /** Writes snapshot metadata, entries (truncating from entries[0].index) and hard state in one atomic batch. */
  persist(write: LogWrite, done: Done): void;
  /**
   * Records the snapshot metadata `meta` (the state machine holds the data) and drops the entries
   * it covers. A no-op at or below the current snapshot.
   */
  compact(meta: SnapshotMeta, done: Done): void;
}

/**
 * The replicated state machine. `Image` is how a point-in-time copy of its state travels between
 * nodes: a stream of chunks over TCP, an object in memory.
 */
export interface ReplicaStateMachine<Image> {
  /** The last entry applied, and its term (0 / 0: none). */
  readonly appliedIndex: LogIndex;
  readonly appliedTerm: Term;
  /** The cluster configuration as of `appliedIndex` (kept with the state: snapshots carry it). */
  readonly confState: ConfState;
  /**
   * Applies committed entries in order, skipping those at or below `appliedIndex`; one result per
   * entry. The state may be written without sync: the log replays what a crash loses.
   */
  apply(entries: readonly Entry[], done: (error: Error | null, results: readonly ApplyResult[]) => void): void;
  /** Makes everything applied so far durable (before the log drops the entries behind it). */
  sync(done: Done): void;
  /** Writes an incoming image into a fresh place and verifies it; the live state is untouched. */
  stage(meta: SnapshotMeta, image: Image, done: (error: Error | null, staged: StagedSnapshot | null) => void): void;
  /** Swaps a staged image in as the live state, durably. */
  install(staged: StagedSnapshot, done: Done): void;
  discard(staged: StagedSnapshot, done: Done): void;
  /** An image of the current state, at or past every index it has applied. */
  exportImage(): Image;
}

/** Sends Raft messages to peers; delivery is best effort (Raft tolerates loss). */
export interface ReplicaTransport {
  send(message: Message): void;
}

/** A monotonic clock in milliseconds: it never goes back, and keeps running while the process is paused. */
export interface Clock {
  nowMs(): number;
}

/** The subset of a pino logger the replica uses: fixed message strings, fields first. */
export interface ReplicaLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  fatal(fields: Record<string, unknown>, message: string): void;
}

/** What the replica reports to its owner. Called synchronously from inside the replica. */
export interface ReplicaEvents {
  /** The role or the known leader changed. */
  onRoleChange?(change: { role: string; term: Term; leader: NodeId | null; roleChanged: boolean; leaderChanged: boolean }): void;
  /** Configuration entries were appended to the log (and will be persisted with the Ready that carries them). */
  onConfEntries?(entries: readonly Entry[]): void;
  /** A write to the log or the state machine failed: the replica stopped (fail-stop) and will do nothing more. */
  onFatal?(error: Error): void;
}

/** The transport's view of the replica: what arrives from peers. */
export interface ReplicaInbox<Image> {
  step(message: Message): void;
  /** A snapshot stream arrived whole; `done` once it was staged and handed to the core, or refused. */
  receiveSnapshot(message: MsgSnap, image: Image, done: Done): void;
  /** An image of the state for a snapshot to `to`. */
  snapshotImage(): Image;
  snapshotSent(to: NodeId, ok: boolean): void;
  unreachable(to: NodeId): void;
}
