/**
 * Replicas over the in-memory log and state machine, with every I/O completion, message and
 * clock step in the test's hands: nothing happens until the test says so.
 */
import { encodeCommand, type MemoryImage } from '@raftkv/kv';
import { SeededRandom, type Message, type NodeId } from '@raftkv/raft';
import { MemoryReplicaLog, MemoryReplicaStateMachine, Replica, type IoOperation, type ReplicaLogger, type ReplicaOptions } from '../src/index.js';

export const SILENT: ReplicaLogger = { info: () => undefined, warn: () => undefined, fatal: () => undefined };

export interface Completion {
  readonly operation: IoOperation;
  readonly complete: () => void;
}

export class TestNode {
  readonly id: NodeId;
  readonly log: MemoryReplicaLog;
  readonly sm: MemoryReplicaStateMachine;
  /** I/O operations started and not yet completed, oldest first. */
  readonly pending: Completion[] = [];
  readonly sent: Message[] = [];
  readonly warnings: string[] = [];
  nowMs = 0;
  replica: Replica<MemoryImage> | null = null;
  fatal: Error | null = null;
  readonly #voters: readonly NodeId[];
  readonly #random: SeededRandom;
  readonly #options: Partial<ReplicaOptions>;

  constructor(id: NodeId, voters: readonly NodeId[], options: Partial<ReplicaOptions> = {}, seed = 1) {
    this.id = id;
    this.#voters = voters;
    this.#options = options;
    this.#random = new SeededRandom(seed);
    const schedule = (operation: IoOperation, complete: () => void): void => {
      this.pending.push({ operation, complete });
    };
    this.log = new MemoryReplicaLog({ voters: [...voters], learners: [] }, schedule);
    this.sm = new MemoryReplicaStateMachine({}, schedule);
  }

  /** Starts (or restarts) the replica over the same log and state machine; completes any I/O start needs. */
  start(): Replica<MemoryImage> {
    let started: Replica<MemoryImage> | null = null;
    let failure: Error | null = null;
    Replica.start(
      {
        id: this.id,
        tickMs: 10,
        electionTimeoutTicks: 10,
        heartbeatIntervalTicks: 1,
        snapshotEveryEntries: 1_000_000,
        snapshotCatchupEntries: 0,
        requestTimeoutMs: 1_000,
        pendingRequestsMax: 1_000,
        random: this.#random.fork(),
        logger: { info: () => undefined, warn: (_f, m) => this.warnings.push(m), fatal: (_f, m) => this.warnings.push(m) },
        ...this.#options,
      },
      {
        log: this.log,
        stateMachine: this.sm,
        transport: { send: (m) => this.sent.push(m) },
        clock: { nowMs: () => this.nowMs },
        events: { onFatal: (error) => (this.fatal = error) },
      },
      (error, replica) => {
        failure = error;
        started = replica;
      },
    );
    this.drain();
    if (failure !== null) throw failure;
    if (started === null) throw new Error(`${this.id} did not start`);
    this.replica = started;
    return started;
  }

  get r(): Replica<MemoryImage> {
    if (this.replica === null) throw new Error(`${this.id} is not running`);
    return this.replica;
  }

  /** Completes the oldest pending I/O operation (of `operation`, if given); returns it. */
  completeNext(operation?: IoOperation): Completion {
    const k = operation === undefined ? 0 : this.pending.findIndex((c) => c.operation === operation);
    if (k < 0 || k >= this.pending.length) throw new Error(`${this.id}: no pending ${operation ?? 'operation'} (pending: ${this.pending.map((c) => c.operation).join(', ')})`);
    const [c] = this.pending.splice(k, 1);
    c!.complete();
    return c!;
  }

  /** Completes I/O until none is pending. */
  drain(maxSteps = 10_000): void {
    for (let k = 0; k < maxSteps && this.pending.length > 0; k++) this.completeNext();
    if (this.pending.length > 0) throw new Error(`${this.id}: I/O did not settle`);
  }

  /** Messages sent since the last call, removed. */
  takeSent(): Message[] {
    return this.sent.splice(0);
  }

  put(key: string, value: string, done: (error: Error | null) => void = () => undefined): void {
    this.r.propose(encodeCommand({ type: 'put', key, value: new TextEncoder().encode(value) }), done);
  }

  value(key: string): string | null {
    const found = this.sm.kv.get(key);
    return found === null ? null : new TextDecoder().decode(found.value);
  }

  get voters(): readonly NodeId[] {
    return this.#voters;
  }
}

/** Makes `node` the leader of `term` by answering its (pre-)vote requests itself. */
export function electWithFakeVotes(node: TestNode, grantFrom: NodeId): void {
  node.r.campaign();
  node.drain();
  for (let round = 0; round < 4 && node.r.role !== 'leader'; round++) {
    for (const m of node.takeSent()) {
      if ((m.type === 'MsgPreVote' || m.type === 'MsgVote') && m.to === grantFrom) {
        node.r.step({ type: m.type === 'MsgPreVote' ? 'MsgPreVoteResp' : 'MsgVoteResp', from: grantFrom, to: node.id, term: m.term, reject: false });
        node.drain();
      }
    }
  }
  if (node.r.role !== 'leader') throw new Error(`${node.id} did not become leader`);
}
