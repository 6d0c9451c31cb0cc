/**
 * The Ready loop, once: the code that persists, sends, installs snapshots, applies, answers
 * clients, compacts and advances. The node runs it over LevelDB, TCP and the wall clock; the
 * simulator runs this very code over memory, a simulated network and logical time, so what the
 * simulator checks is what users run.
 *
 * It is an explicit state machine: every input (a message, a tick of the clock, a client
 * request, the completion of an I/O operation) is a method call that changes state and then lets
 * the loop go as far as it can without waiting. Nothing here reads a clock, starts a timer or
 * draws a random number except through the injected `Clock` and `RandomSource`, and I/O completes
 * through callbacks (see io.ts), so a run is a function of the order of its inputs.
 *
 * One Ready at a time (docs/architecture.md, "The Ready loop"):
 *
 *   1. send `messages` (a leader's appends leave while its own fsync runs)
 *   2. install the staged snapshot the Ready names, if any, into the state machine
 *   3. persist snapshot metadata, entries and hard state in one write (group commit: everything
 *      proposed while the previous write was in flight is in this one)
 *   4. send `messagesAfterPersist`
 *   5. apply committed entries; settle the writes they answer and the reads they make servable
 *   6. advance; every `snapshotEveryEntries`, make the state machine durable and compact the log
 */
import type { ApplyResult, StagedSnapshot } from '@raftkv/kv';
import {
  assert,
  encodeConfChange,
  EntryType,
  ErrorCode,
  isRaftKvError,
  RaftKvError,
  RawNode,
  type Role,
  type BasicStatus,
  type ConfChange,
  type Entry,
  type LogIndex,
  type Message,
  type MsgSnap,
  type NodeId,
  type RaftConfig,
  type RandomSource,
  type Ready,
  type SnapshotMeta,
  type Status,
  type Term,
} from '@raftkv/raft';
import type { CommandResult } from '@raftkv/kv';
import type { Clock, Done, ReplicaEvents, ReplicaInbox, ReplicaLog, ReplicaLogger, ReplicaStateMachine, ReplicaTransport } from './io.js';
import { Requests, settle, type ReadRequest, type Request, type WriteRequest } from './requests.js';

export type ReadConsistency = 'linearizable' | 'lease';

export interface ReplicaOptions {
  readonly id: NodeId;
  /** Length of one Raft tick on the replica's clock. */
  readonly tickMs: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  /** Compact the log once this many entries were applied since the last compaction. */
  readonly snapshotEveryEntries: number;
  /** Entries kept behind the compaction point for slightly lagging followers. */
  readonly snapshotCatchupEntries: number;
  /** A request not settled by then fails with RAFTKV_TIMEOUT. */
  readonly requestTimeoutMs: number;
  /** Requests pending at once; beyond it new ones are refused. */
  readonly pendingRequestsMax: number;
  /** Election jitter, and the nonce that makes this incarnation's read contexts unique. */
  readonly random: RandomSource;
  readonly logger: ReplicaLogger;
  /**
   * The voters of a new cluster. A node whose log is empty writes the cluster's first
   * configuration (entry 1) with them; every founding member must be given the same list. Absent
   * (a node joining a running cluster), the node starts with no configuration and learns it from
   * the leader's log. Ignored once the log holds anything.
   */
  readonly bootstrap?: readonly NodeId[];
  /** Further settings of the core (replication windows, limits), passed through. */
  readonly raft?: Omit<RaftConfig, 'id' | 'storage' | 'random' | 'applied' | 'electionTimeoutTicks' | 'heartbeatIntervalTicks'>;
}

export interface ReplicaIO<Image> {
  readonly log: ReplicaLog;
  readonly stateMachine: ReplicaStateMachine<Image>;
  readonly transport: ReplicaTransport;
  readonly clock: Clock;
  readonly events?: ReplicaEvents;
}

export interface ReplicaStatus extends Status {
  /** The state machine's own applied index (it may run ahead of the core's after a snapshot). */
  readonly appliedIndexStateMachine: LogIndex;
  readonly pendingWrites: number;
  readonly pendingReads: number;
}

/**
 * How many ticks one catch-up may deliver. A process that was paused for longer is brought
 * forward only this far (its clock origin moves instead), so it does not replay thousands of
 * heartbeats; the cap is above the core's lease length, so an expired lease still reads as
 * expired. See `#catchUp`.
 */
const CATCH_UP_ELECTION_TIMEOUTS_MAX = 3;

const EMPTY = new Uint8Array(0);

type LoopState = 'running' | 'stopping' | 'stopped' | 'failed';

/** The incoming snapshot, from the start of its staging until it is installed or dropped. */
type IncomingSnapshot =
  | { readonly state: 'staging'; readonly meta: SnapshotMeta }
  | { readonly state: 'staged'; readonly meta: SnapshotMeta; readonly staged: StagedSnapshot }
  | { readonly state: 'discarding'; readonly meta: SnapshotMeta };

export class Replica<Image> implements ReplicaInbox<Image> {
  readonly id: NodeId;
  readonly #opts: ReplicaOptions;
  readonly #raw: RawNode;
  readonly #log: ReplicaLog;
  readonly #sm: ReplicaStateMachine<Image>;
  readonly #transport: ReplicaTransport;
  readonly #clock: Clock;
  readonly #events: ReplicaEvents;
  readonly #logger: ReplicaLogger;
  readonly #requests = new Requests();
  /** Makes read contexts unique to this incarnation: a late answer to a read asked before a restart matches nothing. */
  readonly #nonce: string;
  #readSeq = 0;

  // ---- logical time: the core's ticks follow the clock (see #catchUp)
  #originMs: number;
  #ticks = 0;
  readonly #catchUpTicksMax: number;

  // ---- the loop
  #state: LoopState = 'running';
  /** An I/O operation of the loop is in flight. */
  #busy = false;
  /** What to do when the operation in flight completes; run by the trampoline in #run. */
  #continuation: (() => void) | null = null;
  #running = false;
  #stopped: Done[] = [];
  #incoming: IncomingSnapshot | null = null;
  #lastCompactApplied: LogIndex;

  // ---- observed state
  #role: Role;
  #leader: NodeId | null;
  #term: Term;

  private constructor(options: ReplicaOptions, io: ReplicaIO<Image>, raw: RawNode) {
    this.id = options.id;
    this.#opts = options;
    this.#raw = raw;
    this.#log = io.log;
    this.#sm = io.stateMachine;
    this.#transport = io.transport;
    this.#clock = io.clock;
    this.#events = io.events ?? {};
    this.#logger = options.logger;
    this.#nonce = options.random.nextInt(0x1_0000_0000).toString(36);
    this.#originMs = io.clock.nowMs();
    this.#catchUpTicksMax = CATCH_UP_ELECTION_TIMEOUTS_MAX * options.electionTimeoutTicks;
    this.#lastCompactApplied = io.stateMachine.appliedIndex;
    const st = raw.basicStatus();
    this.#role = st.role;
    this.#leader = st.lead;
    this.#term = st.term;
  }

  /**
   * Brings the log and the state machine into agreement (see `reconcile`) and creates the
   * replica. `done` is called once, with the replica or the reason it cannot start.
   */
  static start<Image>(options: ReplicaOptions, io: ReplicaIO<Image>, done: (error: Error | null, replica: Replica<Image> | null) => void): void {
    bootstrap(io.log, options.bootstrap, (bootError) => {
      if (bootError !== null) return done(bootError, null);
      Replica.#open(options, io, done);
    });
  }

  static #open<Image>(options: ReplicaOptions, io: ReplicaIO<Image>, done: (error: Error | null, replica: Replica<Image> | null) => void): void {
    reconcile(io.log, io.stateMachine, options.logger, (error) => {
      if (error !== null) return done(error, null);
      let replica: Replica<Image>;
      try {
        const commit = Math.max(io.log.initialState().hardState.commit, io.log.firstIndex() - 1);
        const raw = new RawNode({
          ...options.raft,
          id: options.id,
          storage: io.log,
          random: options.random,
          electionTimeoutTicks: options.electionTimeoutTicks,
          heartbeatIntervalTicks: options.heartbeatIntervalTicks,
          // Entries up to the state machine's applied index are skipped when handed out again.
          applied: Math.min(io.stateMachine.appliedIndex, commit),
        });
        replica = new Replica(options, io, raw);
      } catch (e) {
        return done(e instanceof Error ? e : new Error(String(e)), null);
      }
      done(null, replica);
    });
  }

  // ---------------------------------------------------------------- inputs from the owner

  /** Called by the owner's timer, about once a tick (late is fine: ticks follow the clock). */
  onTimer(): void {
    if (this.#state !== 'running') return;
    this.#catchUp();
    this.#expire();
    this.#run();
  }

  /**
   * Proposes an encoded command; `done` gets its result once its entry is applied here, or an
   * error: NOT_LEADER / PROPOSAL_DROPPED / ENTRY_TOO_LARGE (certainly not applied), TIMEOUT or
   * SHUTTING_DOWN (outcome unknown).
   */
  propose(command: Uint8Array, done: (error: Error | null, result: CommandResult | null) => void): void {
    const refused = this.#admit();
    if (refused !== null) return done(refused, null);
    this.#catchUp();
    let proposed: { index: LogIndex; term: Term };
    try {
      proposed = this.#raw.propose(command);
    } catch (error) {
      return done(asError(error), null);
    }
    const write: WriteRequest = { kind: 'write', ...proposed, deadlineMs: this.#deadline(), done, settled: false };
    this.#requests.addWrite(write);
    this.#run();
  }

  /**
   * Proposes a membership change (one server at a time; `RawNode.proposeConfChange`). `done`
   * once its entry is applied here: it is committed, and in force on every node that holds it.
   * Errors: NOT_LEADER, CONF_CHANGE_PENDING, CONF_CHANGE_INVALID, PROPOSAL_DROPPED (certainly
   * not made), TIMEOUT or SHUTTING_DOWN (outcome unknown).
   */
  changeMembership(change: ConfChange, context: Uint8Array, done: (error: Error | null) => void): void {
    const refused = this.#admit();
    if (refused !== null) return done(refused);
    this.#catchUp();
    let proposed: { index: LogIndex; term: Term };
    try {
      proposed = this.#raw.proposeConfChange(change, context);
    } catch (error) {
      return done(asError(error));
    }
    this.#logger.info({ term: this.#term, index: proposed.index, change }, 'membership change proposed');
    const write: WriteRequest = { kind: 'write', ...proposed, deadlineMs: this.#deadline(), done: (error) => done(error), settled: false };
    this.#requests.addWrite(write);
    this.#run();
  }

  /**
   * Waits until a read at `consistency` may be served from the local state machine: `done(null)`
   * once the state machine has applied the read index. Errors: NOT_LEADER (no leader known, or
   * it changed while the read waited), TIMEOUT, SHUTTING_DOWN.
   */
  read(consistency: ReadConsistency, done: Done): void {
    const refused = this.#admit();
    if (refused !== null) return done(refused);
    // A lease is checked against the core's ticks: bring them up to the clock first, so a
    // process that was paused sees its lease expired rather than the time it slept through.
    this.#catchUp();
    const context = `${this.id}:${this.#nonce}:${++this.#readSeq}`;
    try {
      this.#raw.readIndex(context, consistency === 'lease' ? 'lease' : 'read-index');
    } catch (error) {
      return done(asError(error));
    }
    const read: ReadRequest = { kind: 'read', context, deadlineMs: this.#deadline(), index: null, done, settled: false };
    this.#requests.addRead(read);
    this.#run();
  }

  transferLeadership(to: NodeId): void {
    this.#catchUp();
    this.#raw.transferLeadership(to);
    this.#run();
  }

  campaign(): void {
    this.#catchUp();
    this.#raw.campaign();
    this.#run();
  }

  // ---------------------------------------------------------------- inputs from the transport

  step(message: Message): void {
    if (this.#state !== 'running') return;
    if (message.to !== this.id) {
      this.#logger.warn({ to: message.to, from: message.from, type: message.type }, 'message for another node dropped');
      return;
    }
    // A snapshot reaches the core only through receiveSnapshot, once its image is staged.
    if (message.type === 'MsgSnap') {
      this.#logger.warn({ from: message.from, index: message.snapshot.meta.index }, 'snapshot message without its image dropped');
      return;
    }
    this.#catchUp();
    this.#raw.step(message);
    this.#run();
  }

  /**
   * A snapshot's image arrived. It is staged (written to a fresh place, verified), then its
   * MsgSnap is stepped into the core; if the core does not take it, the staged copy is dropped.
   * One incoming snapshot at a time: while one is being staged or waits to be installed, others
   * are refused and their senders retry (replacing a staged image the core already holds would
   * leave the core's Ready naming an image that is gone).
   */
  receiveSnapshot(message: MsgSnap, image: Image, done: Done): void {
    const meta = message.snapshot.meta;
    if (this.#state !== 'running') return done(shuttingDown(this.id));
    // The core may still hold the last one (installed, not yet acknowledged by advance()).
    const busyWith = this.#incoming?.meta ?? this.#raw.pendingSnapshot();
    if (busyWith !== null) {
      return done(transferFailed(`node ${this.id} is already taking the snapshot at ${busyWith.index}; the sender retries`));
    }
    if (meta.index <= this.#raw.basicStatus().commit) {
      // Nothing to stage: the core will not take it (paper section 7), but it answers the leader
      // with how far this log is committed, which moves the leader past its snapshot state.
      this.#catchUp();
      this.#raw.step({ ...message, snapshot: { meta, data: EMPTY } });
      assert(this.#raw.pendingSnapshot()?.index !== meta.index, `the core took snapshot ${meta.index} at or below its commit index`);
      this.#run();
      return done(transferFailed(`node ${this.id} already committed index ${meta.index}`));
    }
    this.#logger.info({ term: this.#term, from: message.from, index: meta.index }, 'receiving snapshot');
    this.#incoming = { state: 'staging', meta };
    this.#sm.stage(meta, image, (error, staged) => {
      if (this.#state !== 'running') {
        if (staged !== null) this.#sm.discard(staged, () => undefined);
        this.#incoming = null;
        return done(error ?? shuttingDown(this.id));
      }
      if (error !== null || staged === null) {
        this.#incoming = null;
        return done(error ?? transferFailed('staging returned nothing'));
      }
      this.#incoming = { state: 'staged', meta, staged };
      this.#catchUp();
      this.#raw.step({ ...message, snapshot: { meta, data: EMPTY } });
      const taken = this.#raw.pendingSnapshot();
      if (taken === null || taken.index !== meta.index || taken.term !== meta.term) {
        // The core already has these entries, or the message is from an old term.
        this.#dropIncoming(staged, meta);
      }
      done(null);
      this.#run();
    });
  }

  snapshotImage(): Image {
    return this.#sm.exportImage();
  }

  snapshotSent(to: NodeId, ok: boolean): void {
    if (this.#state !== 'running') return;
    this.#logger.info({ term: this.#term, to, ok }, 'snapshot sent');
    this.#catchUp();
    this.#raw.reportSnapshot(to, ok);
    this.#run();
  }

  unreachable(to: NodeId): void {
    if (this.#state !== 'running') return;
    this.#raw.reportUnreachable(to);
    this.#run();
  }

  // ---------------------------------------------------------------- observation

  get role(): Role {
    return this.#role;
  }

  get leader(): NodeId | null {
    return this.#leader;
  }

  get term(): Term {
    return this.#term;
  }

  get stopped(): boolean {
    return this.#state === 'stopped' || this.#state === 'failed';
  }

  status(): ReplicaStatus {
    return {
      ...this.#raw.status(),
      appliedIndexStateMachine: this.#sm.appliedIndex,
      pendingWrites: this.#requests.writeCount,
      pendingReads: this.#requests.readCount,
    };
  }

  /** Role, term, leader and log positions: cheap enough to call after every event. */
  basicStatus(): BasicStatus {
    return this.#raw.basicStatus();
  }

  /** Term of the entry at `index` in this replica's log (for checkers). */
  termAt(index: LogIndex): Term | undefined {
    return this.#raw.termAt(index);
  }

  /** Entries [lo, hi) of this replica's log (for checkers). */
  entries(lo: LogIndex, hi: LogIndex): Entry[] {
    return this.#raw.entries(lo, hi);
  }

  /**
   * Stops: every pending request fails with SHUTTING_DOWN (a write may still take effect), no new
   * Ready is taken, and `done` runs once the I/O operation in flight (if any) has completed.
   */
  stop(done: Done): void {
    if (this.#state === 'stopped' || this.#state === 'failed') return done(null);
    this.#stopped.push(done);
    if (this.#state === 'stopping') return;
    this.#state = 'stopping';
    for (const r of this.#requests.takeAll()) settle(r, shuttingDown(this.id));
    if (!this.#busy) this.#finishStop();
  }

  // ---------------------------------------------------------------- the loop

  /**
   * The trampoline: runs continuations of completed I/O and starts the next Ready until the loop
   * must wait. Re-entrant calls (an I/O callback that completes synchronously, an input from an
   * event listener) only leave work for the outer call, so the stack never grows with the number
   * of Readies.
   */
  #run(): void {
    if (this.#running) return;
    this.#running = true;
    try {
      for (;;) {
        if (this.#state === 'failed' || this.#state === 'stopped') break;
        const next = this.#continuation;
        if (next !== null) {
          this.#continuation = null;
          next();
          continue;
        }
        if (this.#busy) break;
        if (this.#state === 'stopping') {
          this.#finishStop();
          break;
        }
        if (!this.#raw.hasReady()) break;
        this.#startReady(this.#raw.ready());
      }
    } finally {
      this.#running = false;
    }
  }

  /** Starts an I/O operation of the loop; `then` runs (through #run) when it succeeded. */
  #io<T>(start: (callback: (error: Error | null, value: T) => void) => void, then: (value: T) => void): void {
    assert(!this.#busy, 'an I/O operation of the loop started while another is in flight');
    this.#busy = true;
    let called = false;
    start((error, value) => {
      assert(!called, 'an I/O callback was called twice');
      called = true;
      this.#busy = false;
      if (error !== null) return this.#fail(error);
      if (this.#state === 'stopping') return this.#finishStop();
      if (this.#state !== 'running') return;
      this.#continuation = () => then(value);
      this.#run();
    });
  }

  #startReady(rd: Ready): void {
    if (rd.softState !== null || rd.hardState !== null) this.#onState(rd);
    if (this.#events.onConfEntries !== undefined) {
      const conf = rd.entries.filter((e) => e.type === EntryType.ConfChange);
      if (conf.length > 0) this.#events.onConfEntries(conf);
    }
    for (const m of rd.messages) this.#transport.send(m);
    if (rd.snapshot !== null) this.#install(rd);
    else this.#persist(rd);
  }

  /**
   * The state machine takes the staged snapshot before the log records it. A crash in between
   * leaves a state machine ahead of its log, which `reconcile` repairs on the next start; the
   * other order would leave a log that claims entries the state machine never saw.
   */
  #install(rd: Ready): void {
    const meta = rd.snapshot!.meta;
    const incoming = this.#incoming;
    assert(incoming !== null && incoming.state === 'staged', `snapshot ${meta.term}/${meta.index} to install, but none is staged`);
    assert(incoming.meta.index === meta.index && incoming.meta.term === meta.term, `snapshot ${meta.term}/${meta.index} to install, but ${incoming.meta.term}/${incoming.meta.index} is staged`);
    if (incoming.staged.meta.index < this.#sm.appliedIndex) {
      // The image is behind this state machine, which can be ahead of the core's commit index
      // (an earlier image from another leader was further on than its snapshot's index). Both
      // hold only committed entries, so the local state already contains everything the image
      // does: keep it, and let the log record the snapshot (entries up to the local applied
      // index are skipped when the log hands them out again).
      this.#logger.info({ term: this.#term, index: meta.index, image: incoming.staged.meta.index, applied: this.#sm.appliedIndex }, 'snapshot image behind the state machine; keeping the state machine');
      this.#dropIncoming(incoming.staged, meta);
      return this.#persist(rd);
    }
    this.#io<void>(
      (cb) => this.#sm.install(incoming.staged, (error) => cb(error, undefined)),
      () => {
        this.#incoming = null;
        this.#lastCompactApplied = this.#sm.appliedIndex;
        this.#logger.info({ term: this.#term, index: meta.index, applied: this.#sm.appliedIndex }, 'snapshot installed');
        this.#persist(rd);
      },
    );
  }

  #persist(rd: Ready): void {
    if (rd.snapshot === null && rd.entries.length === 0 && rd.hardState === null) return this.#afterPersist(rd);
    const write = { snapshot: rd.snapshot, entries: rd.entries, hardState: rd.hardState, sync: rd.mustSync };
    this.#io<void>(
      (cb) => this.#log.persist(write, (error) => cb(error, undefined)),
      () => this.#afterPersist(rd),
    );
  }

  #afterPersist(rd: Ready): void {
    for (const m of rd.messagesAfterPersist) this.#transport.send(m);
    if (rd.committedEntries.length === 0) return this.#afterApply(rd, []);
    this.#io<readonly ApplyResult[]>(
      (cb) => this.#sm.apply(rd.committedEntries, cb),
      (results) => this.#afterApply(rd, results),
    );
  }

  #afterApply(rd: Ready, results: readonly ApplyResult[]): void {
    this.#settleWrites(rd.committedEntries, results);
    for (const rs of rd.readStates) {
      const read = this.#requests.readIndexed(rs.context, rs.index);
      if (read !== null) this.#requests.waitForApply(read);
    }
    for (const read of this.#requests.takeApplied(this.#sm.appliedIndex)) settle(read, null);
    this.#raw.advance();
    this.#maybeCompact();
  }

  #settleWrites(entries: readonly Entry[], results: readonly ApplyResult[]): void {
    assert(entries.length === results.length, `apply returned ${results.length} results for ${entries.length} entries`);
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      const applied = results[k]!;
      assert(applied.index === e.index, `apply result for ${applied.index} in the place of ${e.index}`);
      for (const write of this.#requests.takeWrites(e.index)) {
        if (write.term !== e.term) {
          // Another entry took the index, and it is committed: this write is gone from every log.
          settle(write, new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `leadership changed before index ${e.index} committed; the write was not applied`, { leaderHint: this.#leader }));
        } else if (e.type === EntryType.ConfChange) {
          // A membership change has no result: applied is done.
          settle(write, null);
        } else if (applied.result === null) {
          // The state machine already held this very entry (it came with a snapshot taken past
          // it), so the write took effect, but its result was computed elsewhere. Saying
          // "not applied" here would be a lie a client could turn into a lost update.
          settle(write, new RaftKvError(ErrorCode.TIMEOUT, `the write at index ${e.index} took effect through a snapshot; its result is unknown here (read the key to see it)`));
        } else {
          settle(write, null, applied.result);
        }
      }
    }
  }

  /**
   * Every `snapshotEveryEntries` applied entries, the log drops what the state machine holds,
   * keeping `snapshotCatchupEntries` for lagging followers. The state machine is made durable
   * first: its applies are written without sync, and once the log has dropped an entry a power
   * loss must not take the state machine back behind it.
   */
  #maybeCompact(): void {
    const applied = this.#sm.appliedIndex;
    if (applied - this.#lastCompactApplied < this.#opts.snapshotEveryEntries) return;
    this.#lastCompactApplied = applied;
    const index = Math.min(applied - this.#opts.snapshotCatchupEntries, this.#raw.basicStatus().applied);
    if (index < this.#log.firstIndex()) return;
    let meta: SnapshotMeta;
    try {
      meta = this.#raw.snapshotMeta(index);
    } catch (error) {
      if (isRaftKvError(error, ErrorCode.LOG_COMPACTED)) return; // a newer snapshot is being installed
      throw error;
    }
    this.#io<void>(
      (cb) => this.#sm.sync((error) => cb(error, undefined)),
      () =>
        this.#io<void>(
          (cb) => this.#log.compact(meta, (error) => cb(error, undefined)),
          () => this.#logger.info({ term: this.#term, index, applied }, 'log compacted'),
        ),
    );
  }

  #onState(rd: Ready): void {
    const term = rd.hardState?.term ?? this.#term;
    this.#term = term;
    const soft = rd.softState;
    if (soft === null) return;
    const roleChanged = soft.role !== this.#role;
    const leaderChanged = soft.lead !== this.#leader;
    const previousRole = this.#role;
    this.#role = soft.role;
    this.#leader = soft.lead;
    if (roleChanged) this.#logger.info({ term, role: soft.role, leader: soft.lead, previousRole }, 'role changed');
    if (leaderChanged) {
      this.#logger.info({ term, leader: soft.lead }, 'leader changed');
      // Reads not yet confirmed were asked of the old leader, which drops them: fail them now
      // so callers retry at once instead of waiting for the timeout.
      for (const read of this.#requests.takeUnindexedReads()) {
        settle(read, new RaftKvError(ErrorCode.NOT_LEADER, 'leadership changed while the read was pending; retry', { leaderHint: soft.lead }));
      }
    }
    if (roleChanged || leaderChanged) this.#events.onRoleChange?.({ role: soft.role, term, leader: soft.lead, roleChanged, leaderChanged });
  }

  #dropIncoming(staged: StagedSnapshot, meta: SnapshotMeta): void {
    this.#incoming = { state: 'discarding', meta };
    this.#sm.discard(staged, (error) => {
      if (error !== null) this.#logger.warn({ err: error, index: meta.index }, 'discarding a staged snapshot failed');
      this.#incoming = null;
    });
  }

  // ---------------------------------------------------------------- time

  /**
   * Brings the core's ticks up to the clock. Called before every input, so the core never acts
   * on time that has passed without its knowing: a follower that hears its leader after a pause
   * starts its election timer from now, not from before the pause, and a leader asked for a
   * lease read after a pause sees the lease expired. Past `#catchUpTicksMax`, the clock's origin
   * moves forward instead (only the core's relative time matters).
   */
  #catchUp(): void {
    const due = Math.floor((this.#clock.nowMs() - this.#originMs) / this.#opts.tickMs);
    let behind = due - this.#ticks;
    if (behind <= 0) return;
    if (behind > this.#catchUpTicksMax) {
      this.#originMs += (behind - this.#catchUpTicksMax) * this.#opts.tickMs;
      behind = this.#catchUpTicksMax;
    }
    for (let k = 0; k < behind; k++) this.#raw.tick();
    this.#ticks += behind;
  }

  #deadline(): number {
    return this.#clock.nowMs() + this.#opts.requestTimeoutMs;
  }

  #expire(): void {
    for (const r of this.#requests.takeExpired(this.#clock.nowMs())) {
      const message =
        r.kind === 'write'
          ? `write at index ${r.index} not applied within ${this.#opts.requestTimeoutMs} ms; it may still take effect`
          : r.index === null
            ? `read not confirmed within ${this.#opts.requestTimeoutMs} ms`
            : `read index ${r.index} not applied on ${this.id} within ${this.#opts.requestTimeoutMs} ms`;
      settle(r, new RaftKvError(ErrorCode.TIMEOUT, message));
    }
  }

  // ---------------------------------------------------------------- lifecycle

  #admit(): RaftKvError | null {
    if (this.#state !== 'running') return shuttingDown(this.id);
    if (this.#requests.count >= this.#opts.pendingRequestsMax) {
      return new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `node ${this.id} has ${this.#opts.pendingRequestsMax} requests pending; retry later`);
    }
    return null;
  }

  /** A write to the log or the state machine failed: this replica can no longer keep its promises. */
  #fail(error: Error): void {
    if (this.#state === 'failed' || this.#state === 'stopped') return;
    this.#logger.fatal({ err: error, term: this.#term }, 'ready loop failed; stopping the node');
    const wasStopping = this.#state === 'stopping';
    this.#state = 'failed';
    for (const r of this.#requests.takeAll()) settle(r, failedNode(this.id, error));
    for (const done of this.#stopped.splice(0)) done(null);
    if (!wasStopping) this.#events.onFatal?.(error);
  }

  #finishStop(): void {
    if (this.#state !== 'stopping') return;
    this.#state = 'stopped';
    const incoming = this.#incoming;
    if (incoming !== null && incoming.state === 'staged') this.#sm.discard(incoming.staged, () => undefined);
    this.#incoming = null;
    for (const done of this.#stopped.splice(0)) done(null);
  }
}

/**
 * A founding member's first start: the log is empty, so it writes the cluster's first
 * configuration as the committed entry 1 of term 1 (so that a node joining later learns it from
 * the log, like every later change). Every founding member writes the very same entry (the
 * voters, sorted, and nothing else), so their logs agree. The first election is in term 2.
 */
export function bootstrap(log: ReplicaLog, voters: readonly NodeId[] | undefined, done: Done): void {
  const { hardState, confState } = log.initialState();
  const empty = hardState.term === 0 && log.lastIndex() === 0 && confState.voters.length === 0 && confState.learners.length === 0;
  if (voters === undefined || !empty) return done(null);
  const sorted = [...new Set(voters)].sort();
  assert(sorted.length === voters.length && sorted.length > 0, 'bootstrap voters are distinct and not empty');
  const entry: Entry = { index: BOOTSTRAP_INDEX, term: BOOTSTRAP_TERM, type: EntryType.ConfChange, data: encodeConfChange({ type: 'bootstrap', voters: sorted }) };
  log.persist({ snapshot: null, entries: [entry], hardState: { term: BOOTSTRAP_TERM, vote: null, commit: BOOTSTRAP_INDEX }, sync: true }, done);
}

const BOOTSTRAP_INDEX = 1;
const BOOTSTRAP_TERM = 1;

/**
 * Repairs the one state a crash can leave the two stores in, and refuses the one it cannot:
 *
 * - The state machine installed a snapshot from the leader but the log did not record it (a crash
 *   between steps 2 and 3): the state machine's applied index is past the log's commit index. The
 *   log is brought up to it by recording a snapshot there; everything at or below it is committed,
 *   since a leader only sends committed state.
 * - The state machine is behind the log's first index: the entries between are gone, and the
 *   state machine can never catch up from this log. Only a lost or replaced state machine
 *   directory does this (the replica syncs the state machine before it compacts the log).
 */
export function reconcile<Image>(log: ReplicaLog, sm: ReplicaStateMachine<Image>, logger: ReplicaLogger, done: Done): void {
  const { hardState } = log.initialState();
  const commit = Math.max(hardState.commit, log.firstIndex() - 1);
  if (sm.appliedIndex < log.firstIndex() - 1) {
    return done(
      new RaftKvError(
        ErrorCode.STORAGE_CORRUPT,
        `the state machine has applied up to index ${sm.appliedIndex}, but the log begins after index ${log.firstIndex() - 1}: ` +
          `entries ${sm.appliedIndex + 1}..${log.firstIndex() - 1} are gone, so the state machine cannot catch up (was its data directory removed or replaced?)`,
      ),
    );
  }
  if (sm.appliedIndex <= commit) return done(null);
  logger.warn({ applied: sm.appliedIndex, commit }, 'state machine is ahead of the log; recording its snapshot in the log');
  // The configuration at that index is the state machine's: the log may not reach that far.
  const snapshot = { meta: { index: sm.appliedIndex, term: sm.appliedTerm, confState: sm.confState }, data: EMPTY };
  log.persist({ snapshot, entries: [], hardState: null, sync: true }, done);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function shuttingDown(id: NodeId): RaftKvError {
  return new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${id} is shutting down`);
}

function failedNode(id: NodeId, cause: Error): RaftKvError {
  return new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${id} stopped after a storage failure; a write may still take effect`, { cause });
}

function transferFailed(message: string): RaftKvError {
  return new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, message);
}

export type { Request };
