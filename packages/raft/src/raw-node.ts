import { assert } from './assert.js';
import type { RaftConfig } from './config.js';
import { ErrorCode, RaftKvError } from './errors.js';
import { Raft } from './raft.js';
import type { ConfChange } from './membership.js';
import {
  Role,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type PeerProgress,
  type ReadContext,
  type Ready,
  type SnapshotMeta,
  type SoftState,
  type BasicStatus,
  type Status,
  type Term,
} from './types.js';

/**
 * The consensus core's public face: a thread-unsafe state machine with four verbs, `tick`,
 * `step`, `ready` and `advance` (after etcd-io/raft's RawNode). It performs no I/O, reads no
 * clock and draws randomness only from the injected source, so a run is a pure function of
 * its inputs. See `Ready` for what the caller must do with each batch of effects.
 */
export class RawNode {
  readonly #raft: Raft;
  #prevSoftState: SoftState;
  #prevHardState: HardState;
  /** The Ready handed out and not yet acknowledged. */
  #inFlight: Ready | null = null;

  constructor(config: RaftConfig) {
    this.#raft = new Raft(config);
    this.#prevSoftState = this.#softState();
    this.#prevHardState = this.#hardState();
  }

  get id(): NodeId {
    return this.#raft.id;
  }

  /**
   * Advances logical time by one tick (the caller decides how long a tick is).
   *
   * **Lease reads depend on it**: the leader lease (`readIndex(context, 'lease')`) is measured in
   * this node's ticks, so the caller must bring the ticks up to its monotonic clock before every
   * other input (`step`, `readIndex`, `propose`, ...): after a pause (GC, SIGSTOP, a slow disk)
   * deliver every tick that is due first, so that the node wakes with its lease expired instead
   * of answering from a commit index that others have moved past. Tick rates may differ between
   * nodes by at most `clockDriftMax`.
   */
  tick(): void {
    this.#raft.tick();
  }

  /** Feeds a message received from a peer. */
  step(message: Message): void {
    this.#raft.step(message);
  }

  /**
   * Proposes a command. On the leader, returns the index and term its entry got: the command
   * took effect if and when the entry at that index with that term is applied. Throws
   * NOT_LEADER (with a leader hint) elsewhere, PROPOSAL_DROPPED during a leadership transfer or
   * when too much is uncommitted, ENTRY_TOO_LARGE beyond `entryBytesMax`.
   */
  propose(data: Uint8Array): { index: LogIndex; term: Term } {
    return this.#raft.propose(data);
  }

  /**
   * Proposes a membership change (one server at a time; see membership.ts and
   * `Raft.proposeConfChange`). `context` rides along in the entry for the caller's state machine
   * (addresses, identity). The change takes effect on each node when its entry is appended to
   * that node's log (thesis section 4.1). Throws NOT_LEADER, CONF_CHANGE_PENDING,
   * CONF_CHANGE_INVALID or PROPOSAL_DROPPED.
   */
  proposeConfChange(change: ConfChange, context: Uint8Array = new Uint8Array(0)): { index: LogIndex; term: Term } {
    return this.#raft.proposeConfChange(change, context);
  }

  /**
   * Asks for a linearizable read. The answer comes as a ReadState with the same context in a
   * later Ready; it may never come (leadership lost, message lost), so callers time out.
   * Throws NOT_LEADER when no leader is known. With `lease`, a leader whose lease holds answers
   * in the next Ready without a heartbeat round (thesis section 6.4.1); otherwise the read is a
   * ReadIndex read. The lease is only as good as the ticks: see `tick` for what the caller must
   * do before calling this.
   */
  readIndex(context: ReadContext, mode: 'read-index' | 'lease' = 'read-index'): void {
    this.#raft.readIndex(context, mode);
  }

  /** Starts an election now (pre-vote first, when enabled). */
  campaign(): void {
    this.#raft.hup(false);
  }

  /** Moves leadership to `transferee` (thesis section 3.10). Forwarded to the leader from a follower. */
  transferLeadership(transferee: NodeId): void {
    this.#raft.transferLeadership(transferee);
  }

  reportUnreachable(id: NodeId): void {
    this.#raft.reportUnreachable(id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.#raft.reportSnapshot(id, ok);
  }

  /**
   * The metadata of a snapshot of the state machine at `index` (which must be applied), for the
   * caller to store with the snapshot's data before compacting the log up to `index`.
   */
  snapshotMeta(index: LogIndex): SnapshotMeta {
    const log = this.#raft.log;
    if (index > log.applied) {
      throw new RaftKvError(ErrorCode.LOG_UNAVAILABLE, `cannot snapshot at ${index}: only ${log.applied} is applied`);
    }
    const term = log.term(index);
    if (term === undefined) throw new RaftKvError(ErrorCode.LOG_COMPACTED, `cannot snapshot at ${index}: already compacted`);
    // The configuration in force at `index`, which may be older than the current one.
    const history = this.#raft.confHistory;
    history.prune(log.firstIndex() - 1);
    return { index, term, confState: history.at(index) };
  }

  /**
   * The metadata of a snapshot received from the leader that the core accepted and that the
   * caller has not yet acknowledged with `advance()` (it is handed out, or about to be, in a
   * Ready); null otherwise. After stepping a MsgSnap, this says whether the core took it.
   */
  pendingSnapshot(): SnapshotMeta | null {
    return this.#raft.log.unstable.snapshot?.meta ?? null;
  }

  hasReady(): boolean {
    if (this.#inFlight !== null) return false;
    const r = this.#raft;
    return (
      !sameSoftState(this.#softState(), this.#prevSoftState) ||
      !sameHardState(this.#hardState(), this.#prevHardState) ||
      r.log.unstable.entries.length > 0 ||
      r.log.unstable.snapshot !== null ||
      r.log.hasNextCommittedEntries() ||
      r.msgs.length > 0 ||
      r.msgsAfterPersist.length > 0 ||
      r.readStates.length > 0
    );
  }

  /** The effects to carry out now. Call `advance()` when done; until then no other Ready is handed out. */
  ready(): Ready {
    assert(this.#inFlight === null, 'ready() called again before advance()');
    const r = this.#raft;
    const softState = this.#softState();
    const hardState = this.#hardState();
    const entries = r.log.unstable.entries.slice();
    const snapshot = r.log.unstable.snapshot;
    const termOrVoteChanged = hardState.term !== this.#prevHardState.term || hardState.vote !== this.#prevHardState.vote;
    const ready: Ready = {
      softState: sameSoftState(softState, this.#prevSoftState) ? null : softState,
      hardState: sameHardState(hardState, this.#prevHardState) ? null : hardState,
      entries,
      snapshot,
      committedEntries: r.log.nextCommittedEntries(r.cfg.committedBytesPerReadyMax),
      messages: r.msgs,
      messagesAfterPersist: r.msgsAfterPersist,
      readStates: r.readStates,
      mustSync: entries.length > 0 || snapshot !== null || termOrVoteChanged,
    };
    r.msgs = [];
    r.msgsAfterPersist = [];
    r.readStates = [];
    r.readOnly.closeRound();
    this.#inFlight = ready;
    return ready;
  }

  /** The caller carried out the last Ready (persisted, sent, applied). */
  advance(): void {
    const ready = this.#inFlight;
    assert(ready !== null, 'advance() without a Ready in flight');
    this.#inFlight = null;
    const r = this.#raft;
    if (ready.softState !== null) this.#prevSoftState = ready.softState;
    if (ready.hardState !== null) {
      this.#prevHardState = ready.hardState;
      r.persistedTerm = ready.hardState.term;
    }
    if (ready.snapshot !== null) {
      r.log.unstable.stableSnapTo(ready.snapshot.meta.index);
      r.log.appliedTo(Math.max(r.log.applied, ready.snapshot.meta.index));
    }
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry !== undefined) {
      r.log.unstable.stableTo(lastEntry.index, lastEntry.term);
      // Only what really reached storage counts as the leader's own acknowledgement.
      if (r.log.matchTerm(lastEntry.index, lastEntry.term)) r.onStable(Math.min(lastEntry.index, r.log.stableLastIndex()));
    }
    const lastApplied = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastApplied !== undefined) {
      r.log.appliedTo(lastApplied.index);
      r.reduceUncommittedBytes(ready.committedEntries);
    }
  }

  /** Peer messages dropped because they could not be what they claimed, by reason (see screen.ts). */
  droppedMessages(): ReadonlyMap<string, number> {
    return new Map(this.#raft.dropped);
  }

  /** Role, term, leader and log positions: cheap enough to call after every event. */
  basicStatus(): BasicStatus {
    const r = this.#raft;
    return {
      id: r.id,
      role: r.role,
      term: r.term,
      vote: r.vote,
      lead: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      firstIndex: r.log.firstIndex(),
      lastIndex: r.log.lastIndex(),
      leadTransferee: r.leadTransferee,
    };
  }

  /** Everything in `basicStatus`, the configuration, and on the leader each peer's progress. */
  status(): Status {
    const r = this.#raft;
    let progress: Map<NodeId, PeerProgress> | null = null;
    if (r.role === Role.Leader) {
      progress = new Map();
      for (const [id, pr] of r.progress) progress.set(id, pr.view());
    }
    return { ...this.basicStatus(), confState: r.confState(), progress };
  }

  /** Term of the entry at `index` in this node's log, or undefined if absent or compacted (for checkers). */
  termAt(index: LogIndex): Term | undefined {
    return this.#raft.log.term(index);
  }

  /** Entries [lo, hi) of this node's log, stable and unstable (for checkers and tests). */
  entries(lo: LogIndex, hi: LogIndex): Entry[] {
    return this.#raft.log.slice(lo, hi, Number.MAX_SAFE_INTEGER);
  }

  #softState(): SoftState {
    return { lead: this.#raft.lead, role: this.#raft.role };
  }

  #hardState(): HardState {
    return { term: this.#raft.term, vote: this.#raft.vote, commit: this.#raft.log.committed };
  }
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
