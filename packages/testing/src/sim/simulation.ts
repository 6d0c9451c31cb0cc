import { ErrorCode, isRaftKvError, MemoryStorage, RawNode, Role, SeededRandom, type BasicStatus, type Message, type NodeId, type Ready, type Term } from '@raftkv/raft';
import { checkLinearizable, formatHistory, type Operation } from '../linearizability/index.js';
import { EventQueue } from './heap.js';
import { FAULT_KINDS, SIM_DEFAULTS, type FaultKind, type SimOptions } from './options.js';
import { SafetyChecker, type Violation } from './safety.js';
import { decodePut, decodeSnapshot, encodePut, encodeSnapshot } from './state-machine.js';
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
  messagesDelivered: number;
  messagesDropped: number;
  writesOk: number;
  writesIndeterminate: number;
  readsOk: number;
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

/** One simulated server: the core, its durable storage, and its volatile state machine. */
interface SimNode {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  readonly rng: SeededRandom;
  raw: RawNode | null;
  incarnation: number;
  state: Map<string, string>;
  applied: number;
  commitSeen: number;
  role: Role;
  term: Term;
  /** The Ready being persisted, if any. */
  persisting: Ready | null;
  crashOnNextPersist: boolean;
  /** (index:term) of this incarnation's proposals -> history op. */
  pendingWrites: Map<string, MutableOp>;
  /** Read context -> history op, until the read is served. */
  pendingReads: Map<string, MutableOp>;
  /** ReadStates waiting for the state machine to catch up. */
  readsWaiting: { index: number; context: string }[];
  /** Ticks per tick event, in time units (slight clock skew between nodes). */
  tickUnits: number;
}

type MutableOp = { -readonly [K in keyof Operation]: Operation[K] };

const KEYS = ['x', 'y', 'z'];
const PROBES = 3;

/**
 * A deterministic simulation of a Raft cluster: the nodes, the network and the faults all draw
 * from one seed, so a run is a pure function of (seed, options) and a failing seed replays the
 * same way every time. The persistence contract of `Ready` is modelled exactly: `messages` leave
 * at once, the rest only after a persist that takes time, and a crash loses whatever was not
 * yet persisted.
 */
export class Simulation {
  readonly opts: SimOptions;
  readonly #rng: SeededRandom;
  readonly #netRng: SeededRandom;
  readonly #nodes: SimNode[] = [];
  readonly #byId = new Map<NodeId, SimNode>();
  readonly #queue = new EventQueue<SimEvent>();
  readonly #checker = new SafetyChecker();
  readonly #trace: Trace;
  readonly #history: MutableOp[] = [];
  #seq = 0;
  #step = 0;
  #now = 0;
  #violation: SimViolation | null = null;

  // network state
  #blocked = new Set<string>();
  #lossP = 0;
  #dupP = 0;
  #delayMax = 5;

  // liveness phase
  #healTime: number | null = null;
  #churnUntil = 0;
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
    messagesDelivered: 0,
    messagesDropped: 0,
    writesOk: 0,
    writesIndeterminate: 0,
    readsOk: 0,
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
    const ids = Array.from({ length: this.opts.nodes }, (_, k) => `n${k + 1}`);
    // Replication settings are drawn per seed: small messages and windows split batches, which
    // exposes commit-rule and back-off bugs that large batches hide.
    this.#snapshotEvery = this.opts.snapshotEveryEntries > 0 ? this.opts.snapshotEveryEntries : 5 + this.#rng.nextInt(60);
    this.#msgBytesMax = [1, 64, 256, 4096, 1 << 20][this.#rng.nextInt(5)]!;
    this.#inflightCountMax = [1, 2, 8, 256][this.#rng.nextInt(4)]!;
    for (const id of ids) {
      const node: SimNode = {
        id,
        storage: new MemoryStorage({ voters: ids, learners: [] }),
        rng: this.#rng.fork(),
        raw: null,
        incarnation: 0,
        state: new Map(),
        applied: 0,
        commitSeen: 0,
        role: Role.Follower,
        term: 0,
        persisting: null,
        crashOnNextPersist: false,
        pendingWrites: new Map(),
        pendingReads: new Map(),
        readsWaiting: [],
        tickUnits: this.opts.tickUnits + this.#rng.nextInt(3) - 1,
      };
      this.#nodes.push(node);
      this.#byId.set(id, node);
    }
  }

  readonly #snapshotEvery: number;
  readonly #msgBytesMax: number;
  readonly #inflightCountMax: number;

  run(): SimResult {
    for (const node of this.#nodes) {
      this.#start(node);
      this.#scheduleTick(node, 1 + this.#rng.nextInt(node.tickUnits));
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
      }
    } catch (error) {
      // An assertion failure in the core (or any exception) is a bug: report it with the seed
      // and the trace, like any other violation.
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

  #note(node: NodeId | null, text: string): void {
    this.#trace.add({ kind: 'note', step: this.#step, time: this.#now, node, text });
  }

  #fail(v: Violation): void {
    if (this.#violation !== null) return;
    this.#violation = { ...v, step: this.#step, time: this.#now };
    this.#note(null, `VIOLATION ${v.property}: ${v.detail}`);
  }

  #scheduleTick(node: SimNode, delay: number): void {
    this.#after(delay, () => {
      if (node.raw !== null) {
        node.raw.tick();
        this.#afterInput(node);
      }
      this.#scheduleTick(node, node.tickUnits);
    });
  }

  // ---------------------------------------------------------------- node lifecycle

  #start(node: SimNode): void {
    const snapshot = node.storage.snapshot();
    node.raw = new RawNode({
      id: node.id,
      storage: node.storage,
      random: node.rng.fork(),
      electionTimeoutTicks: this.opts.electionTimeoutTicks,
      heartbeatIntervalTicks: this.opts.heartbeatIntervalTicks,
      applied: snapshot.meta.index,
      inflightCountMax: this.#inflightCountMax,
      msgBytesMax: this.#msgBytesMax,
    });
    // The state machine is volatile: rebuilt from the snapshot, then the log is replayed.
    node.state = decodeSnapshot(snapshot.data);
    node.applied = snapshot.meta.index;
    const status = node.raw.basicStatus();
    node.commitSeen = status.commit;
    node.role = status.role;
    node.term = status.term;
    node.persisting = null;
    node.readsWaiting = [];
  }

  #crash(node: SimNode, why: string): void {
    if (node.raw === null) return;
    this.stats.crashes++;
    this.#note(node.id, `CRASH (${why})${node.persisting !== null ? ' with an unpersisted Ready' : ''}`);
    node.raw = null;
    node.persisting = null;
    node.crashOnNextPersist = false;
    node.incarnation++;
    // Writes in flight may or may not commit: they stay in the history as indeterminate.
    node.pendingWrites.clear();
    // Reads never answered constrain nothing.
    for (const op of node.pendingReads.values()) op.complete = -1;
    node.pendingReads.clear();
    node.readsWaiting = [];
  }

  #restart(node: SimNode): void {
    if (node.raw !== null) return;
    this.#start(node);
    this.#note(node.id, `RESTART term=${node.term} commit=${node.commitSeen} applied=${node.applied}`);
    this.#afterInput(node);
  }

  // ---------------------------------------------------------------- the Ready loop

  /** After any input to a node: check safety, then process its Ready if it is not busy persisting. */
  #afterInput(node: SimNode): void {
    if (node.raw === null || this.#violation !== null) return;
    this.#checkNode(node);
    if (node.persisting !== null || !node.raw.hasReady()) return;
    const rd = node.raw.ready();
    const v = this.#checker.onEntries(node.raw, node.id, rd.entries);
    if (v !== null) return this.#fail(v);
    for (const m of rd.messages) this.#send(m);
    node.persisting = rd;
    const incarnation = node.incarnation;
    if (node.crashOnNextPersist && (rd.mustSync || rd.messages.length > 0)) {
      node.crashOnNextPersist = false;
      this.#after(0, () => this.#crash(node, 'mid-persist'));
    }
    this.#after(1 + this.#rng.nextInt(3), () => {
      if (node.incarnation === incarnation) this.#persisted(node, rd);
    });
  }

  /** The Ready's writes are durable: finish steps 2-5 of the contract. */
  #persisted(node: SimNode, rd: Ready): void {
    const raw = node.raw;
    if (raw === null) return;
    if (rd.snapshot !== null) node.storage.applySnapshot(rd.snapshot);
    node.storage.append(rd.entries);
    if (rd.hardState !== null) node.storage.setHardState(rd.hardState);
    for (const m of rd.messagesAfterPersist) this.#send(m);
    if (rd.snapshot !== null) {
      const { index, term } = rd.snapshot.meta;
      const v = this.#checker.onSnapshot(node.id, index, term);
      if (v !== null) return this.#fail(v);
      node.state = decodeSnapshot(rd.snapshot.data);
      node.applied = index;
      this.#note(node.id, `install snapshot ${term}/${index}`);
    }
    for (const e of rd.committedEntries) {
      const v = this.#checker.onApply(node.id, node.applied, e);
      if (v !== null) return this.#fail(v);
      node.applied = e.index;
      if (e.data.byteLength > 0) {
        const cmd = decodePut(e.data);
        node.state.set(cmd.key, cmd.value);
      }
      this.#resolveWrite(node, e.index, e.term);
    }
    for (const rs of rd.readStates) node.readsWaiting.push(rs);
    this.#serveReads(node);
    node.persisting = null;
    raw.advance();
    this.#maybeCompact(node);
    this.#afterInput(node);
  }

  #maybeCompact(node: SimNode): void {
    const raw = node.raw;
    if (raw === null || node.applied - node.storage.firstIndex() + 1 < this.#snapshotEvery) return;
    let meta;
    try {
      meta = raw.snapshotMeta(node.applied);
    } catch (error) {
      // A newer snapshot from the leader is waiting to be installed: nothing to compact.
      if (isRaftKvError(error, ErrorCode.LOG_COMPACTED)) return;
      throw error;
    }
    node.storage.compact(meta, encodeSnapshot(node.state));
  }

  #checkNode(node: SimNode): void {
    const raw = node.raw;
    if (raw === null) return;
    const st: BasicStatus = raw.basicStatus();
    if (st.role === Role.Leader) {
      const newly = node.role !== Role.Leader || node.term !== st.term;
      if (newly) {
        this.#note(node.id, `became leader of term ${st.term} (last index ${st.lastIndex}, commit ${st.commit})`);
        if (this.#now < this.#churnUntil && this.#healTime === null && this.#rng.chance(0.8)) this.#churn(node);
      }
      const v = this.#checker.onLeader(raw, st, newly);
      if (v !== null) return this.#fail(v);
    } else if (node.role !== st.role) {
      this.#note(node.id, `${st.role} term=${st.term}`);
    }
    node.role = st.role;
    node.term = st.term;
    if (st.commit !== node.commitSeen) {
      const lo = Math.max(node.commitSeen + 1, st.firstIndex);
      const entries = st.commit >= lo ? raw.entries(lo, st.commit + 1) : [];
      const v = this.#checker.onCommit(node.id, node.commitSeen, st.commit, entries);
      if (v !== null) return this.#fail(v);
      node.commitSeen = st.commit;
    }
  }

  // ---------------------------------------------------------------- network

  #send(m: Message): void {
    const from = this.#byId.get(m.from)!;
    const drop = (why: string): void => {
      this.stats.messagesDropped++;
      this.#trace.add({ kind: 'drop', step: this.#step, time: this.#now, message: m, why });
      // A snapshot stream that breaks is reported by the transport.
      if (m.type === 'MsgSnap') this.#after(1, () => from.raw?.reportSnapshot(m.to, false));
    };
    if (this.#blocked.has(`${m.from}>${m.to}`)) return drop('partition');
    if (this.#lossP > 0 && this.#netRng.chance(this.#lossP)) return drop('loss');
    const copies = this.#dupP > 0 && this.#netRng.chance(this.#dupP) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      this.#after(1 + this.#netRng.nextInt(this.#delayMax), () => this.#deliver(m));
    }
  }

  #deliver(m: Message): void {
    const to = this.#byId.get(m.to)!;
    if (to.raw === null) {
      this.stats.messagesDropped++;
      this.#trace.add({ kind: 'drop', step: this.#step, time: this.#now, message: m, why: 'node down' });
      if (m.type === 'MsgSnap') this.#byId.get(m.from)!.raw?.reportSnapshot(m.to, false);
      return;
    }
    this.stats.messagesDelivered++;
    this.#trace.add({ kind: 'deliver', step: this.#step, time: this.#now, message: m });
    to.raw.step(m);
    if (m.type === 'MsgSnap') {
      this.stats.snapshotsSent++;
      const from = this.#byId.get(m.from)!;
      from.raw?.reportSnapshot(m.to, true);
      this.#afterInput(from);
    }
    this.#afterInput(to);
  }

  // ---------------------------------------------------------------- clients

  #scheduleClient(delay: number): void {
    this.#after(delay, () => {
      if (this.#healTime !== null) return; // the liveness phase uses probes instead
      this.#clientOp();
      this.#scheduleClient(3 + this.#rng.nextInt(20));
    });
  }

  #leader(): SimNode | null {
    let best: SimNode | null = null;
    for (const n of this.#nodes) {
      if (n.raw !== null && n.role === Role.Leader && (best === null || n.term > best.term)) best = n;
    }
    return best;
  }

  #clientOp(): void {
    const live = this.#nodes.filter((n) => n.raw !== null);
    if (live.length === 0) return;
    const leader = this.#leader();
    const node = leader !== null && this.#rng.chance(0.7) ? leader : live[this.#rng.nextInt(live.length)]!;
    const raw = node.raw!;
    const key = KEYS[this.#rng.nextInt(KEYS.length)]!;
    const id = this.#history.length;
    if (this.#rng.chance(0.5)) {
      const value = `v${id}`;
      try {
        const { index, term } = raw.propose(encodePut({ key, value }));
        const op: MutableOp = { id, clientId: id, key, kind: 'write', value, invoke: this.#step, complete: null };
        this.#history.push(op);
        node.pendingWrites.set(`${index}:${term}`, op);
      } catch (error) {
        if (!isRaftKvError(error)) throw error;
        return; // refused: it never entered any log
      }
    } else {
      const context = `r${id}`;
      try {
        raw.readIndex(context);
      } catch (error) {
        if (!isRaftKvError(error)) throw error;
        return;
      }
      const op: MutableOp = { id, clientId: id, key, kind: 'read', invoke: this.#step, complete: null };
      this.#history.push(op);
      node.pendingReads.set(context, op);
    }
    this.#afterInput(node);
  }

  #resolveWrite(node: SimNode, index: number, term: Term): void {
    const key = `${index}:${term}`;
    const op = node.pendingWrites.get(key);
    if (op !== undefined) {
      node.pendingWrites.delete(key);
      op.complete = this.#step;
      this.stats.writesOk++;
    }
  }

  #serveReads(node: SimNode): void {
    if (node.readsWaiting.length === 0) return;
    const still: typeof node.readsWaiting = [];
    for (const rs of node.readsWaiting) {
      if (rs.index > node.applied) {
        still.push(rs);
        continue;
      }
      const op = node.pendingReads.get(rs.context);
      if (op === undefined) continue;
      node.pendingReads.delete(rs.context);
      op.output = node.state.get(op.key) ?? null;
      op.complete = this.#step;
      this.stats.readsOk++;
    }
    node.readsWaiting = still;
  }

  // ---------------------------------------------------------------- faults

  #planFaults(): void {
    const allowed = this.opts.faults.length > 0 ? this.opts.faults : FAULT_KINDS;
    let kinds = this.opts.allFaults ? [...allowed] : allowed.filter(() => this.#rng.chance(0.5));
    if (kinds.length === 0) kinds = [allowed[this.#rng.nextInt(allowed.length)]!];
    const processKinds: readonly FaultKind[] = ['crash', 'crash-mid-persist', 'leader-churn', 'transfer'];
    const network = kinds.filter((k) => !processKinds.includes(k));
    const process = kinds.filter((k) => processKinds.includes(k));
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
      case 'crash': {
        const r = this.#rng.nextFloat();
        // The leader, one random node, or several at once (even all: the disks survive).
        const victims = r < 0.4 && leader !== null ? [leader] : r < 0.8 ? [this.#byId.get(shuffled[0]!)!] : shuffled.slice(0, 1 + this.#rng.nextInt(ids.length)).map((id) => this.#byId.get(id)!);
        for (const v of victims) this.#crash(v, 'nemesis');
        this.#at(end, () => {
          for (const v of victims) this.#restart(v);
        });
        return;
      }
      case 'crash-mid-persist': {
        const victim = leader !== null && this.#rng.chance(0.3) ? leader : this.#byId.get(shuffled[0]!)!;
        victim.crashOnNextPersist = true;
        this.#note(victim.id, 'FAULT crash at the next persist');
        this.#at(end, () => {
          victim.crashOnNextPersist = false;
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
        if (leader === null || leader.raw === null) return;
        const target = shuffled.find((id) => id !== leader.id)!;
        this.#note(leader.id, `FAULT transfer leadership to ${target}`);
        leader.raw.transferLeadership(target);
        this.#afterInput(leader);
        return;
      }
    }
  }

  #churn(node: SimNode): void {
    const incarnation = node.incarnation;
    this.#after(this.#rng.nextInt(3 * this.#delayMax + 1), () => {
      // Faults stop at the heal: a crash scheduled before it must not land after it.
      if (node.incarnation !== incarnation || this.#healTime !== null) return;
      this.#crash(node, 'leader churn');
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

  /** The faults stop: heal the network, restart every node, then require progress. */
  #heal(): void {
    this.#healTime = this.#now;
    this.#blocked.clear();
    this.#lossP = 0;
    this.#dupP = 0;
    this.#delayMax = 5;
    this.#note(null, 'HEAL all: faults stop, liveness phase begins');
    for (const n of this.#nodes) {
      n.crashOnNextPersist = false;
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
    if (leader !== null && leader.raw !== null) {
      for (const p of this.#probes) {
        if (this.#probeApplied(p.value)) continue;
        if (p.acceptedTerm === leader.term) continue;
        try {
          p.acceptedTerm = leader.raw.propose(encodePut({ key: p.value, value: p.value })).term;
        } catch (error) {
          if (!isRaftKvError(error)) throw error;
        }
      }
      this.#afterInput(leader);
    }
    this.#after(this.opts.tickUnits, () => this.#driveProbes());
  }

  /** Each probe writes its own key, so a snapshot that covers it shows it too. */
  #probeApplied(value: string): boolean {
    return this.#nodes.every((n) => n.state.has(value));
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
      const where = this.#nodes.map((n) => `${n.id}:${n.role}/t${n.term}/commit${n.commitSeen}/applied${n.applied}`).join(' ');
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
      if (op.kind === 'read') {
        if (op.complete === null || op.complete < 0) continue; // unanswered reads constrain nothing
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
