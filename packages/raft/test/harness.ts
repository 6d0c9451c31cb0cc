/**
 * A tiny deterministic in-memory network of RawNodes for the paper tests, in the style of
 * etcd-io/raft's scripted tests. Nothing happens on its own: a test ticks, proposes and
 * campaigns, then calls `stabilize()` to run Readies and deliver messages until the network is
 * quiet. Every Ready is carried out exactly as the contract on `Ready` (types.ts) says.
 *
 * Monitors run on every event and throw when violated: at most one leader per term (election
 * safety, paper section 5.2); every node applies the same entry at each index (state machine
 * safety, section 5.4.3); an entry is applied only once it is in the node's storage (the
 * contract on `Ready.committedEntries`).
 */
import {
  describeEntry,
  encodeConfChange,
  describeMessage,
  isRaftKvError,
  MemoryStorage,
  type RaftKvError,
  RawNode,
  Role,
  SeededRandom,
  type Entry,
  type ErrorCode,
  type HardState,
  type LogIndex,
  type Message,
  type MsgApp,
  type MsgVote,
  type NodeId,
  type RaftConfig,
  type ReadState,
  type Ready,
  type Snapshot,
  type Status,
  type Term,
} from '../src/index.js';

export type NodeConfig = Omit<RaftConfig, 'id' | 'storage' | 'random' | 'applied'>;

export interface NetworkOptions {
  /** Number of voters, named n1..nN (default 3). */
  readonly size?: number;
  /**
   * The voters of the initial configuration (default: every node). The others start with an
   * empty log and no configuration, like a machine that is about to join.
   */
  readonly voters?: readonly NodeId[];
  /**
   * Write the initial configuration as entry 1 (term 1, committed), as the node does when it
   * bootstraps a cluster, instead of into the empty snapshot: a node that joins later then
   * learns it from the log.
   */
  readonly bootstrapEntry?: boolean;
  /** Seed of every node's election jitter (default 1). */
  readonly seed?: number;
  readonly config?: NodeConfig;
  /** Stable logs to start from, as the term of each entry from index 1 (etcd's `ents`). */
  readonly logs?: Readonly<Record<NodeId, readonly Term[]>>;
  /** Stable hard states to start from; `term` defaults to the last log term. */
  readonly hardStates?: Readonly<Record<NodeId, Partial<HardState>>>;
  /** Tell the sender whether each MsgSnap was delivered, as a transport does (default false). */
  readonly reportSnapshots?: boolean;
}

/** One entry as a state machine saw it. */
export interface Applied {
  readonly index: LogIndex;
  readonly term: Term;
  readonly data: string;
}

/** Returns true to drop the message. */
export type Filter = (m: Message) => boolean;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const bytes = (s: string): Uint8Array => encoder.encode(s);
export const text = (b: Uint8Array): string => decoder.decode(b);

export const ids = (n: number): NodeId[] => Array.from({ length: n }, (_, k) => `n${k + 1}`);

export const entry = (term: Term, index: LogIndex, data = ''): Entry => ({ term, index, type: 'normal', data: bytes(data) });

/** Hand-made messages, for stepping a single node. */
export const msg = {
  vote: (from: NodeId, to: NodeId, term: Term, last: { index: LogIndex; term: Term }, opts: { pre?: boolean; transfer?: boolean } = {}): MsgVote => ({
    type: opts.pre === true ? 'MsgPreVote' : 'MsgVote',
    from,
    to,
    term,
    index: last.index,
    logTerm: last.term,
    transfer: opts.transfer ?? false,
  }),
  app: (from: NodeId, to: NodeId, term: Term, prev: { index: LogIndex; term: Term }, entries: readonly Entry[], commit = 0): MsgApp => ({
    type: 'MsgApp',
    from,
    to,
    term,
    index: prev.index,
    logTerm: prev.term,
    entries,
    commit,
  }),
};

export class Network {
  readonly ids: readonly NodeId[];
  readonly config: NodeConfig;
  /** Every message that left a node, in order, whether or not it was delivered. */
  readonly sent: Message[] = [];
  /** `describeMessage` of every delivery attempt; dropped messages are prefixed with `DROP `. */
  readonly log: string[] = [];
  /** Every Ready carried out, in order. */
  readonly readies: { readonly id: NodeId; readonly ready: Ready }[] = [];
  /** Election-safety monitor: the leader seen in each term. */
  readonly leaders = new Map<Term, NodeId>();
  /** Messages sent and not yet delivered. */
  queue: Message[] = [];

  readonly #storages = new Map<NodeId, MemoryStorage>();
  readonly #nodes = new Map<NodeId, RawNode>();
  readonly #machines = new Map<NodeId, Applied[]>();
  readonly #readStates = new Map<NodeId, ReadState[]>();
  /** State-machine-safety monitor: what was applied at each index, by anyone. */
  readonly #appliedAt = new Map<LogIndex, string>();
  readonly #random: SeededRandom;
  readonly #reportSnapshots: boolean;
  readonly #initialVoters: readonly NodeId[];
  #filters: Filter[] = [];

  constructor(options: NetworkOptions = {}) {
    this.ids = ids(options.size ?? 3);
    this.config = options.config ?? {};
    this.#random = new SeededRandom(options.seed ?? 1);
    this.#reportSnapshots = options.reportSnapshots ?? false;
    const voters = options.voters ?? this.ids;
    this.#initialVoters = voters;
    for (const id of this.ids) {
      const founding = voters.includes(id);
      const entryBootstrap = options.bootstrapEntry === true;
      const storage = new MemoryStorage(founding && !entryBootstrap ? { voters: [...voters], learners: [] } : { voters: [], learners: [] });
      if (founding && entryBootstrap) {
        storage.append([{ index: 1, term: 1, type: 'conf-change', data: encodeConfChange({ type: 'bootstrap', voters: [...voters] }) }]);
        storage.setHardState({ term: 1, vote: null, commit: 1 });
        this.#storages.set(id, storage);
        this.#start(id);
        continue;
      }
      const terms = options.logs?.[id] ?? [];
      storage.append(terms.map((term, k) => ({ term, index: k + 1, type: 'normal', data: bytes(`t${term}i${k + 1}`) })));
      const hs = options.hardStates?.[id];
      storage.setHardState({ term: hs?.term ?? terms[terms.length - 1] ?? 0, vote: hs?.vote ?? null, commit: hs?.commit ?? 0 });
      this.#storages.set(id, storage);
      this.#start(id);
    }
  }

  // ------------------------------------------------------------------ nodes

  node(id: NodeId): RawNode {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new Error(`${id} is down`);
    return node;
  }

  storage(id: NodeId): MemoryStorage {
    const storage = this.#storages.get(id);
    if (storage === undefined) throw new Error(`unknown node ${id}`);
    return storage;
  }

  isUp(id: NodeId): boolean {
    return this.#nodes.has(id);
  }

  status(id: NodeId): Status {
    return this.node(id).status();
  }

  /** The command data this node's state machine applied, in order (leaders' no-ops left out). */
  applied(id: NodeId): string[] {
    return this.appliedEntries(id)
      .filter((a) => a.data !== '')
      .map((a) => a.data);
  }

  appliedEntries(id: NodeId): readonly Applied[] {
    return this.#machines.get(id) ?? [];
  }

  readStates(id: NodeId): readonly ReadState[] {
    return this.#readStates.get(id) ?? [];
  }

  /** The live leader of the highest term, if any. */
  leader(): NodeId | null {
    let best: Status | null = null;
    for (const id of this.ids) {
      if (!this.isUp(id)) continue;
      const st = this.status(id);
      if (st.role === Role.Leader && (best === null || st.term > best.term)) best = st;
    }
    return best?.id ?? null;
  }

  /** Crash: the node and everything it had not persisted are gone; messages to it are lost. */
  crash(id: NodeId): void {
    this.node(id);
    this.#nodes.delete(id);
  }

  /** The node's disk is lost: it must already be crashed; it restarts from an empty store. */
  wipe(id: NodeId): void {
    if (this.isUp(id)) throw new Error(`${id} is up`);
    this.#storages.set(id, new MemoryStorage({ voters: [...this.#initialVoters], learners: [] }));
  }

  /** A new RawNode over the same storage; the state machine restarts from the stored snapshot. */
  restart(id: NodeId): void {
    if (this.isUp(id)) throw new Error(`${id} is up`);
    this.#start(id);
  }

  #start(id: NodeId): void {
    const storage = this.storage(id);
    const snapshot = storage.snapshot();
    const random = this.#random.fork();
    this.#nodes.set(id, new RawNode({ ...this.config, id, storage, random, applied: snapshot.meta.index }));
    this.#machines.set(id, decodeSnapshot(snapshot));
  }

  // ------------------------------------------------------------------ inputs

  tick(id: NodeId, n = 1): void {
    for (let k = 0; k < n; k++) {
      this.node(id).tick();
      this.#observe(id);
    }
  }

  /**
   * Ticks every given live node once, then stabilizes, `rounds` times: the nodes' clocks run in
   * lockstep while messages flow.
   */
  tickLockstep(rounds: number, nodes: readonly NodeId[] = this.ids): void {
    for (let k = 0; k < rounds; k++) {
      for (const id of nodes) if (this.isUp(id)) this.tick(id);
      this.stabilize();
    }
  }

  /**
   * Lets an election timeout pass on every live node (default) or on `nodes`, with no message
   * moving: a node started from stored state refuses votes for that long after it boots (its
   * boot lease, thesis section 6.4.1), so tests that elect a leader among restarted nodes at
   * once wait it out first. Throws if an election timer fired meanwhile: the nodes would no
   * longer be where the test put them (try another seed).
   */
  tickPastBootLease(nodes: readonly NodeId[] = this.ids): void {
    const ticks = this.config.electionTimeoutTicks ?? 10;
    for (const id of nodes) {
      if (!this.isUp(id)) continue;
      this.tick(id, ticks);
      if (this.status(id).role !== Role.Follower) throw new Error(`${id} campaigned while waiting out its boot lease`);
    }
  }

  /** Ticks a leader through one heartbeat interval. */
  heartbeat(id: NodeId): void {
    this.tick(id, this.config.heartbeatIntervalTicks ?? 1);
  }

  campaign(id: NodeId): void {
    this.node(id).campaign();
    this.#observe(id);
  }

  propose(id: NodeId, data: string): { index: LogIndex; term: Term } {
    return this.node(id).propose(bytes(data));
  }

  /**
   * Campaigns, stabilizes, and lets the new leader send its first heartbeat round (the core
   * sends nothing on winning until the leader's first tick: see the figure 2 test in
   * paper-election), so that the no-op of its term is committed everywhere reachable.
   */
  elect(id: NodeId): void {
    this.campaign(id);
    this.stabilize();
    if (this.status(id).role !== Role.Leader) throw new Error(`${id} did not win the election`);
    this.heartbeat(id);
    this.stabilize();
  }

  /** Takes a snapshot of `id`'s state machine at `index` (default: all it applied) and compacts its log. */
  compact(id: NodeId, index: LogIndex = this.status(id).applied): Snapshot {
    const meta = this.node(id).snapshotMeta(index);
    const data = bytes(JSON.stringify(this.appliedEntries(id).filter((a) => a.index <= index)));
    this.storage(id).compact(meta, data);
    return { meta, data };
  }

  // ------------------------------------------------------------------ Ready

  /** Carries out one Ready of `id` following the contract on `Ready`; null when it had none. */
  handleReady(id: NodeId): Ready | null {
    const node = this.node(id);
    if (!node.hasReady()) return null;
    const rd = node.ready();
    this.readies.push({ id, ready: rd });
    this.send(rd.messages); // 1. may leave at once
    this.persist(id, rd); // 2. snapshot, entries, hard state
    this.send(rd.messagesAfterPersist); // 3. only now
    this.apply(id, rd); // 4.
    node.advance(); // 5.
    return rd;
  }

  persist(id: NodeId, rd: Ready): void {
    const storage = this.storage(id);
    if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) storage.append(rd.entries);
    if (rd.hardState !== null) storage.setHardState(rd.hardState);
  }

  apply(id: NodeId, rd: Ready): void {
    if (rd.softState?.role === Role.Leader) this.#observe(id);
    if (rd.snapshot !== null) this.#machines.set(id, decodeSnapshot(rd.snapshot));
    const machine = this.#machines.get(id) ?? [];
    this.#machines.set(id, machine);
    for (const e of rd.committedEntries) {
      const prev = machine[machine.length - 1]?.index ?? 0;
      if (e.index !== prev + 1) throw new Error(`${id} applied ${e.index} right after ${prev}`);
      this.#checkApplied(id, e);
      this.#checkDurable(id, e);
      machine.push({ index: e.index, term: e.term, data: text(e.data) });
    }
    const reads = this.#readStates.get(id) ?? [];
    reads.push(...rd.readStates);
    this.#readStates.set(id, reads);
  }

  // ------------------------------------------------------------------ network

  send(messages: readonly Message[]): void {
    for (const m of messages) {
      this.sent.push(m);
      this.queue.push(m);
    }
  }

  /** Delivers one message unless it is `lost`, its destination is down or a filter drops it. Returns whether it arrived. */
  deliver(m: Message, lost = false): boolean {
    const dropped = lost || !this.isUp(m.to) || this.#filters.some((f) => f(m));
    this.log.push(`${dropped ? 'DROP ' : ''}${describeMessage(m)}`);
    if (!dropped) {
      this.node(m.to).step(m);
      this.#observe(m.to);
    }
    if (m.type === 'MsgSnap' && this.#reportSnapshots && this.isUp(m.from)) this.node(m.from).reportSnapshot(m.to, !dropped);
    return !dropped;
  }

  /** Delivers every queued message once, in order (messages they cause are queued, not delivered). */
  deliverAll(): void {
    const batch = this.queue;
    this.queue = [];
    for (const m of batch) this.deliver(m);
  }

  /** Carries out one Ready of every live node that has one. Returns whether any had one. */
  handleReadies(): boolean {
    let any = false;
    for (const id of this.ids) if (this.isUp(id) && this.handleReady(id) !== null) any = true;
    return any;
  }

  /** Readies and deliveries, alternately, until no node has a Ready and no message is queued. */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      const busy = this.handleReadies();
      if (!busy && this.queue.length === 0) return;
      this.deliverAll();
    }
    throw new Error(`network did not stabilize within ${maxRounds} rounds`);
  }

  /**
   * Restarts every crashed node, heals the network, then ticks everyone (stabilizing after each
   * tick) until one leader is known to all, everything in its log is committed, and every node
   * applied it. Throws if that takes more than `maxTicks`.
   */
  settle(maxTicks = 2_000): void {
    for (const id of this.ids) if (!this.isUp(id)) this.restart(id);
    this.heal();
    for (let t = 0; t < maxTicks; t++) {
      this.stabilize();
      const lead = this.leader();
      if (lead !== null) {
        const ls = this.status(lead);
        const done = ls.commit === ls.lastIndex && this.ids.every((id) => {
          const st = this.status(id);
          return st.lead === lead && st.term === ls.term && st.applied === ls.commit;
        });
        if (done) return;
      }
      for (const id of this.ids) this.tick(id);
    }
    throw new Error(`network did not settle within ${maxTicks} ticks`);
  }

  /** Drops every message the filter matches until `heal()`. Returns a function that removes it. */
  drop(filter: Filter): () => void {
    this.#filters.push(filter);
    return () => {
      this.#filters = this.#filters.filter((f) => f !== filter);
    };
  }

  isolate(id: NodeId): () => void {
    return this.drop((m) => m.from === id || m.to === id);
  }

  /** Drops messages between a and b, both ways. */
  cut(a: NodeId, b: NodeId): () => void {
    return this.drop((m) => (m.from === a && m.to === b) || (m.from === b && m.to === a));
  }

  heal(): void {
    this.#filters = [];
  }

  clearLog(): void {
    this.sent.length = 0;
    this.log.length = 0;
  }

  /** Sent messages matching the given fields. */
  sentWhere(match: Partial<Pick<Message, 'type' | 'from' | 'to'>>): Message[] {
    return this.sent.filter((m) => (match.type === undefined || m.type === match.type) && (match.from === undefined || m.from === match.from) && (match.to === undefined || m.to === match.to));
  }

  // ------------------------------------------------------------------ monitors

  #observe(id: NodeId): void {
    const st = this.node(id).status();
    if (st.role !== Role.Leader) return;
    const other = this.leaders.get(st.term);
    if (other !== undefined && other !== id) throw new Error(`election safety violated: ${other} and ${id} both lead term ${st.term}`);
    this.leaders.set(st.term, id);
  }

  /** The contract: committed entries handed out in a Ready are durable once that Ready is persisted. */
  #checkDurable(id: NodeId, e: Entry): void {
    const storage = this.storage(id);
    if (e.index < storage.firstIndex()) return; // compacted since: covered by the snapshot
    if (e.index > storage.lastIndex() || storage.term(e.index) !== e.term) throw new Error(`${id} applies ${describeEntry(e)}, which is not in its storage`);
  }

  #checkApplied(id: NodeId, e: Entry): void {
    const seen = this.#appliedAt.get(e.index);
    const mine = `${describeEntry(e)} ${text(e.data)}`;
    if (seen !== undefined && seen !== mine) throw new Error(`state machine safety violated at ${e.index}: ${id} applied "${mine}", another node "${seen}"`);
    this.#appliedAt.set(e.index, mine);
  }
}

function decodeSnapshot(snapshot: Snapshot): Applied[] {
  if (snapshot.data.byteLength === 0) return [];
  return JSON.parse(text(snapshot.data)) as Applied[];
}

/** Runs `fn`, which must throw a RaftKvError with `code`, and returns that error. */
export function expectRaftKvError(fn: () => unknown, code: ErrorCode): RaftKvError {
  try {
    fn();
  } catch (error) {
    if (isRaftKvError(error, code)) return error;
    throw new Error(`expected a RaftKvError with code ${code}`, { cause: error });
  }
  throw new Error(`expected a RaftKvError with code ${code}, nothing was thrown`);
}

export interface ChaosOptions {
  readonly steps: number;
  /** Probability that a delivered message is lost. */
  readonly dropRate?: number;
  /** Now and then split the nodes into two random sides, or heal. */
  readonly partitions?: boolean;
  readonly crashes?: boolean;
  readonly compaction?: boolean;
}

/**
 * A random schedule driven by `rng`: ticks, proposals, Readies, and deliveries of random queued
 * messages (so messages are reordered, duplicated and dropped); optionally partitions, crashes,
 * restarts and compactions. The network's monitors check safety on every event.
 */
export function runChaos(net: Network, rng: SeededRandom, options: ChaosOptions): void {
  const pick = <T>(xs: readonly T[]): T => xs[rng.nextInt(xs.length)]!;
  let proposals = 0;
  for (let step = 0; step < options.steps; step++) {
    const up = net.ids.filter((id) => net.isUp(id));
    const down = net.ids.filter((id) => !net.isUp(id));
    const r = rng.nextInt(100);
    if (up.length === 0) {
      net.restart(pick(down));
    } else if (r < 30) {
      net.tick(pick(up));
    } else if (r < 37) {
      const id = pick(up);
      const st = net.status(id);
      if (st.role === Role.Leader && st.leadTransferee === null) net.propose(id, `v${proposals++}`);
    } else if (r < 55) {
      net.handleReady(pick(up));
    } else if (r < 90) {
      for (let n = 1 + rng.nextInt(4); n > 0 && net.queue.length > 0; n--) {
        const k = rng.nextInt(net.queue.length);
        const m = net.queue[k]!;
        if (!rng.chance(0.05)) net.queue.splice(k, 1); // else it stays queued: a duplicate
        net.deliver(m, rng.chance(options.dropRate ?? 0));
      }
    } else if (r < 94) {
      if (options.partitions !== true || !rng.chance(0.3)) continue;
      net.heal();
      if (rng.chance(0.5)) {
        const side = new Set(net.ids.filter(() => rng.chance(0.5)));
        net.drop((m) => side.has(m.from) !== side.has(m.to));
      }
    } else if (r < 96) {
      if (options.crashes === true && rng.chance(0.25)) net.crash(pick(up));
    } else if (r < 98) {
      if (options.crashes === true && down.length > 0) net.restart(pick(down));
    } else if (options.compaction === true) {
      const id = pick(up);
      const st = net.status(id);
      if (st.applied >= st.firstIndex) net.compact(id);
    }
  }
}
