/**
 * Throughput of the consensus core and the Ready loop, without disks or sockets (in the spirit
 * of etcd-io/raft's BenchmarkProposal3Nodes): three replicas (the node's own Ready loop) in one
 * process over the in-memory log and state machine, messages and I/O completions delivered
 * through in-memory queues, no faults, no timers. A leader is elected, then puts of 100-byte
 * values are proposed in batches: `batch` proposals, then everything queued is run until quiet.
 *
 * An entry counts as committed when the leader's replica has applied it and answered its
 * proposal. The replicas compact every 10k applied entries, so memory stays bounded.
 *
 *   tsx --conditions=@raftkv/source scripts/bench-core.ts [--entries 200000] [--sizes 1,16,256] [--warmup N]
 */
import { parseArgs } from 'node:util';
import { encodeCommand, type MemoryImage } from '@raftkv/kv';
import { MemoryReplicaLog, MemoryReplicaStateMachine, Replica, type IoScheduler, type ReplicaLogger } from '@raftkv/node';
import { Role, SeededRandom, type Message, type NodeId } from '@raftkv/raft';

const PAYLOAD_BYTES = 100;
const COMPACT_EVERY = 10_000;
/** Entries kept behind a compaction so that a follower a little behind needs no snapshot. */
const COMPACT_KEEP = 1_000;
const SILENT: ReplicaLogger = { info: () => undefined, warn: () => undefined, fatal: () => undefined };

class Cluster {
  readonly replicas = new Map<NodeId, Replica<MemoryImage>>();
  readonly stateMachines = new Map<NodeId, MemoryReplicaStateMachine>();
  #messages: Message[] = [];
  #completions: (() => void)[] = [];
  messagesDelivered = 0;
  snapshotsSent = 0;

  constructor(ids: readonly NodeId[], seed: number) {
    const random = new SeededRandom(seed);
    const schedule: IoScheduler = (_operation, complete) => this.#completions.push(complete);
    for (const id of ids) {
      const sm = new MemoryReplicaStateMachine({}, schedule);
      const io = {
        log: new MemoryReplicaLog({ voters: [...ids], learners: [] }, schedule),
        stateMachine: sm,
        transport: { send: (m: Message) => this.#messages.push(m) },
        clock: { nowMs: () => 0 }, // time stands still: no elections but the one asked for
      };
      const options = {
        id,
        tickMs: 100,
        electionTimeoutTicks: 10,
        heartbeatIntervalTicks: 1,
        snapshotEveryEntries: COMPACT_EVERY + COMPACT_KEEP,
        snapshotCatchupEntries: COMPACT_KEEP,
        requestTimeoutMs: 1_000_000,
        pendingRequestsMax: 1_000_000,
        random: random.fork(),
        logger: SILENT,
      };
      Replica.start(options, io, (error, replica) => {
        if (error !== null || replica === null) throw error ?? new Error('no replica');
        this.replicas.set(id, replica);
        this.stateMachines.set(id, sm);
      });
    }
  }

  replica(id: NodeId): Replica<MemoryImage> {
    const r = this.replicas.get(id);
    if (r === undefined) throw new Error(`unknown node ${id}`);
    return r;
  }

  /** Runs every queued I/O completion and message delivery once. Returns whether there were any. */
  round(): boolean {
    const completions = this.#completions;
    this.#completions = [];
    for (const complete of completions) complete();
    const messages = this.#messages;
    this.#messages = [];
    for (const m of messages) {
      if (m.type === 'MsgSnap') {
        this.snapshotsSent++;
        const from = this.replica(m.from);
        this.replica(m.to).receiveSnapshot(m, from.snapshotImage(), (error) => from.snapshotSent(m.to, error === null));
      } else {
        this.replica(m.to).step(m);
      }
    }
    this.messagesDelivered += messages.length;
    return completions.length > 0 || messages.length > 0;
  }

  /** Rounds until nothing is left to do. */
  settle(maxRounds = 1_000_000): void {
    for (let k = 0; k < maxRounds; k++) if (!this.round()) return;
    throw new Error('cluster did not settle');
  }
}

interface Result {
  batch: number;
  entries: number;
  seconds: number;
  heapMB: number;
  messagesPerEntry: number;
}

/** Proposes `count` puts in batches of `batch` and waits until the leader has answered them all. */
function drive(cluster: Cluster, leader: Replica<MemoryImage>, batch: number, count: number): number {
  let proposed = 0;
  let answered = 0;
  const done = (error: Error | null): void => {
    if (error !== null) throw error;
    answered++;
  };
  const value = new Uint8Array(PAYLOAD_BYTES);
  while (proposed < count) {
    const k = Math.min(batch, count - proposed);
    for (let j = 0; j < k; j++) {
      leader.propose(encodeCommand({ type: 'put', key: `k${proposed % 10_000}`, value }), done);
      proposed++;
    }
    cluster.round();
  }
  while (answered < count) {
    if (!cluster.round()) throw new Error(`stalled at ${answered}/${count} answered`);
  }
  return answered;
}

function runSize(batch: number, entries: number, warmup: number): Result {
  const cluster = new Cluster(['n1', 'n2', 'n3'], 42 + batch);
  const leader = cluster.replica('n1');
  leader.campaign();
  cluster.settle();
  if (leader.role !== Role.Leader) throw new Error('n1 did not become leader');

  drive(cluster, leader, batch, warmup);
  cluster.settle();

  const messagesBefore = cluster.messagesDelivered;
  const t0 = performance.now();
  const committed = drive(cluster, leader, batch, entries);
  const seconds = (performance.now() - t0) / 1000;
  const messages = cluster.messagesDelivered - messagesBefore;

  // Honesty checks: every node applied the same log, and nothing needed a snapshot.
  cluster.settle();
  const applied = cluster.stateMachines.get('n1')!.appliedIndex;
  for (const [id, sm] of cluster.stateMachines) {
    if (sm.appliedIndex !== applied) throw new Error(`${id} applied up to ${sm.appliedIndex}, leader ${applied}`);
  }
  if (cluster.snapshotsSent > 0) console.warn(`note: ${cluster.snapshotsSent} snapshot(s) were sent at batch ${batch}`);
  return { batch, entries: committed, seconds, heapMB: process.memoryUsage().heapUsed / 2 ** 20, messagesPerEntry: messages / committed };
}

function parsePositiveInt(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got '${value}'`);
  return n;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      entries: { type: 'string', default: '200000' },
      sizes: { type: 'string', default: '1,16,256' },
      warmup: { type: 'string' },
    },
    strict: true,
  });
  const entries = parsePositiveInt(values.entries, '--entries');
  const sizes = values.sizes.split(',').map((s) => parsePositiveInt(s.trim(), '--sizes'));
  const warmup = values.warmup === undefined ? Math.max(1_000, Math.floor(entries / 10)) : parsePositiveInt(values.warmup, '--warmup');

  console.log(`raftkv core and Ready loop: 3 replicas in one process, in-memory log and state machine, in-memory delivery, no faults`);
  console.log(`${entries} puts of ${PAYLOAD_BYTES} bytes per batch size after ${warmup} warm-up puts; compaction every ${COMPACT_EVERY}; node ${process.version}`);
  console.log('');
  const header = ['batch', 'entries', 'seconds', 'entries/s', 'msgs/entry', 'heap MB'];
  const rows: string[][] = [];
  for (const batch of sizes) {
    const r = runSize(batch, entries, warmup);
    rows.push([
      String(r.batch),
      String(r.entries),
      r.seconds.toFixed(3),
      Math.round(r.entries / r.seconds).toLocaleString('en-US'),
      r.messagesPerEntry.toFixed(2),
      r.heapMB.toFixed(1),
    ]);
  }
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((row) => row[k]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, k) => c.padStart(widths[k]!)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

main();
