import { decodeCommand, encodeCommand, type MemoryImage } from '@raftkv/kv';
import {
  MemoryReplicaLog,
  MemoryReplicaStateMachine,
  Replica,
  type IoOperation,
  type IoScheduler,
  type ReadConsistency,
  type ReplicaLogger,
  type ReplicaOptions,
} from '@raftkv/node';
import { ErrorCode, isRaftKvError, Role, SeededRandom, type BasicStatus, type ConfChange, type Entry, type Message, type MsgSnap, type NodeId, type Term } from '@raftkv/raft';
import { checkLinearizable, formatHistory, type Operation } from '../linearizability/index.js';
import { EventQueue } from './heap.js';
import { CheckedLog, CheckedStateMachine } from './checked-io.js';
import { FAULT_KINDS, PROCESS_FAULT_KINDS, SIM_DEFAULTS, type FaultKind, type SimOptions } from './options.js';
import { SafetyChecker, type RegisterWrite, type Violation } from './safety.js';
import { Trace } from './trace.js';

export interface SimViolation extends Violation {
  readonly step: number;
  readonly time: number;
}

export interface SimStats {
  steps: number;
  timeUnits: number;
  faults: Partial<Record<FaultKind, number>>;
  elections: number;
  committed: number;
  crashes: number;
  snapshotsSent: number;
  snapshotsInstalled: number;
  snapshotsRefused: number;
  /** Restarts that found the state machine ahead of the log and recorded its snapshot (a crash between install and persist). */
  reconciles: number;
  /** Membership changes applied on the leader that proposed them. */
  membershipChanges: number;
  messagesDelivered: number;
  messagesDropped: number;
  writesOk: number;
  writesIndeterminate: number;
  readsOk: number;
  leaseReadsOk: number;
  /** Ticks from the end of the faults until every probe proposal was applied everywhere. */
  recoveryTicks: number | null;
  linearizability: 'ok' | 'illegal' | 'unknown' | 'skipped';
}

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly violation: SimViolation | null;
  readonly stats: SimStats;
  /** The events that led to the violation (empty for a passing run). */
  readonly trace: string;
}

interface SimEvent {
  readonly time: number;
  readonly seq: number;
  readonly run: () => void;
}

/**
 * One simulated server: its disk (a log and a state machine that outlive crashes, minus what a
 * crash loses) and, while it runs, a `Replica` — the node's own Ready loop — over them.
 */
interface SimNode {
  readonly id: NodeId;
  readonly rng: SeededRandom;
  readonly log: MemoryReplicaLog;
  readonly sm: MemoryReplicaStateMachine;
  /** Node clock = offset + simulated time x rate. */
  readonly clockRate: number;
  readonly clockOffsetMs: number;
  replica: Replica<MemoryImage> | null;
  state: 'up' | 'starting' | 'down';
  incarnation: number;
  /** Stopped (SIGSTOP): events for it wait in `deferred` until it resumes. */
  paused: boolean;
  deferred: (() => void)[];
  /** Crash right after the next completion of this operation of its Ready loop. */
  crashAfter: IoOperation | null;
  slowDisk: boolean;
  /** A founding member (bootstraps the cluster), or a spare machine a membership change may add. */
  readonly founding: boolean;
  /** Removed from the cluster (the removal committed) and shut down for good. */
  retired: boolean;
  role: Role;
  term: Term;
  commitSeen: number;
}

type MutableOp = { -readonly [K in keyof Operation]: Operation[K] };

const KEYS = ['x', 'y', 'z'];
const PROBES = 3;
const decoder = new TextDecoder();

/** The register write a committed entry makes, if any (every command of the simulator is a put). */
function registerWrite(entry: Entry): RegisterWrite | null {
  if (entry.data.byteLength === 0) return null;
  try {
    const command = decodeCommand(entry.data);
    return command.type === 'put' ? { key: command.key, value: decoder.decode(command.value) } : null;
  } catch {
    return null;
  }
}

/**
 * A deterministic simulation of a raftkv cluster that runs the node's own Ready loop (`Replica`)
 * over in-memory disks, a simulated network and per-node clocks: the nodes, the network, the
 * disks' latencies and the faults all draw from one seed, so a run is a pure function of (seed,
 * options) and a failing seed replays the same way every time. Safety properties are checked
 * after every event, linearizability of every read (ReadIndex and lease) at the end, and
 * liveness once the faults stop.
 */
export class Simulation {
  readonly opts: SimOptions;
  readonly #rng: SeededRandom;
  readonly #netRng: SeededRandom;
  readonly #nodes: SimNode[] = [];
  readonly #byId = new Map<NodeId, SimNode>();
  readonly #queue = new EventQueue<SimEvent>();
  readonly #checker = new SafetyChecker(registerWrite);
  readonly #trace: Trace;
  readonly #history: MutableOp[] = [];
  readonly #replicaSettings: Pick<ReplicaOptions, 'snapshotEveryEntries' | 'snapshotCatchupEntries' | 'raft'>;
  readonly #founding: readonly NodeId[];
  #seq = 0;
  #step = 0;
  #now = 0;
  #violation: SimViolation | null = null;

  // network state
  #blocked = new Set<string>();
  /** Spares a membership change ever tried to add (they run from then on, member or not). */
  readonly #everAdded = new Set<NodeId>();
  /** Snapshot streams under way, by receiver: a crash of the receiver fails them. */
  readonly #streams = new Set<{ readonly to: NodeId; readonly fail: (why: string) => void }>();
  #lossP = 0;
  #dupP = 0;
  #delayMax = 5;

  // liveness phase
  #healTime: number | null = null;
  #churnUntil = 0;
  /** While a vote-crash fault runs: the chance that a voter loses power as its vote grant leaves. */
  #voteCrashP = 0;
  /** Clients send nothing before this time (a quiet cluster: logs stay the same length). */
  #quietUntil = 0;
  /** A lease-bridge fault waiting for the cut-off node's pre-vote to the bridge. */
  #bridgeTrap: { readonly candidate: NodeId; readonly bridge: SimNode; readonly leader: NodeId; readonly until: number } | null = null;
  /** Each probe, and the term of the leader that last accepted it (re-proposed on a new term). */
  #probes: { value: string; acceptedTerm: Term | null }[] = [];
  #done = false;

  readonly stats: SimStats = {
    steps: 0,
    timeUnits: 0,
    faults: {},
    elections: 0,
    committed: 0,
    crashes: 0,
    snapshotsSent: 0,
    snapshotsInstalled: 0,
    snapshotsRefused: 0,
    reconciles: 0,
    membershipChanges: 0,
    messagesDelivered: 0,
    messagesDropped: 0,
    writesOk: 0,
    writesIndeterminate: 0,
    readsOk: 0,
    leaseReadsOk: 0,
    recoveryTicks: null,
    linearizability: 'skipped',
  };

  readonly #stopAtStep: number | null;

  constructor(options: Partial<SimOptions> & { seed: number; stopAtStep?: number }) {
    const { stopAtStep, ...rest } = options;
    this.opts = { ...SIM_DEFAULTS, ...rest };
    this.#stopAtStep = stopAtStep ?? null;
    this.#rng = new SeededRandom(this.opts.seed);
    this.#netRng = this.#rng.fork();
    this.#trace = new Trace(this.opts.traceEvents);
    const ids = Array.from({ length: this.opts.nodes + this.opts.spares }, (_, k) => `n${k + 1}`);
    this.#founding = ids.slice(0, this.opts.nodes);
    // Replication settings are drawn per seed: small messages and windows split batches, which
    // exposes commit-rule and back-off bugs that large batches hide; frequent compaction makes
    // followers catch up by snapshot.
    this.#replicaSettings = {
      snapshotEveryEntries: this.opts.snapshotEveryEntries > 0 ? this.opts.snapshotEveryEntries : 5 + this.#rng.nextInt(60),
      snapshotCatchupEntries: [0, 0, 2, 10][this.#rng.nextInt(4)]!,
      raft: {
        msgBytesMax: [1, 64, 256, 4096, 1 << 20][this.#rng.nextInt(5)]!,
        inflightCountMax: [1, 2, 8, 256][this.#rng.nextInt(4)]!,
        clockDriftMax: this.opts.clockDriftMax,
      },
    };
    const drift = this.opts.clockDriftMax;
    for (const id of ids) {
      const rng = this.#rng.fork();
      const node: SimNode = {
        id,
        rng,
        log: new MemoryReplicaLog({ voters: [], learners: [] }, this.#ioScheduler(id)),
        sm: new MemoryReplicaStateMachine({}, this.#ioScheduler(id)),
        // The extremes of the allowed drift are the interesting cases: draw them often.
        clockRate: 1 + drift * [-1, 1, -1 + 2 * rng.nextFloat()][rng.nextInt(3)]!,
        clockOffsetMs: rng.nextInt(1_000_000),
        replica: null,
        state: 'down',
        incarnation: 0,
        paused: false,
        deferred: [],
        crashAfter: null,
        slowDisk: false,
        founding: this.#founding.includes(id),
        retired: false,
        role: Role.Follower,
        term: 0,
        commitSeen: 0,
      };
      this.#nodes.push(node);
      this.#byId.set(id, node);
    }
  }

  run(): SimResult {
    for (const node of this.#nodes) {
      if (node.founding) this.#start(node);
      this.#scheduleTimer(node, 1 + this.#rng.nextInt(this.opts.tickUnits));
    }
    this.#scheduleClient(20);
    this.#planFaults();
    this.#at(this.opts.faultUnits, () => this.#heal());
    const deadline = this.opts.faultUnits + this.opts.livenessTicksMax * this.opts.tickUnits;
    this.#at(deadline, () => this.#checkLiveness(true));
    try {
      while (this.#violation === null && !this.#done) {
        if (this.#stopAtStep !== null && this.#step >= this.#stopAtStep) break;
        const event = this.#queue.pop();
        if (event === undefined) break;
        this.#now = event.time;
        this.#step++;
        event.run();
        if (this.#violation === null) this.#checkNodes();
      }
    } catch (error) {
      // An assertion failure in the core or the loop (or any exception) is a bug: report it with
      // the seed and the trace, like any other violation.
      const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.#fail({ property: 'no exception', detail });
    }
    this.stats.steps = this.#step;
    this.stats.timeUnits = this.#now;
    this.stats.elections = this.#checker.elections;
    this.stats.committed = this.#checker.maxCommitted;
    if (this.#stopAtStep !== null) return this.#result(this.#trace.render());
    if (this.#violation === null) this.#checkHistory();
    if (this.#violation === null) return this.#result('');
    if (this.#violation.property !== 'linearizability') return this.#result(this.#trace.render());
    // The history is checked after the run; replaying the same seed (runs are deterministic)
    // up to the step of the offending operation gives the events that led to it.
    const replay = new Simulation({ ...this.opts, stopAtStep: this.#violation.step }).run();
    return this.#result(replay.trace);
  }

  #result(trace: string): SimResult {
    return { seed: this.opts.seed, nodes: this.opts.nodes, violation: this.#violation, stats: this.stats, trace };
  }

  // ---------------------------------------------------------------- scheduling

  #at(time: number, run: () => void): void {
    this.#queue.push({ time, seq: this.#seq++, run });
  }

  #after(delay: number, run: () => void): void {
    this.#at(this.#now + delay, run);
  }

  /** Runs `fn` as the node's process would: now, or when it resumes if it is paused. */
  #onNode(node: SimNode, fn: () => void): void {
    if (node.paused) node.deferred.push(fn);
    else fn();
  }

  #note(node: NodeId | null, text: string): void {
    this.#trace.add({ kind: 'note', step: this.#step, time: this.#now, node, text });
  }

  #fail(v: Violation): void {
    if (this.#violation !== null) return;
    this.#violation = { ...v, step: this.#step, time: this.#now };
    this.#note(null, `VIOLATION ${v.property}: ${v.detail}`);
  }

  /** The node's clock fires about once a tick (late by a little: timers never fire early). */
  #scheduleTimer(node: SimNode, delay: number): void {
    this.#after(delay, () => {
      if (node.state === 'up' && !node.paused) node.replica?.onTimer();
      this.#scheduleTimer(node, Math.max(1, Math.round(this.opts.tickUnits / node.clockRate)) + this.#rng.nextInt(2));
    });
  }

  /** When each disk operation of a node completes: a few time units, much more on a slow disk. */
  #ioScheduler(id: NodeId): IoScheduler {
    return (operation, complete) => {
      const node = this.#byId.get(id)!;
      let latency = operation === 'stage' ? 5 + this.#rng.nextInt(40) : 1 + this.#rng.nextInt(3);
      if (node.slowDisk) latency *= 5 + this.#rng.nextInt(16);
      this.#after(latency, () =>
        this.#onNode(node, () => {
          complete();
          if (node.crashAfter === operation && node.state === 'up') {
            node.crashAfter = null;
            this.#crash(node, `right after ${operation}`, this.#rng.chance(0.5));
          }
        }),
      );
    };
  }

  // ---------------------------------------------------------------- node lifecycle

  #start(node: SimNode): void {
    if (node.state !== 'down') return;
    node.state = 'starting';
    const incarnation = node.incarnation;
    const options: ReplicaOptions = {
      ...this.#replicaSettings,
      id: node.id,
      tickMs: this.opts.tickUnits,
      electionTimeoutTicks: this.opts.electionTimeoutTicks,
      heartbeatIntervalTicks: this.opts.heartbeatIntervalTicks,
      requestTimeoutMs: 40 * this.opts.tickUnits,
      pendingRequestsMax: 1_000,
      random: node.rng.fork(),
      logger: this.#logger(node.id),
      ...(node.founding ? { bootstrap: this.#founding } : {}),
    };
    const io = {
      log: new CheckedLog(node.log, (entries, prevTermOf) => this.#checker.onEntries(node.id, entries, prevTermOf), (v) => this.#fail(v)),
      stateMachine: new CheckedStateMachine(node.sm, node.id, this.#checker, (v) => this.#fail(v), () => this.stats.snapshotsInstalled++),
      transport: { send: (m: Message) => this.#send(m) },
      clock: { nowMs: () => node.clockOffsetMs + this.#now * node.clockRate },
      events: { onFatal: (error: Error) => this.#fail({ property: 'no exception', detail: `${node.id}: the Ready loop failed: ${error.stack ?? error.message}` }) },
    };
    Replica.start(options, io, (error, replica) => {
      if (node.incarnation !== incarnation) return;
      if (error !== null || replica === null) {
        return this.#fail({ property: 'no exception', detail: `${node.id} could not start: ${error?.stack ?? 'no replica'}` });
      }
      node.replica = replica;
      node.state = 'up';
      const st = replica.basicStatus();
      node.role = st.role;
      node.term = st.term;
      node.commitSeen = st.commit;
      this.#note(node.id, `STARTED term=${st.term} commit=${st.commit} applied=${node.sm.appliedIndex} first=${st.firstIndex} last=${st.lastIndex}`);
    });
  }

  /** The replica's warnings go into the trace (info is too chatty for it). */
  #logger(id: NodeId): ReplicaLogger {
    return {
      info: () => undefined,
      warn: (fields, message) => {
        if (message.startsWith('state machine is ahead of the log')) this.stats.reconciles++;
        this.#note(id, `warn: ${message} ${JSON.stringify(fields)}`);
      },
      fatal: (fields, message) => this.#note(id, `fatal: ${message} ${JSON.stringify(fields)}`),
    };
  }

  /**
   * Kills the node. A process crash keeps every write that completed (it reached the operating
   * system) and any prefix of those in flight; a power loss keeps any prefix of what was not
   * synced. Writes, reads and snapshot streams it had in progress are gone with it.
   */
  #crash(node: SimNode, why: string, powerLoss: boolean): void {
    if (node.state === 'down') return;
    this.stats.crashes++;
    const written = node.log.writtenCount;
    const pending = written + node.log.inFlightCount;
    const keptLog = powerLoss ? this.#rng.nextInt(pending + 1) : written + this.#rng.nextInt(pending - written + 1);
    const unsynced = node.sm.kv.unsyncedBatchCount;
    const keptKv = powerLoss ? this.#rng.nextInt(unsynced + 1) : unsynced;
    this.#note(node.id, `CRASH (${why}${powerLoss ? ', power lost' : ''}): log keeps ${keptLog}/${pending} unsynced writes, state machine ${keptKv}/${unsynced}`);
    node.replica = null;
    node.state = 'down';
    node.incarnation++;
    node.paused = false;
    node.deferred = [];
    node.crashAfter = null;
    node.log.crash(keptLog);
    node.sm.crash(keptKv);
    for (const stream of [...this.#streams]) if (stream.to === node.id) stream.fail('receiver crashed');
  }

  #restart(node: SimNode): void {
    if (node.state !== 'down' || node.retired) return;
    // A spare that was never added stays off.
    if (!node.founding && !this.#everAdded.has(node.id)) return;
    this.#note(node.id, 'RESTART');
    this.#start(node);
  }

  #pause(node: SimNode, until: number): void {
    if (node.state === 'down' || node.paused) return;
    node.paused = true;
    const incarnation = node.incarnation;
    this.#note(node.id, `PAUSE until t=${until}`);
    this.#at(until, () => this.#resume(node, incarnation));
  }

  #resume(node: SimNode, incarnation: number): void {
    if (node.incarnation !== incarnation || !node.paused) return;
    node.paused = false;
    this.#note(node.id, `RESUME with ${node.deferred.length} deferred events`);
    const deferred = node.deferred;
    node.deferred = [];
    // A resumed process runs its overdue timer and what queued up, in order; which comes first
    // depends on where in its loop the process was stopped (woken in its poll phase, it runs
    // I/O callbacks before timers). The replica must be right either way.
    const timerFirst = this.#rng.chance(0.5);
    if (timerFirst) node.replica?.onTimer();
    for (const fn of deferred) {
      if (node.incarnation !== incarnation) break;
      fn();
    }
    if (!timerFirst && node.incarnation === incarnation) node.replica?.onTimer();
  }

  // ---------------------------------------------------------------- checks

  #checkNodes(): void {
    for (const node of this.#nodes) {
      if (node.state !== 'up' || node.replica === null) continue;
      this.#checkNode(node, node.replica);
      if (this.#violation !== null) return;
    }
  }

  #checkNode(node: SimNode, replica: Replica<MemoryImage>): void {
    const st: BasicStatus = replica.basicStatus();
    if (st.role === Role.Leader) {
      const newly = node.role !== Role.Leader || node.term !== st.term;
      if (newly) {
        this.#note(node.id, `became leader of term ${st.term} (last index ${st.lastIndex}, commit ${st.commit})`);
        if (this.#now < this.#churnUntil && this.#healTime === null && this.#rng.chance(0.8)) this.#churn(node);
      }
      const v = this.#checker.onLeader(replica, st, newly);
      if (v !== null) return this.#fail(v);
    } else if (node.role !== st.role) {
      this.#note(node.id, `${st.role} term=${st.term}`);
    }
    node.role = st.role;
    node.term = st.term;
    if (st.commit !== node.commitSeen) {
      const lo = Math.max(node.commitSeen + 1, st.firstIndex);
      const entries = st.commit >= lo ? replica.entries(lo, st.commit + 1) : [];
      const v = this.#checker.onCommit(node.id, node.commitSeen, st.commit, entries, st.term);
      if (v !== null) return this.#fail(v);
      node.commitSeen = st.commit;
    }
  }

  // ---------------------------------------------------------------- network

  #linkBlocked(from: NodeId, to: NodeId): boolean {
    return this.#blocked.has(`${from}>${to}`);
  }

  #drop(m: Message, why: string): void {
    this.stats.messagesDropped++;
    this.#trace.add({ kind: 'drop', step: this.#step, time: this.#now, message: m, why });
  }

  #send(m: Message): void {
    this.#springTraps(m);
    if (m.type === 'MsgSnap') return this.#sendSnapshot(m);
    if (this.#linkBlocked(m.from, m.to)) return this.#drop(m, 'partition');
    if (this.#lossP > 0 && this.#netRng.chance(this.#lossP)) return this.#drop(m, 'loss');
    const copies = this.#dupP > 0 && this.#netRng.chance(this.#dupP) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      this.#after(1 + this.#netRng.nextInt(this.#delayMax), () => this.#deliver(m));
    }
  }

  /**
   * Faults keyed to a message leaving: a voter that loses power as its grant leaves (the vote must
   * have been durable before it left), and the lease-bridge trap (see `#leaseBridge`).
   */
  #springTraps(m: Message): void {
    if (this.#healTime !== null) return;
    if (m.type === 'MsgVoteResp' && !m.reject && this.#voteCrashP > 0 && this.#rng.chance(this.#voteCrashP)) {
      const voter = this.#byId.get(m.from)!;
      this.#after(0, () => {
        if (voter.state !== 'up' || this.#healTime !== null) return;
        this.#crash(voter, `right after its vote for ${m.to} left`, true);
        this.#after(1 + this.#rng.nextInt(3), () => {
          if (this.#healTime === null) this.#restart(voter);
        });
      });
    }
    const trap = this.#bridgeTrap;
    if (trap !== null && m.type === 'MsgPreVote' && m.from === trap.candidate && m.to === trap.bridge.id && this.#now < trap.until) {
      this.#bridgeTrap = null;
      this.#quietUntil = 0;
      this.#blockBoth(trap.leader, trap.bridge.id);
      this.#crash(trap.bridge, `lease-bridge: asked for a pre-vote by ${trap.candidate}`, false);
      this.#after(1 + this.#rng.nextInt(3), () => {
        if (this.#healTime === null) this.#restart(trap.bridge);
      });
    }
  }

  #deliver(m: Message): void {
    const to = this.#byId.get(m.to)!;
    // A partition also loses what was in flight when it began.
    if (this.#linkBlocked(m.from, m.to)) return this.#drop(m, 'partition');
    if (to.state !== 'up') return this.#drop(m, 'node down');
    const incarnation = to.incarnation;
    this.#onNode(to, () => {
      if (to.incarnation !== incarnation || to.replica === null) return this.#drop(m, 'node down');
      this.stats.messagesDelivered++;
      this.#trace.add({ kind: 'deliver', step: this.#step, time: this.#now, message: m });
      to.replica.step(m);
    });
  }

  /**
   * A snapshot stream, as the TCP transport runs it: connect, take the sender's image, stream it
   * (it takes a while; a partition or a crash on either side breaks it), let the receiver stage
   * it, and carry the outcome back. The acknowledgement can be lost like any message: the
   * sender then believes the transfer failed and sends again, while the receiver holds the
   * first image — the race that used to crash a receiver.
   */
  #sendSnapshot(m: MsgSnap): void {
    const from = this.#byId.get(m.from)!;
    const to = this.#byId.get(m.to)!;
    const fromIncarnation = from.incarnation;
    let settled = false;
    const report = (ok: boolean, why: string): void => {
      if (settled) return;
      settled = true;
      this.#streams.delete(stream);
      this.#after(1 + this.#netRng.nextInt(this.#delayMax), () => {
        if (from.incarnation !== fromIncarnation || from.state !== 'up') return;
        this.#onNode(from, () => {
          if (from.incarnation !== fromIncarnation) return;
          this.#note(from.id, `snapshot ${m.snapshot.meta.index} to ${m.to}: ${ok ? 'acknowledged' : `failed (${why})`}`);
          from.replica?.snapshotSent(m.to, ok);
        });
      });
    };
    // A crash of the receiver breaks the connection: the sender hears of it.
    const stream = { to: to.id, fail: (why: string) => report(false, why) };
    this.#streams.add(stream);
    const broken = (): string | null =>
      from.incarnation !== fromIncarnation || from.state !== 'up' ? 'sender down' : this.#linkBlocked(m.from, m.to) ? 'partition' : to.state !== 'up' ? 'receiver down' : null;
    this.#after(1 + this.#netRng.nextInt(5), () =>
      this.#onNode(from, () => {
        const why = broken();
        if (why !== null || from.replica === null) return report(false, why ?? 'sender down');
        const image = from.replica.snapshotImage();
        this.stats.snapshotsSent++;
        this.#after(5 + this.#netRng.nextInt(30), () => {
          const whyNot = broken();
          if (whyNot !== null) return report(false, whyNot);
          const toIncarnation = to.incarnation;
          this.#onNode(to, () => {
            if (to.incarnation !== toIncarnation || to.replica === null) return report(false, 'receiver down');
            this.#note(to.id, `snapshot stream ${m.snapshot.meta.term}/${m.snapshot.meta.index} from ${m.from} arrived (image at ${image.position.index})`);
            to.replica.receiveSnapshot({ ...m, snapshot: { meta: m.snapshot.meta, data: new Uint8Array(0) } }, image, (error) => {
              if (error !== null) {
                this.stats.snapshotsRefused++;
                this.#note(to.id, `snapshot ${m.snapshot.meta.index} from ${m.from} refused: ${error.message}`);
              }
              const ackLost = this.#linkBlocked(m.to, m.from) || (this.#lossP > 0 && this.#netRng.chance(this.#lossP));
              report(error === null && !ackLost, error !== null ? 'refused' : 'acknowledgement lost');
            });
          });
        });
      }),
    );
  }

  // ---------------------------------------------------------------- clients

  #scheduleClient(delay: number): void {
    this.#after(delay, () => {
      if (this.#healTime !== null) return; // the liveness phase uses probes instead
      if (this.#now >= this.#quietUntil) this.#clientOp();
      this.#scheduleClient(3 + this.#rng.nextInt(20));
    });
  }

  #leader(): SimNode | null {
    let best: SimNode | null = null;
    for (const n of this.#nodes) {
      if (n.state === 'up' && n.role === Role.Leader && (best === null || n.term > best.term)) best = n;
    }
    return best;
  }

  #clientOp(): void {
    const live = this.#nodes.filter((n) => n.state === 'up');
    if (live.length === 0) return;
    const leader = this.#leader();
    const node = leader !== null && this.#rng.chance(0.7) ? leader : live[this.#rng.nextInt(live.length)]!;
    const key = KEYS[this.#rng.nextInt(KEYS.length)]!;
    const r = this.#rng.nextFloat();
    const incarnation = node.incarnation;
    // A request to a paused node waits in its socket until the node resumes.
    this.#onNode(node, () => {
      if (node.incarnation !== incarnation || node.replica === null) return;
      if (r < 0.45) this.#write(node.replica, key);
      else this.#read(node, key, r < 0.7 ? 'lease' : 'linearizable');
    });
  }

  #write(replica: Replica<MemoryImage>, key: string): void {
    const id = this.#history.length;
    const value = `v${id}`;
    const op: MutableOp = { id, clientId: id, key, kind: 'write', value, invoke: this.#step, complete: null };
    this.#history.push(op);
    replica.propose(encodeCommand({ type: 'put', key, value: new TextEncoder().encode(value) }), (error) => {
      if (error === null) {
        op.complete = this.#step;
        this.stats.writesOk++;
      } else if (isRaftKvError(error, ErrorCode.NOT_LEADER) || isRaftKvError(error, ErrorCode.PROPOSAL_DROPPED)) {
        // Certainly not applied: it constrains nothing.
        op.complete = -1;
      } else if (!isRaftKvError(error)) {
        throw error;
      }
      // TIMEOUT, SHUTTING_DOWN: the outcome is unknown, the write stays indeterminate.
    });
  }

  #read(node: SimNode, key: string, consistency: ReadConsistency): void {
    const replica = node.replica!;
    const id = this.#history.length;
    const op: MutableOp = { id, clientId: id, key, kind: 'read', invoke: this.#step, complete: null };
    this.#history.push(op);
    replica.read(consistency, (error) => {
      if (error !== null) {
        if (!isRaftKvError(error)) throw error;
        return; // unanswered: constrains nothing
      }
      const found = node.sm.kv.get(key);
      op.output = found === null ? null : decoder.decode(found.value);
      op.complete = this.#step;
      this.stats.readsOk++;
      if (consistency === 'lease') this.stats.leaseReadsOk++;
    });
  }

  // ---------------------------------------------------------------- faults

  #planFaults(): void {
    const allowed = this.opts.faults.length > 0 ? this.opts.faults : FAULT_KINDS;
    let kinds = this.opts.allFaults ? [...allowed] : allowed.filter(() => this.#rng.chance(0.5));
    if (kinds.length === 0) kinds = [allowed[this.#rng.nextInt(allowed.length)]!];
    const network = kinds.filter((k) => !PROCESS_FAULT_KINDS.includes(k));
    const process = kinds.filter((k) => PROCESS_FAULT_KINDS.includes(k));
    // Two independent tracks, so network and process faults overlap in combinations.
    for (const track of [network, process]) {
      if (track.length === 0) continue;
      let t = 200 + this.#rng.nextInt(300);
      while (t < this.opts.faultUnits - 100) {
        const kind = track[this.#rng.nextInt(track.length)]!;
        const duration = 50 + this.#rng.nextInt(600);
        const end = Math.min(t + duration, this.opts.faultUnits - 1);
        this.#at(t, () => this.#startFault(kind, end));
        t = end + this.#rng.nextInt(250);
      }
    }
  }

  #count(kind: FaultKind): void {
    this.stats.faults[kind] = (this.stats.faults[kind] ?? 0) + 1;
  }

  #startFault(kind: FaultKind, end: number): void {
    if (this.#healTime !== null) return;
    const ids = this.#nodes.map((n) => n.id);
    const shuffled = this.#shuffle(ids);
    const leader = this.#leader();
    const leaderOrAny = (p: number): SimNode => (leader !== null && this.#rng.chance(p) ? leader : this.#byId.get(shuffled[0]!)!);
    this.#count(kind);
    switch (kind) {
      case 'loss':
        this.#lossP = 0.05 + this.#rng.nextFloat() * 0.3;
        this.#note(null, `FAULT loss p=${this.#lossP.toFixed(2)}`);
        this.#at(end, () => (this.#lossP = 0));
        return;
      case 'duplicate':
        this.#dupP = 0.05 + this.#rng.nextFloat() * 0.25;
        this.#note(null, `FAULT duplicate p=${this.#dupP.toFixed(2)}`);
        this.#at(end, () => (this.#dupP = 0));
        return;
      case 'delay':
        this.#delayMax = 20 + this.#rng.nextInt(120);
        this.#note(null, `FAULT delay max=${this.#delayMax}`);
        this.#at(end, () => (this.#delayMax = 5));
        return;
      case 'split': {
        const minority = shuffled.slice(0, 1 + this.#rng.nextInt(Math.floor(ids.length / 2)));
        this.#partition([minority, ids.filter((id) => !minority.includes(id))], end, 'split');
        return;
      }
      case 'isolate-leader': {
        const target = leader?.id ?? shuffled[0]!;
        this.#partition([[target], ids.filter((id) => id !== target)], end, 'isolate-leader');
        return;
      }
      case 'bridge': {
        const [bridge, ...rest] = shuffled;
        const half = Math.ceil(rest.length / 2);
        const a = rest.slice(0, half);
        const b = rest.slice(half);
        for (const x of a) for (const y of b) this.#blockBoth(x, y);
        this.#note(null, `FAULT bridge ${bridge} sees {${a.join(',')}} and {${b.join(',')}}`);
        this.#at(end, () => this.#healLinks('bridge'));
        return;
      }
      case 'one-way': {
        // The leader (or a random node) can hear but not be heard, or the reverse.
        const target = leader?.id ?? shuffled[0]!;
        const outbound = this.#rng.chance(0.5);
        for (const other of ids) {
          if (other === target) continue;
          this.#blocked.add(outbound ? `${target}>${other}` : `${other}>${target}`);
        }
        this.#note(null, `FAULT one-way: ${target} ${outbound ? 'cannot send' : 'cannot receive'}`);
        this.#at(end, () => this.#healLinks('one-way'));
        return;
      }
      case 'flapping': {
        const period = 20 + this.#rng.nextInt(80);
        const flap = (cut: boolean): void => {
          if (this.#now >= end || this.#healTime !== null) return this.#healLinks('flapping');
          if (cut) {
            const minority = this.#shuffle(ids).slice(0, 1 + this.#rng.nextInt(Math.floor(ids.length / 2)));
            for (const x of minority) for (const y of ids) if (!minority.includes(y)) this.#blockBoth(x, y);
            this.#note(null, `FAULT flap cut {${minority.join(',')}}`);
          } else {
            this.#blocked.clear();
            this.#note(null, 'FAULT flap heal');
          }
          this.#after(period, () => flap(!cut));
        };
        flap(true);
        return;
      }
      case 'crash':
      case 'power-loss': {
        const r = this.#rng.nextFloat();
        // The leader, one random node, or several at once (even all: the disks survive, minus
        // what a power loss takes).
        const victims = r < 0.4 && leader !== null ? [leader] : r < 0.8 ? [this.#byId.get(shuffled[0]!)!] : shuffled.slice(0, 1 + this.#rng.nextInt(ids.length)).map((id) => this.#byId.get(id)!);
        for (const v of victims) this.#crash(v, 'nemesis', kind === 'power-loss');
        this.#at(end, () => {
          for (const v of victims) this.#restart(v);
        });
        return;
      }
      case 'crash-in-loop': {
        const victim = leaderOrAny(0.4);
        const steps: IoOperation[] = ['persist', 'persist', 'apply', 'apply', 'install', 'sync', 'compact', 'stage'];
        victim.crashAfter = steps[this.#rng.nextInt(steps.length)]!;
        this.#note(victim.id, `FAULT crash right after its next ${victim.crashAfter}`);
        this.#at(end, () => {
          victim.crashAfter = null;
          this.#restart(victim);
        });
        return;
      }
      case 'leader-churn':
        // Figure 8 terrain: many short terms whose leaders die before their entries spread.
        this.#churnUntil = end;
        this.#note(null, 'FAULT leader churn');
        return;
      case 'transfer': {
        if (leader === null || leader.replica === null || leader.paused) return;
        const voters = leader.replica.status().confState.voters;
        const target = shuffled.find((id) => id !== leader.id && voters.includes(id));
        if (target === undefined) return;
        this.#note(leader.id, `FAULT transfer leadership to ${target}`);
        try {
          leader.replica.transferLeadership(target);
        } catch (error) {
          // It stepped down since the simulator last looked: there is nobody to ask.
          if (!isRaftKvError(error, ErrorCode.NOT_LEADER)) throw error;
        }
        // Half the time the old leader then hears nothing for a while: nothing deposes it, and
        // it must not go on serving lease reads once its MsgTimeoutNow is out.
        if (this.#rng.chance(0.5)) {
          const old = leader.id;
          this.#after(6, () => {
            for (const other of ids) if (other !== old) this.#blocked.add(`${other}>${old}`);
            this.#note(null, `FAULT transfer: ${old} cannot receive`);
          });
          this.#at(Math.max(end, this.#now + 7), () => this.#healLinks('transfer'));
        }
        return;
      }
      case 'vote-crash':
        this.#voteCrashP = 0.5;
        this.#note(null, 'FAULT vote-crash: voters may lose power as their grant leaves');
        this.#at(end, () => (this.#voteCrashP = 0));
        return;
      case 'lease-bridge':
        this.#leaseBridge(leader, shuffled, end);
        return;
      case 'pause': {
        // Most often the leader: a stopped leader that wakes up must not serve from its old lease.
        this.#pause(leaderOrAny(0.6), Math.min(end, this.#now + 30 + this.#rng.nextInt(400)));
        return;
      }
      case 'membership':
        this.#changeMembership();
        return;
      case 'slow-disk': {
        const victim = leaderOrAny(0.5);
        victim.slowDisk = true;
        this.#note(victim.id, 'FAULT slow disk');
        this.#at(end, () => (victim.slowDisk = false));
        return;
      }
    }
  }

  /**
   * One membership change, asked of the leader like an operator would: add a spare machine as a
   * learner (it starts with an empty disk and joins), promote a learner, remove a follower, or
   * remove the leader itself. A removed node keeps running until its removal is applied on the
   * leader, then is shut down for good.
   */
  #changeMembership(): void {
    const leader = this.#leader();
    if (leader === null || leader.replica === null || leader.paused) return;
    const { voters, learners } = leader.replica.status().confState;
    const spares = this.#nodes.filter((n) => !n.founding && !n.retired && !this.#everAdded.has(n.id));
    const options: (() => void)[] = [];
    const propose = (change: ConfChange, onApplied: () => void = () => undefined): void => {
      this.#note(leader.id, `MEMBERSHIP ${change.type} ${'id' in change ? change.id : ''}`);
      leader.replica!.changeMembership(change, new Uint8Array(0), (error) => {
        if (error === null) {
          this.stats.membershipChanges++;
          this.#note(leader.id, `MEMBERSHIP ${change.type} ${'id' in change ? change.id : ''} applied`);
          onApplied();
        } else if (isRaftKvError(error)) {
          this.#note(leader.id, `MEMBERSHIP ${change.type} refused: ${error.code} ${error.message}`);
        } else {
          throw error;
        }
      });
    };
    if (spares.length > 0 && voters.length + learners.length < this.opts.nodes + 2) {
      options.push(() => {
        const spare = spares[0]!;
        this.#everAdded.add(spare.id);
        if (spare.state === 'down') this.#start(spare);
        propose({ type: 'add-learner', id: spare.id });
      });
    }
    for (const id of learners) options.push(() => propose({ type: 'promote', id }));
    const removable = [...voters.filter((id) => id !== leader.id), ...learners];
    if (voters.length + learners.length > this.opts.nodes - 1) {
      for (const id of removable) options.push(() => propose({ type: 'remove', id }, () => this.#retire(id)));
      if (voters.length > 1) options.push(() => propose({ type: 'remove', id: leader.id }, () => this.#retire(leader.id)));
    }
    if (options.length === 0) return;
    options[this.#rng.nextInt(options.length)]!();
  }

  /** A node whose removal was applied is shut down for good, a little later. */
  #retire(id: NodeId): void {
    const node = this.#byId.get(id)!;
    this.#after(50 + this.#rng.nextInt(200), () => {
      if (node.retired) return;
      this.#note(id, 'RETIRED (removed from the cluster)');
      this.#crash(node, 'removed', false);
      node.retired = true;
    });
  }

  /**
   * The restarted-follower lease case, staged: the leader and one follower (the candidate) are
   * cut apart, the other follower bridges them, and clients go quiet so the candidate's log stays
   * as long as the bridge's. When the candidate, having timed out, asks the bridge for a
   * pre-vote, the bridge crashes and restarts at once, cut from the leader: the leader's lease
   * rests on the bridge's last acknowledgement, which the restarted bridge must keep honouring.
   */
  #leaseBridge(leader: SimNode | null, shuffled: readonly NodeId[], end: number): void {
    if (leader === null || this.opts.nodes !== 3 || leader.replica === null) return;
    const voters = leader.replica.status().confState.voters;
    if (voters.length !== 3) return;
    const [bridgeId, candidate] = shuffled.filter((id) => id !== leader.id && voters.includes(id));
    if (bridgeId === undefined || candidate === undefined) return;
    const bridge = this.#byId.get(bridgeId)!;
    this.#quietUntil = Number.POSITIVE_INFINITY;
    this.#after(30, () => {
      this.#blockBoth(leader.id, candidate);
      this.#note(null, `FAULT lease-bridge: ${leader.id} leads, ${bridge.id} bridges, ${candidate} is cut off`);
    });
    this.#after(Math.min(150, end - this.#now), () => {
      this.#bridgeTrap = { candidate, bridge, leader: leader.id, until: end - 20 };
    });
    this.#at(end, () => {
      this.#bridgeTrap = null;
      this.#quietUntil = 0;
      this.#healLinks('lease-bridge');
    });
  }

  #churn(node: SimNode): void {
    const incarnation = node.incarnation;
    this.#after(this.#rng.nextInt(3 * this.#delayMax + 1), () => {
      // Faults stop at the heal: a crash scheduled before it must not land after it.
      if (node.incarnation !== incarnation || this.#healTime !== null) return;
      this.#crash(node, 'leader churn', this.#rng.chance(0.3));
      this.#after(20 + this.#rng.nextInt(200), () => {
        if (this.#healTime === null) this.#restart(node);
      });
    });
  }

  #partition(groups: NodeId[][], end: number, kind: string): void {
    for (let g = 0; g < groups.length; g++) {
      for (let h = g + 1; h < groups.length; h++) {
        for (const x of groups[g]!) for (const y of groups[h]!) this.#blockBoth(x, y);
      }
    }
    this.#note(null, `FAULT ${kind} ${groups.map((g) => `{${g.join(',')}}`).join(' | ')}`);
    this.#at(end, () => this.#healLinks(kind));
  }

  #blockBoth(x: NodeId, y: NodeId): void {
    this.#blocked.add(`${x}>${y}`);
    this.#blocked.add(`${y}>${x}`);
  }

  #healLinks(kind: string): void {
    if (this.#blocked.size === 0) return;
    this.#blocked.clear();
    this.#note(null, `HEAL links (${kind})`);
  }

  #shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.#rng.nextInt(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  // ---------------------------------------------------------------- liveness

  /** The faults stop: heal the network and the disks, resume and restart every node, then require progress. */
  #heal(): void {
    this.#healTime = this.#now;
    this.#blocked.clear();
    this.#lossP = 0;
    this.#dupP = 0;
    this.#delayMax = 5;
    this.#voteCrashP = 0;
    this.#quietUntil = 0;
    this.#bridgeTrap = null;
    this.#note(null, 'HEAL all: faults stop, liveness phase begins');
    for (const n of this.#nodes) {
      n.crashAfter = null;
      n.slowDisk = false;
      if (n.paused) this.#resume(n, n.incarnation);
      this.#restart(n);
    }
    for (let k = 0; k < PROBES; k++) this.#probes.push({ value: `probe${k}`, acceptedTerm: null });
    this.#driveProbes();
  }

  /** Like a client that retries: (re)propose each probe on the current leader until it applies everywhere. */
  #driveProbes(): void {
    if (this.#done || this.#violation !== null) return;
    if (this.#checkLiveness(false)) return;
    const leader = this.#leader();
    if (leader !== null && leader.replica !== null) {
      for (const p of this.#probes) {
        if (this.#probeApplied(p.value)) continue;
        if (p.acceptedTerm === leader.term) continue;
        const term = leader.term;
        p.acceptedTerm = term;
        leader.replica.propose(encodeCommand({ type: 'put', key: p.value, value: new TextEncoder().encode(p.value) }), (error) => {
          if (error !== null && !isRaftKvError(error)) throw error;
          // Refused or lost: the next leader (or this one's next term) is asked again.
          if (error !== null && (isRaftKvError(error, ErrorCode.NOT_LEADER) || isRaftKvError(error, ErrorCode.PROPOSAL_DROPPED)) && p.acceptedTerm === term) p.acceptedTerm = null;
        });
      }
    }
    this.#after(this.opts.tickUnits, () => this.#driveProbes());
  }

  /** Each probe writes its own key, so a snapshot that covers it shows it too. Every member must have it. */
  #probeApplied(value: string): boolean {
    const leader = this.#leader();
    if (leader === null || leader.replica === null) return false;
    const { voters, learners } = leader.replica.status().confState;
    return [...voters, ...learners].every((id) => {
      const n = this.#byId.get(id)!;
      return n.state === 'up' && n.sm.kv.get(value) !== null;
    });
  }

  /** True once every probe is applied on every node; at the deadline, a miss is a violation. */
  #checkLiveness(deadline: boolean): boolean {
    if (this.#healTime === null || this.#done) return this.#done;
    const ok = this.#probes.length === PROBES && this.#probes.every((p) => this.#probeApplied(p.value));
    if (ok) {
      this.stats.recoveryTicks = Math.ceil((this.#now - this.#healTime) / this.opts.tickUnits);
      this.#done = true;
      return true;
    }
    if (deadline) {
      const where = this.#nodes.map((n) => `${n.id}:${n.state}/${n.role}/t${n.term}/commit${n.commitSeen}/applied${n.sm.appliedIndex}`).join(' ');
      this.#fail({
        property: 'liveness',
        detail: `${this.opts.livenessTicksMax} ticks after the faults stopped, not every probe was applied on every node (${where})`,
      });
    }
    return false;
  }

  // ---------------------------------------------------------------- linearizability

  #checkHistory(): void {
    const ops: Operation[] = [];
    for (const op of this.#history) {
      if (op.complete !== null && op.complete < 0) continue; // refused, or never answered: constrains nothing
      if (op.kind === 'read') {
        if (op.complete === null) continue;
      } else if (op.complete === null) {
        this.stats.writesIndeterminate++;
      }
      ops.push(op);
    }
    const result = checkLinearizable(ops, { initialValue: null, budget: 2_000_000 });
    this.stats.linearizability = result.result;
    if (result.result !== 'illegal') return;
    const bad = result.keys.find((k) => k.result === 'illegal');
    if (bad === undefined || bad.result !== 'illegal') return;
    const last = Math.max(...bad.window.map((o) => o.complete ?? o.invoke));
    this.#violation = {
      property: 'linearizability',
      detail: `${bad.explanation}\n${formatHistory(bad.window)}`,
      step: last,
      time: this.#now,
    };
  }
}
