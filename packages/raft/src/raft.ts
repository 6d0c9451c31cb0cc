import { assert, assertNever } from './assert.js';
import { resolveConfig, type RaftConfig, type ResolvedRaftConfig } from './config.js';
import { ErrorCode, RaftKvError } from './errors.js';
import { LeaderLease, leaseTicks } from './lease.js';
import { RaftLog } from './log.js';
import { applyConfChange, ConfHistory, confChangeRefusal, decodeConfChange, encodeConfChange, type ConfChange } from './membership.js';
import { majorityValue, voteResult } from './quorum.js';
import { PENDING_READS_MAX, ReadOnly } from './read-only.js';
import { confChangesFollow, DropReason, malformedMessage } from './screen.js';
import { Progress } from './tracker/progress.js';
import {
  EntryType,
  Role,
  type ConfState,
  type Entry,
  type LogIndex,
  type Message,
  type MsgApp,
  type MsgAppResp,
  type MsgHeartbeat,
  type MsgSnap,
  type MsgVote,
  type NodeId,
  type ReadContext,
  type ReadState,
  type Term,
} from './types.js';

/** Distributes Omit over a union, so each message variant keeps its own fields. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A message before the core stamps it with `from` and (by default) its term. */
export type OutgoingMessage = DistributiveOmit<Message, 'from' | 'term'> & { term?: Term };

const EMPTY = new Uint8Array(0);

/** Message types a leader may send before its own fsync completes (see `Ready`). */
const LEADER_EARLY_TYPES: ReadonlySet<Message['type']> = new Set(['MsgApp', 'MsgHeartbeat', 'MsgSnap', 'MsgTimeoutNow', 'MsgReadIndexResp']);

/** Upper bound on reads held back until the leader commits the first entry of its term. */
const READS_BEFORE_FIRST_COMMIT_MAX = PENDING_READS_MAX;

/**
 * The Raft state machine of one node (the paper's figure 2, with the thesis's pre-vote,
 * check-quorum, ReadIndex and leadership transfer). It does no I/O and reads no clock: inputs
 * are `tick`, `step`, `propose` and friends; outputs accumulate in the fields that `RawNode`
 * turns into a `Ready`.
 *
 * Role changes happen only in `becomeFollower`, `becomePreCandidate`, `becomeCandidate` and
 * `becomeLeader`; an illegal transition is an assertion failure.
 */
export class Raft {
  readonly id: NodeId;
  readonly cfg: ResolvedRaftConfig;
  readonly log: RaftLog;

  term: Term = 0;
  vote: NodeId | null = null;
  lead: NodeId | null = null;
  role: Role = Role.Follower;

  /**
   * The configurations in this node's log, by index: the latest is in force (thesis section
   * 4.1), and a snapshot records the one in force at its index.
   */
  readonly confHistory: ConfHistory;

  /** Voters and learners of the current configuration, and the leader's view of their progress. */
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  readonly progress = new Map<NodeId, Progress>();
  /** Votes received in the current (pre-)election: true = granted. */
  readonly votes = new Map<NodeId, boolean>();

  /**
   * This node's logical clock: the ticks since it was constructed. Never reset; the leader
   * lease is measured on it.
   */
  #tickCount = 0;
  /**
   * The tick count when this node last heard from a leader (a MsgApp, MsgHeartbeat or MsgSnap
   * of its term), or at which it booted with stored state: it may have acknowledged a heartbeat
   * just before it stopped. For an election timeout after it, the node refuses to help elect
   * anyone (thesis sections 4.2.3 and 6.4.1; `#honoursLease`). Kept apart from `lead` and
   * `electionElapsed` on purpose: a message of a higher term from a node that is not a leader
   * (say, a late answer to something this node sent long ago) clears those, and must not cut
   * the lease short. -Infinity: never.
   */
  #leaderHeardTick: number;
  /** Ticks since the last election timeout reset (followers, candidates) or check-quorum round (leader). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeoutTicks = 0;

  /** Target of an ongoing leadership transfer (leader only). */
  leadTransferee: NodeId | null = null;
  /** Bytes of entries appended by this leader and not yet committed. */
  uncommittedBytes = 0;

  readonly readOnly = new ReadOnly();
  readonly lease: LeaderLease;
  /** Reads that arrived before this leader committed an entry of its term (thesis section 6.4 step 1). */
  readsBeforeFirstCommit: { from: NodeId; context: ReadContext }[] = [];

  /** The highest term the caller has reported durable. */
  persistedTerm: Term;

  /** Messages dropped because they cannot be what they claim (screen.ts), by reason. */
  readonly dropped = new Map<DropReason, number>();

  /** Outputs, drained into a Ready by RawNode. */
  msgs: Message[] = [];
  msgsAfterPersist: Message[] = [];
  readStates: ReadState[] = [];

  constructor(config: RaftConfig) {
    this.cfg = resolveConfig(config);
    this.id = this.cfg.id;
    this.log = new RaftLog(this.cfg.storage, this.cfg.applied);
    this.lease = new LeaderLease(leaseTicks(this.cfg.electionTimeoutTicks, this.cfg.clockDriftMax));
    const { hardState, confState } = this.cfg.storage.initialState();
    // A brand-new node (term 0, empty log) acknowledged no heartbeat: a follower answers a
    // heartbeat only after the heartbeat's term is durable (`Ready`), and no leader exists in
    // term 0. Skipping the boot lease there keeps a new cluster's first election fast. A node
    // whose disk was wiped looks brand new too: that is the lost-disk risk of docs/architecture.md.
    const brandNew = hardState.vote === null && (hardState.term === 0 ? this.log.lastIndex() === 0 : isOnlyBootstrap(this.cfg.storage, hardState.term));
    this.#leaderHeardTick = brandNew ? Number.NEGATIVE_INFINITY : 0;
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.persistedTerm = hardState.term;
    // The configuration: the snapshot's, then every change in the log after it.
    const snapshotIndex = this.log.firstIndex() - 1;
    this.confHistory = new ConfHistory(snapshotIndex, confState);
    const stored = this.log.lastIndex() >= snapshotIndex + 1 ? this.log.slice(snapshotIndex + 1, this.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER) : [];
    this.#recordConfChanges(stored);
    this.applyConfState(this.confHistory.current);
    this.log.onAppend = (entries) => this.#onLogAppend(entries);
    this.becomeFollower(this.term, null);
  }

  /** Installs a configuration and (re)creates the progress of every member (at start, and from a leader's snapshot). */
  applyConfState(confState: ConfState): void {
    assert(new Set([...confState.voters, ...confState.learners]).size === confState.voters.length + confState.learners.length, 'a node is both voter and learner');
    this.voters = [...confState.voters];
    this.learners = [...confState.learners];
    this.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of this.voters) this.progress.set(id, new Progress(next, this.cfg.inflightCountMax, false));
    for (const id of this.learners) this.progress.set(id, new Progress(next, this.cfg.inflightCountMax, true));
  }

  confState(): ConfState {
    return { voters: [...this.voters], learners: [...this.learners] };
  }

  /**
   * A voter may campaign; learners may not. So may a node that the latest change in its log
   * removed, while it does not know that change committed: it may be the only node holding it
   * (the leader that proposed its own removal, deposed before the change committed), and the
   * others may need it to lead, commit the change and step down (thesis section 4.2.2). Once it
   * knows the change committed, it stays out.
   */
  promotable(): boolean {
    if (this.voters.includes(this.id)) return true;
    const latest = this.confHistory.currentIndex;
    return latest > this.log.committed && this.confHistory.at(latest - 1).voters.includes(this.id);
  }

  /**
   * A leader proposes a membership change (thesis section 4.1). Refused with CONF_CHANGE_PENDING
   * while a change of this leader's log is not yet applied (one at a time), and until an entry
   * of this leader's term is committed: without that, a change could be decided against a
   * configuration a previous leader was already replacing (the single-server change bug found
   * in 2015, fixed in the thesis errata). Refused with CONF_CHANGE_INVALID when it cannot follow
   * the current configuration, or promotes a learner that is not caught up.
   */
  proposeConfChange(change: ConfChange, context: Uint8Array): { index: LogIndex; term: Term } {
    if (this.role !== Role.Leader) throw new RaftKvError(ErrorCode.NOT_LEADER, `node ${this.id} is not the leader`, { leaderHint: this.lead });
    if (this.leadTransferee !== null) {
      throw new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `leadership is being transferred to ${this.leadTransferee}`, { leaderHint: this.leadTransferee });
    }
    if (change.type === 'bootstrap') throw new RaftKvError(ErrorCode.CONF_CHANGE_INVALID, 'a cluster is bootstrapped once, at index 1');
    const pending = this.confHistory.currentIndex;
    if (pending > this.log.committed) {
      throw new RaftKvError(ErrorCode.CONF_CHANGE_PENDING, `the membership change at index ${pending} is not committed yet; retry`);
    }
    if (!this.#committedInCurrentTerm()) {
      throw new RaftKvError(ErrorCode.CONF_CHANGE_PENDING, `leader ${this.id} has not committed an entry of term ${this.term} yet; retry`);
    }
    const refusal = confChangeRefusal(this.confState(), change) ?? (change.type === 'promote' ? this.#promotionRefusal(change.id) : null);
    if (refusal !== null) throw new RaftKvError(ErrorCode.CONF_CHANGE_INVALID, refusal);
    const entry = this.#appendEntries([{ term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(change, context) }]);
    this.#broadcastAppend();
    return { index: entry.index, term: entry.term };
  }

  /** A learner votes only once it holds the log: else the first election after could stall on it. */
  #promotionRefusal(id: NodeId): string | null {
    const pr = this.progress.get(id);
    if (pr === undefined) return `${id} has no progress on this leader`;
    const behind = this.log.lastIndex() - pr.match;
    if (pr.state !== 'replicate' || behind > this.cfg.promotionLagEntriesMax) {
      return `learner ${id} is not caught up (${pr.state}, ${behind} entries behind; at most ${this.cfg.promotionLagEntriesMax})`;
    }
    return null;
  }

  /**
   * Entries were appended to the log, replacing any from `entries[0].index` on: configurations
   * of replaced entries are undone, those of new ones take effect (thesis section 4.1). A leader
   * only ever appends a change that can follow its log's configuration, so a follower can apply
   * them in turn.
   */
  #onLogAppend(entries: readonly Entry[]): void {
    const from = entries[0]!.index;
    const before = this.confHistory.currentIndex;
    if (before >= from) this.confHistory.truncateFrom(from);
    const recorded = this.#recordConfChanges(entries);
    if (recorded || this.confHistory.currentIndex !== before) this.#setConf(this.confHistory.current);
  }

  /** Records the configuration changes among `entries`; returns whether there were any. */
  #recordConfChanges(entries: readonly Entry[]): boolean {
    let any = false;
    for (const e of entries) {
      if (e.type !== EntryType.ConfChange) continue;
      this.confHistory.record(e.index, applyConfChange(this.confHistory.current, decodeConfChange(e.data).change));
      any = true;
    }
    return any;
  }

  /** Moves to `conf`, keeping the progress of members that stay (and of this node while it leads). */
  #setConf(conf: ConfState): void {
    const next = this.log.lastIndex() + 1;
    this.voters = [...conf.voters];
    this.learners = [...conf.learners];
    const members = new Set([...conf.voters, ...conf.learners]);
    for (const id of [...this.progress.keys()]) {
      if (!members.has(id) && !(id === this.id && this.role === Role.Leader)) this.progress.delete(id);
    }
    for (const id of members) {
      const learner = conf.learners.includes(id);
      const pr = this.progress.get(id);
      if (pr === undefined) this.progress.set(id, new Progress(next, this.cfg.inflightCountMax, learner));
      else pr.isLearner = learner;
    }
    if (this.role !== Role.Leader) return;
    // A smaller quorum may commit at once; a new member is sent the log now, not at the next tick.
    this.#maybeCommit();
    if (this.role === Role.Leader) this.#broadcastAppend();
  }

  /**
   * A leader that removed itself keeps leading, without counting itself, until that change is
   * committed (thesis section 4.2.2); then it steps down and hands leadership to the voter whose
   * log is furthest on, if that one holds the whole log, so the cluster need not wait for an
   * election timeout (thesis section 3.10).
   */
  #maybeStepDownRemoved(): boolean {
    if (this.role !== Role.Leader || this.voters.includes(this.id) || this.log.committed < this.confHistory.currentIndex) return false;
    const last = this.log.lastIndex();
    const best = this.voters.find((id) => this.progress.get(id)?.match === last) ?? null;
    if (best !== null) this.#sendTimeoutNow(best);
    this.becomeFollower(this.term, null);
    return true;
  }

  // ---------------------------------------------------------------- role transitions

  #reset(term: Term): void {
    if (this.term !== term) {
      assert(term > this.term, `term went back: ${this.term} -> ${term}`);
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeoutTicks = this.cfg.electionTimeoutTicks + this.cfg.random.nextInt(this.cfg.electionTimeoutTicks);
    this.leadTransferee = null;
    this.votes.clear();
    const next = this.log.lastIndex() + 1;
    for (const [id, pr] of this.progress) {
      pr.becomeProbe();
      pr.match = 0;
      pr.next = next;
      pr.recentActive = id === this.id;
      if (id === this.id) pr.match = this.log.stableLastIndex();
    }
    this.uncommittedBytes = 0;
    this.readOnly.reset();
    this.lease.reset();
    this.readsBeforeFirstCommit = [];
  }

  becomeFollower(term: Term, lead: NodeId | null): void {
    this.#reset(term);
    this.role = Role.Follower;
    this.lead = lead;
  }

  becomePreCandidate(): void {
    assert(this.role !== Role.Leader, 'invalid transition: leader -> pre-candidate');
    // Pre-vote changes neither the term nor the vote (thesis section 9.6): a partitioned node
    // that keeps pre-campaigning does not inflate its term.
    this.votes.clear();
    this.lead = null;
    this.role = Role.PreCandidate;
  }

  becomeCandidate(): void {
    assert(this.role !== Role.Leader, 'invalid transition: leader -> candidate');
    this.#reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  becomeLeader(): void {
    assert(this.role === Role.Candidate, `invalid transition: ${this.role} -> leader`);
    this.#reset(this.term);
    this.role = Role.Leader;
    this.lead = this.id;
    let self = this.progress.get(this.id);
    if (self === undefined) {
      // Elected though the latest (uncommitted) configuration removed it: it leads without
      // counting itself until that change commits (see `promotable`).
      self = new Progress(this.log.lastIndex() + 1, this.cfg.inflightCountMax, false);
      self.match = this.log.stableLastIndex();
      this.progress.set(this.id, self);
    }
    self.becomeReplicate();
    // A no-op entry of the new term (paper section 8): committing it commits everything before
    // it and tells the leader its commit index is current, which ReadIndex relies on.
    this.#appendEntries([{ term: 0, index: 0, type: 'normal', data: EMPTY }]);
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.#tickCount++;
    if (this.role === Role.Leader) this.#tickHeartbeat();
    else this.#tickElection();
  }

  #tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeoutTicks) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  #tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTimeoutTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.#quorumActive()) {
        // Check-quorum (thesis section 6.2): without a quorum in contact, stop acting as leader
        // so clients look elsewhere and a lease is never honoured by a partitioned leader.
        this.becomeFollower(this.term, null);
        return;
      }
      // A transfer that did not finish within an election timeout is abandoned (thesis 3.10).
      if (this.leadTransferee !== null) this.leadTransferee = null;
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0;
      this.#broadcastHeartbeat();
    }
  }

  #quorumActive(): boolean {
    const active = majorityValue(this.voters, (id) => (id === this.id || this.progress.get(id)?.recentActive === true ? 1 : 0));
    for (const [id, pr] of this.progress) pr.recentActive = id === this.id;
    return active === 1;
  }

  /** Starts an election: with pre-vote first unless `transfer` (TimeoutNow) says the leader asked for it. */
  hup(transfer: boolean): void {
    if (this.role === Role.Leader || !this.promotable()) return;
    if (this.cfg.preVote && !transfer) this.#campaign('pre', false);
    else this.#campaign('real', transfer);
  }

  #campaign(kind: 'pre' | 'real', transfer: boolean): void {
    if (kind === 'pre') this.becomePreCandidate();
    else this.becomeCandidate();
    const voteTerm = kind === 'pre' ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (this.#pollResult() !== 'pending') return;
    const type = kind === 'pre' ? 'MsgPreVote' : 'MsgVote';
    for (const id of this.voters) {
      if (id === this.id) continue;
      this.send({ type, to: id, term: voteTerm, index: this.log.lastIndex(), logTerm: this.log.lastTerm(), transfer });
    }
  }

  /** Acts on the votes so far; returns the result. */
  #pollResult(): 'won' | 'lost' | 'pending' {
    const result = voteResult(this.voters, this.votes);
    if (result === 'won') {
      if (this.role === Role.PreCandidate) {
        this.#campaign('real', false);
      } else {
        this.becomeLeader();
        // Announce the new term and ship the no-op now, not at the next heartbeat tick.
        this.#broadcastAppend();
      }
    } else if (result === 'lost') {
      this.becomeFollower(this.term, null);
    }
    return result;
  }

  /** Appends a client command. Returns its (index, term); throws when this node cannot take it. */
  propose(data: Uint8Array): { index: LogIndex; term: Term } {
    if (this.role !== Role.Leader) {
      throw new RaftKvError(ErrorCode.NOT_LEADER, `node ${this.id} is not the leader`, { leaderHint: this.lead });
    }
    if (this.leadTransferee !== null) {
      throw new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `leadership is being transferred to ${this.leadTransferee}`, { leaderHint: this.leadTransferee });
    }
    if (data.byteLength > this.cfg.entryBytesMax) {
      throw new RaftKvError(ErrorCode.ENTRY_TOO_LARGE, `entry of ${data.byteLength} bytes exceeds entryBytesMax ${this.cfg.entryBytesMax}`);
    }
    const size = data.byteLength;
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + size > this.cfg.uncommittedBytesMax) {
      throw new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `too many uncommitted bytes (${this.uncommittedBytes}); retry later`);
    }
    const entry = this.#appendEntries([{ term: 0, index: 0, type: 'normal', data }]);
    this.#broadcastAppend();
    return { index: entry.index, term: entry.term };
  }

  /** Assigns term and index to new leader entries and appends them. Returns the last. */
  #appendEntries(entries: readonly Entry[]): Entry {
    assert(this.role === Role.Leader, 'only a leader appends new entries');
    let index = this.log.lastIndex();
    const stamped = entries.map((e) => ({ ...e, term: this.term, index: ++index }));
    for (const e of stamped) this.uncommittedBytes += e.data.byteLength;
    // The leader's own copy counts towards the quorum only once durable: see `onStable`.
    this.log.append(stamped);
    return stamped[stamped.length - 1]!;
  }

  /**
   * The caller reported entries up to `index` durable. On the leader this is its own vote for
   * those entries (thesis section 10.2.1: the leader may write to disk in parallel with
   * replication, and counts itself once the write is done).
   */
  onStable(index: LogIndex): void {
    if (this.role !== Role.Leader) return;
    const self = this.progress.get(this.id);
    assert(self !== undefined, 'leader is not in its own configuration');
    if (self.maybeUpdate(index) && this.#maybeCommit()) this.#broadcastAppend();
  }

  /**
   * Linearizable read (thesis section 6.4): the answer arrives as a ReadState in a Ready. With
   * `lease`, a leader whose lease holds answers at once from its commit index, relying on the
   * followers' refusal to vote instead of a heartbeat round (thesis section 6.4.1); see
   * `#leaseHolds`. Otherwise, and on followers, a lease read is a ReadIndex read.
   */
  readIndex(context: ReadContext, mode: 'read-index' | 'lease' = 'read-index'): void {
    if (this.role === Role.Leader) {
      if (mode === 'lease' && this.#leaseHolds()) {
        this.#answerRead(this.id, context, this.log.committed);
        return;
      }
      this.#handleReadIndex(this.id, context);
      return;
    }
    if (this.lead === null) throw new RaftKvError(ErrorCode.NOT_LEADER, `node ${this.id} knows no leader`, { leaderHint: null });
    this.send({ type: 'MsgReadIndex', to: this.lead, context });
  }

  /** Leadership transfer (thesis section 3.10). On a follower the request is forwarded to the leader. */
  transferLeadership(transferee: NodeId): void {
    if (!this.voters.includes(transferee)) {
      throw new RaftKvError(ErrorCode.TRANSFER_REJECTED, `${transferee} is not a voter of the cluster`);
    }
    if (this.role !== Role.Leader) {
      if (this.lead === null) throw new RaftKvError(ErrorCode.NOT_LEADER, `node ${this.id} knows no leader`, { leaderHint: null });
      this.send({ type: 'MsgTransferLeader', to: this.lead, transferee });
      return;
    }
    this.#handleTransfer(transferee);
  }

  /** The transport could not deliver to `id`: stop streaming to it until it answers again. */
  reportUnreachable(id: NodeId): void {
    const pr = this.progress.get(id);
    if (this.role !== Role.Leader || pr === undefined || id === this.id) return;
    if (pr.state === 'replicate') pr.becomeProbe();
  }

  /** The transport finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.progress.get(id);
    if (this.role !== Role.Leader || pr === undefined || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    // Wait for the follower's answer (or a heartbeat response) before probing again.
    pr.becomeProbe();
    pr.probeSent = true;
  }

  // ---------------------------------------------------------------- messages

  step(m: Message): void {
    const refusal = malformedMessage(m, this.id) ?? this.#refusal(m);
    if (refusal !== null) {
      this.dropped.set(refusal, (this.dropped.get(refusal) ?? 0) + 1);
      return;
    }
    if (m.term > this.term) {
      if (!this.#acceptHigherTerm(m)) return;
    } else if (m.term < this.term) {
      this.#answerStaleTerm(m);
      return;
    }
    switch (m.type) {
      case 'MsgVote':
      case 'MsgPreVote':
        this.#handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case Role.Leader:
        this.#stepLeader(m);
        return;
      case Role.Candidate:
      case Role.PreCandidate:
        this.#stepCandidate(m);
        return;
      case Role.Follower:
        this.#stepFollower(m);
        return;
      default:
        assertNever(this.role, 'role');
    }
  }

  /**
   * Why `m` cannot be believed given this node's state (see screen.ts), or null. Checked before
   * anything changes: a message that fails is ignored as if it had been lost.
   */
  #refusal(m: Message): DropReason | null {
    switch (m.type) {
      case 'MsgApp':
      case 'MsgHeartbeat':
      case 'MsgSnap':
        // Two leaders in one term would break election safety (paper section 5.2).
        if (this.role === Role.Leader && m.term === this.term) return DropReason.SecondLeader;
        if (m.type === 'MsgApp' && m.term >= this.term) return this.#appendRefusal(m);
        return null;
      case 'MsgAppResp':
        if (this.role === Role.Leader && m.term === this.term && m.index > this.log.lastIndex()) return DropReason.AckBeyondLog;
        return null;
      case 'MsgTimeoutNow':
      case 'MsgReadIndexResp':
        // Only our leader may hand us leadership or answer our reads.
        return m.term === this.term && this.lead !== m.from ? DropReason.NotFromLeader : null;
      default:
        return null;
    }
  }

  /**
   * An append that would bring a configuration change that cannot follow. (One that would rewrite
   * committed entries cannot get this far: `#handleAppend` answers any append that starts below
   * the commit index with the commit index, and appends nothing.)
   */
  #appendRefusal(m: MsgApp): DropReason | null {
    if (m.index < this.log.committed || !this.log.matchTerm(m.index, m.logTerm)) return null; // answered without appending
    const conflict = this.log.findConflict(m.entries);
    if (conflict === 0) return null;
    const appended = m.entries.slice(conflict - m.index - 1);
    return confChangesFollow(this.confHistory.at(conflict - 1), appended) ? null : DropReason.InvalidConfChange;
  }

  /** A message of a higher term. Returns false when it must be ignored. */
  #acceptHigherTerm(m: Message): boolean {
    if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
      // Thesis section 4.2.3: a node that heard from a live leader within the minimum election
      // timeout ignores vote requests, so a removed or partitioned node cannot depose it. Lease
      // reads (section 6.4.1) rely on it. A transfer (TimeoutNow) was asked for by that leader
      // and overrides this; the leader then serves no lease read (`LeaderLease.revoke`).
      if (this.#honoursLease() && !m.transfer) return false;
    }
    if (m.type === 'MsgPreVote') return true; // a pre-vote never changes our term
    if (m.type === 'MsgPreVoteResp' && !m.reject) return true; // the future term is not ours yet
    const fromLeader = m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap';
    this.becomeFollower(m.term, fromLeader ? m.from : null);
    return true;
  }

  /**
   * Whether this node honours a leader's lease (thesis sections 4.2.3 and 6.4.1): it is the
   * leader, or it heard from one (or booted) less than an election timeout ago. A lease counts
   * on it not to help elect another leader meanwhile: it grants no vote and no pre-vote, whatever
   * its term has become since, unless the leader itself asked for the election (`transfer`).
   */
  #honoursLease(): boolean {
    if (!this.cfg.checkQuorum) return false;
    if (this.role === Role.Leader) return true;
    return this.#tickCount - this.#leaderHeardTick < this.cfg.electionTimeoutTicks;
  }

  #answerStaleTerm(m: Message): void {
    if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
      // A deposed leader, cut off while others moved on, learns the new term from this answer.
      // Without it, pre-vote could leave it stranded (nobody would raise its term).
      this.send({ type: 'MsgAppResp', to: m.from, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
    } else if (m.type === 'MsgPreVote') {
      this.send({ type: 'MsgPreVoteResp', to: m.from, reject: true });
    }
    // Anything else from an old term is dropped (paper section 5.1).
  }

  #handleVoteRequest(m: MsgVote): void {
    // We may grant if we already voted for this candidate, if we have not voted and know no
    // leader in this term, or if this is a pre-vote for a later term (no vote is recorded).
    const canVote =
      this.vote === m.from || (this.vote === null && this.lead === null) || (m.type === 'MsgPreVote' && m.term > this.term);
    // A vote already cast is repeated (the candidate may not have heard it); a new one waits for the lease.
    const leaseForbids = this.vote !== m.from && this.#honoursLease() && !m.transfer;
    const respType = m.type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
    if (canVote && !leaseForbids && this.log.isUpToDate(m.index, m.logTerm)) {
      // A pre-vote grant is sent with the term it was asked for, so the pre-candidate counts it.
      this.send({ type: respType, to: m.from, term: m.term, reject: false });
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, reject: true });
    }
  }

  #stepLeader(m: Message): void {
    switch (m.type) {
      case 'MsgAppResp':
        this.#handleAppendResponse(m);
        return;
      case 'MsgHeartbeatResp': {
        const pr = this.progress.get(m.from);
        if (pr === undefined) return;
        pr.recentActive = true;
        pr.probeSent = false;
        // If every append in the window was lost, no acknowledgement will ever free it: free
        // one slot so the next append goes out and its answer resynchronises us.
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirst();
        if (pr.match < this.log.lastIndex()) this.#sendAppend(m.from, true);
        this.lease.recvAck(m.from, m.leaseTick, this.#tickCount);
        const released = this.readOnly.recvAck(m.from, m.readRound, this.id, this.voters);
        for (const read of released) this.#answerRead(read.from, read.context, read.index);
        if (this.readOnly.needsRound()) this.#startReadRound();
        return;
      }
      case 'MsgReadIndex':
        if (this.progress.has(m.from)) this.#handleReadIndex(m.from, m.context);
        return;
      case 'MsgTransferLeader':
        if (this.voters.includes(m.transferee)) this.#handleTransfer(m.transferee);
        return;
      case 'MsgLogLost': {
        const pr = this.progress.get(m.from);
        if (pr === undefined || m.from === this.id || pr.match <= m.lastIndex) return;
        pr.becomeProbeAfterLoss(m.lastIndex);
        this.#sendAppend(m.from, true);
        return;
      }
      case 'MsgApp':
      case 'MsgHeartbeat':
      case 'MsgSnap':
        return; // refused by #refusal: a second leader in this term
      case 'MsgVote':
      case 'MsgPreVote':
      case 'MsgVoteResp':
      case 'MsgPreVoteResp':
      case 'MsgTimeoutNow':
      case 'MsgReadIndexResp':
        return;
      default:
        assertNever(m, 'message');
    }
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case 'MsgApp':
      case 'MsgHeartbeat':
      case 'MsgSnap':
        // Another node won this term (paper section 5.2).
        this.becomeFollower(this.term, m.from);
        this.#stepFollower(m);
        return;
      case 'MsgVoteResp':
      case 'MsgPreVoteResp': {
        const mine = this.role === Role.PreCandidate ? 'MsgPreVoteResp' : 'MsgVoteResp';
        if (m.type !== mine) return;
        if (!this.votes.has(m.from)) this.votes.set(m.from, !m.reject);
        this.#pollResult();
        return;
      }
      case 'MsgAppResp':
      case 'MsgHeartbeatResp':
      case 'MsgTimeoutNow':
      case 'MsgReadIndex':
      case 'MsgReadIndexResp':
      case 'MsgTransferLeader':
      case 'MsgLogLost':
      case 'MsgVote':
      case 'MsgPreVote':
        return;
      default:
        assertNever(m, 'message');
    }
  }

  #stepFollower(m: Message): void {
    switch (m.type) {
      case 'MsgApp':
      case 'MsgHeartbeat':
      case 'MsgSnap':
        // The leader of our term is alive: reset the election timer and remember who it is.
        this.electionElapsed = 0;
        this.#leaderHeardTick = this.#tickCount;
        this.lead = m.from;
        if (m.type === 'MsgApp') this.#handleAppend(m);
        else if (m.type === 'MsgHeartbeat') this.#handleHeartbeat(m);
        else this.#handleSnapshot(m);
        return;
      case 'MsgTimeoutNow':
        // The leader asked us to take over: skip pre-vote, and the vote request overrides the
        // other followers' leader lease (thesis section 3.10).
        this.hup(true);
        return;
      case 'MsgReadIndexResp':
        this.readStates.push({ index: m.index, context: m.context });
        return;
      case 'MsgTransferLeader':
        if (this.lead !== null) this.send({ type: 'MsgTransferLeader', to: this.lead, transferee: m.transferee });
        return;
      case 'MsgAppResp':
      case 'MsgHeartbeatResp':
      case 'MsgVoteResp':
      case 'MsgPreVoteResp':
      case 'MsgReadIndex':
      case 'MsgLogLost':
      case 'MsgVote':
      case 'MsgPreVote':
        return;
      default:
        assertNever(m, 'message');
    }
  }

  // ---------------------------------------------------------------- replication (follower side)

  #handleAppend(m: MsgApp): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index already matches the leader: say so.
      this.send({ type: 'MsgAppResp', to: m.from, index: this.log.committed, reject: false, rejectHint: 0, logTerm: 0 });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({ type: 'MsgAppResp', to: m.from, index: lastNew, reject: false, rejectHint: 0, logTerm: 0 });
      return;
    }
    // Consistency check failed (paper section 5.3). Hint the largest index that may match:
    // the leader then skips a whole conflicting term per round trip instead of one entry.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({ type: 'MsgAppResp', to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  #handleHeartbeat(m: MsgHeartbeat): void {
    const lastIndex = this.log.lastIndex();
    if (m.commit > lastIndex) {
      // The leader caps `commit` at what we acknowledged in this term, so our log lost entries
      // we had made durable: the disk was wiped. Commit nothing we cannot see, and say so.
      this.send({ type: 'MsgLogLost', to: m.from, lastIndex });
    } else if (this.log.matchTerm(m.commit, m.commitTerm)) {
      this.log.commitTo(m.commit);
    } else if (m.commit > this.log.committed) {
      // We hold a different entry where we acknowledged the leader's: the disk was replaced and
      // refilled by someone else (a deposed leader). Commit none of it; our committed prefix is
      // in the leader's log (paper section 5.4), so the leader re-probes from there.
      this.send({ type: 'MsgLogLost', to: m.from, lastIndex: this.log.committed });
    }
    this.send({ type: 'MsgHeartbeatResp', to: m.from, readRound: m.readRound, leaseTick: m.leaseTick });
  }

  #handleSnapshot(m: MsgSnap): void {
    if (this.#restore(m)) {
      this.send({ type: 'MsgAppResp', to: m.from, index: this.log.lastIndex(), reject: false, rejectHint: 0, logTerm: 0 });
    } else {
      // Already have it (or a later commit): report how far we are.
      this.send({ type: 'MsgAppResp', to: m.from, index: this.log.committed, reject: false, rejectHint: 0, logTerm: 0 });
    }
  }

  #restore(m: MsgSnap): boolean {
    const { meta } = m.snapshot;
    if (meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(meta.index, meta.term)) {
      // Our log already holds the snapshot's last entry: keep the entries after it and just
      // fast-forward the commit index (paper section 7).
      this.log.commitTo(meta.index);
      return false;
    }
    this.log.restore(m.snapshot);
    this.confHistory.reset(meta.index, meta.confState);
    this.applyConfState(meta.confState);
    return true;
  }

  // ---------------------------------------------------------------- replication (leader side)

  #handleAppendResponse(m: MsgAppResp): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      // Fast back-off: the follower's hint is where its log may match. Skip to the largest
      // index of our own log at or below the hint whose term is <= the follower's term there.
      let probe = m.rejectHint;
      if (m.logTerm > 0) probe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, probe)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.#sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);

    if (this.#maybeCommit()) this.#broadcastAppend();
    else if (this.role !== Role.Leader) return; // it committed its own removal and stepped down
    else if (wasPaused) this.#sendAppend(m.from, true);
    // Fill the pipeline while the window allows.
    while (this.#sendAppend(m.from, false)) {
      /* keep sending */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.#sendTimeoutNow(m.from);
  }

  /** Recomputes the commit index from the quorum's match indexes; true when it advanced. */
  #maybeCommit(): boolean {
    const quorumIndex = majorityValue(this.voters, (id) => this.progress.get(id)?.match ?? 0);
    if (!this.log.maybeCommit(quorumIndex, this.term)) return false;
    this.#onCommitAdvanced();
    // A leader that just committed its own removal is a follower now: nothing more to send.
    return this.role === Role.Leader;
  }

  #onCommitAdvanced(): void {
    if (this.#maybeStepDownRemoved()) return;
    // The first commit of this term makes held-back reads safe to start (thesis section 6.4).
    if (this.readsBeforeFirstCommit.length > 0 && this.#committedInCurrentTerm()) {
      const held = this.readsBeforeFirstCommit;
      this.readsBeforeFirstCommit = [];
      for (const r of held) this.#handleReadIndex(r.from, r.context);
    }
  }

  #committedInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  /**
   * The leader lease (thesis section 6.4.1): while it holds, no other node can have been elected,
   * so this leader's commit index is the latest. It needs check-quorum (followers refuse votes
   * only with it), an entry of this term committed (before that, the commit index may be behind
   * the cluster's), no MsgTimeoutNow sent in this term, and a heartbeat acknowledged by a
   * majority sent recently enough on this node's clock (`LeaderLease`, `leaseTicks`). Assumes
   * clock rates within `clockDriftMax` of each other, and a caller that brings `tick()` up to its
   * clock before every input (see `RawNode.tick`).
   */
  #leaseHolds(): boolean {
    return this.cfg.checkQuorum && this.#committedInCurrentTerm() && this.lease.holds(this.voters, this.id, this.#tickCount);
  }

  #broadcastAppend(): void {
    for (const id of this.progress.keys()) {
      if (id !== this.id) this.#sendAppend(id, true);
    }
  }

  /**
   * Sends the follower the entries it needs, or a snapshot when they are compacted. With
   * `sendIfEmpty` false, sends only when there are entries. Returns whether a message went out.
   */
  #sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    assert(pr !== undefined, `sendAppend to unknown ${to}`);
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const entries = this.log.entriesFrom(pr.next, this.cfg.msgBytesMax);
    if (prevTerm === undefined || entries === undefined) return this.#sendSnapshot(to, pr);
    if (entries.length === 0 && !sendIfEmpty) return false;
    const last = entries.length > 0 ? entries[entries.length - 1]!.index : prevIndex;
    this.send({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed });
    pr.sentEntries(entries.length, last);
    return true;
  }

  #sendSnapshot(to: NodeId, pr: Progress): boolean {
    // An inactive follower would not receive it: do not tie up the transfer.
    if (!pr.recentActive) return false;
    const snapshot = this.log.snapshot();
    assert(snapshot.meta.index > 0, `entries for ${to} are compacted but there is no snapshot`);
    pr.becomeSnapshot(snapshot.meta.index);
    this.send({ type: 'MsgSnap', to, snapshot });
    return true;
  }

  #broadcastHeartbeat(): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold. With the entry's term,
      // so that it commits only if it holds this very entry; if that is compacted, commit nothing.
      let commit = Math.min(pr.match, this.log.committed);
      let commitTerm = this.log.term(commit);
      if (commitTerm === undefined) [commit, commitTerm] = [0, 0];
      this.send({ type: 'MsgHeartbeat', to: id, commit, commitTerm, readRound: this.readOnly.currentRound, leaseTick: this.#tickCount });
    }
  }

  // ---------------------------------------------------------------- ReadIndex and transfer

  #handleReadIndex(from: NodeId, context: ReadContext): void {
    if (this.voters.length === 1 && this.voters[0] === this.id) {
      // A single voter is always the leader of its term's quorum.
      this.#answerRead(from, context, this.log.committed);
      return;
    }
    if (!this.#committedInCurrentTerm()) {
      // Until the no-op of this term commits, our commit index may be behind the cluster's.
      if (this.readsBeforeFirstCommit.length < READS_BEFORE_FIRST_COMMIT_MAX) this.readsBeforeFirstCommit.push({ from, context });
      return;
    }
    if (this.readOnly.pendingCount >= PENDING_READS_MAX) return; // the caller times out and retries
    if (this.readOnly.add(from, context, this.log.committed)) this.#startReadRound();
  }

  #startReadRound(): void {
    this.readOnly.startRound();
    this.#broadcastHeartbeat();
  }

  #answerRead(from: NodeId, context: ReadContext, index: LogIndex): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ type: 'MsgReadIndexResp', to: from, index, context });
  }

  #handleTransfer(transferee: NodeId): void {
    if (transferee === this.id) return; // already leader
    if (this.leadTransferee === transferee) return; // already in progress
    const pr = this.progress.get(transferee);
    if (pr === undefined || pr.isLearner) return;
    this.leadTransferee = transferee;
    // The transfer must finish within an election timeout, measured from now.
    this.electionElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.#sendTimeoutNow(transferee);
    else this.#sendAppend(transferee, true);
  }

  /** Asks `to` to campaign now, overriding the followers' lease: this leader's lease ends with it. */
  #sendTimeoutNow(to: NodeId): void {
    this.lease.revoke();
    this.send({ type: 'MsgTimeoutNow', to });
  }

  // ---------------------------------------------------------------- output

  /**
   * Queues a message. A leader's appends, heartbeats and snapshots of a durable term may leave
   * before the current Ready is persisted; everything else waits (see `Ready`).
   */
  send(out: OutgoingMessage): void {
    // `out` is a fresh literal at every call site: stamping it in place avoids a copy, and
    // V8 handles spread-with-extra-properties slowly (a third of the core's time in bench:core).
    const m = Object.assign(out, { from: this.id, term: out.term ?? this.term }) as Message;
    assert(m.to !== this.id, `${m.type} addressed to self`);
    if (this.role === Role.Leader && m.term === this.persistedTerm && LEADER_EARLY_TYPES.has(m.type)) this.msgs.push(m);
    else this.msgsAfterPersist.push(m);
  }

  /** Committed entries were applied: they no longer count against the uncommitted limit. */
  reduceUncommittedBytes(entries: readonly Entry[]): void {
    if (this.role !== Role.Leader || this.uncommittedBytes === 0) return;
    for (const e of entries) this.uncommittedBytes = Math.max(0, this.uncommittedBytes - e.data.byteLength);
  }
}

/**
 * Whether `storage` holds nothing but the bootstrap configuration entry (index 1) at term
 * `term`, with no vote cast: a node that has never taken part in an election.
 */
function isOnlyBootstrap(storage: RaftConfig['storage'], term: Term): boolean {
  if (storage.firstIndex() !== 1 || storage.lastIndex() !== 1 || storage.term(1) !== term) return false;
  const [e] = storage.entries(1, 2, Number.MAX_SAFE_INTEGER);
  if (e === undefined || e.type !== EntryType.ConfChange) return false;
  try {
    return decodeConfChange(e.data).change.type === 'bootstrap';
  } catch {
    return false;
  }
}
