/**
 * Throughput of the consensus core alone (in the spirit of etcd-io/raft's
 * BenchmarkProposal3Nodes): three RawNodes in one process, MemoryStorage as "persistence",
 * messages delivered through an in-memory queue, no faults, no timers. A leader is elected,
 * then proposals of 100-byte payloads are made in batches: `batch` proposals, then one round
 * of Ready handling on every node followed by delivery of every queued message.
 *
 * An entry counts as committed only when the leader's Ready hands it out in
 * `committedEntries`. Storage is compacted every 10k applied entries so memory stays bounded.
 *
 *   tsx --conditions=@raftkv/source scripts/bench-core.ts [--entries 200000] [--sizes 1,16,256] [--warmup N]
 */
import { parseArgs } from 'node:util';
import { MemoryStorage, RawNode, Role, SeededRandom, type ConfState, type Message, type NodeId } from '../packages/raft/src/index.js';

const PAYLOAD_BYTES = 100;
const COMPACT_EVERY = 10_000;
/** Entries kept behind a compaction so that a follower a little behind needs no snapshot. */
const COMPACT_KEEP = 1_000;

interface BenchNode {
  readonly id: NodeId;
  readonly raw: RawNode;
  readonly storage: MemoryStorage;
  /** Last index applied (handed out in committedEntries, or installed by snapshot). */
  applied: number;
  /** Proposals (non-empty entries) handed out in committedEntries. */
  appliedProposals: number;
  compactedTo: number;
}

class Cluster {
  readonly nodes = new Map<NodeId, BenchNode>();
  #queue: Message[] = [];
  messagesDelivered = 0;
  snapshotsSent = 0;

  constructor(ids: readonly NodeId[], seed: number) {
    const conf: ConfState = { voters: [...ids], learners: [] };
    const random = new SeededRandom(seed);
    for (const id of ids) {
      const storage = new MemoryStorage(conf);
      const raw = new RawNode({ id, storage, random: random.fork() });
      this.nodes.set(id, { id, raw, storage, applied: 0, appliedProposals: 0, compactedTo: 0 });
    }
  }

  node(id: NodeId): BenchNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`unknown node ${id}`);
    return n;
  }

  /** Carries out one Ready of `n` following the persistence contract (types.ts, `Ready`). */
  #handleReady(n: BenchNode): void {
    const rd = n.raw.ready();
    for (const m of rd.messages) this.#queue.push(m);
    if (rd.snapshot !== null) n.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) n.storage.append(rd.entries);
    if (rd.hardState !== null) n.storage.setHardState(rd.hardState);
    for (const m of rd.messagesAfterPersist) this.#queue.push(m);
    if (rd.snapshot !== null) n.applied = rd.snapshot.meta.index;
    for (const e of rd.committedEntries) {
      n.applied = e.index;
      if (e.data.byteLength > 0) n.appliedProposals++;
    }
    n.raw.advance();
    if (n.applied - n.compactedTo >= COMPACT_EVERY + COMPACT_KEEP) {
      const index = n.applied - COMPACT_KEEP;
      n.storage.compact(n.raw.snapshotMeta(index), new Uint8Array(0));
      n.compactedTo = index;
    }
  }

  /** One Ready per node that has one, then delivery of everything queued. Returns whether anything happened. */
  round(): boolean {
    let busy = false;
    for (const n of this.nodes.values()) {
      if (n.raw.hasReady()) {
        this.#handleReady(n);
        busy = true;
      }
    }
    const queue = this.#queue;
    this.#queue = [];
    for (const m of queue) {
      this.node(m.to).raw.step(m);
      if (m.type === 'MsgSnap') {
        this.snapshotsSent++;
        this.node(m.from).raw.reportSnapshot(m.to, true);
      }
    }
    this.messagesDelivered += queue.length;
    return busy || queue.length > 0;
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

/** Proposes `count` entries in batches of `batch` and waits until the leader has handed them all out as committed. */
function drive(cluster: Cluster, leader: BenchNode, batch: number, count: number): void {
  const target = leader.appliedProposals + count;
  let proposed = 0;
  while (proposed < count) {
    const k = Math.min(batch, count - proposed);
    for (let j = 0; j < k; j++) {
      const data = new Uint8Array(PAYLOAD_BYTES);
      data[0] = proposed & 0xff;
      leader.raw.propose(data);
      proposed++;
    }
    cluster.round();
  }
  while (leader.appliedProposals < target) {
    if (!cluster.round()) throw new Error(`stalled at ${leader.appliedProposals}/${target} committed`);
  }
}

function runSize(batch: number, entries: number, warmup: number): Result {
  const cluster = new Cluster(['n1', 'n2', 'n3'], 42 + batch);
  const leader = cluster.node('n1');
  leader.raw.campaign();
  cluster.settle();
  if (leader.raw.status().role !== Role.Leader) throw new Error('n1 did not become leader');

  drive(cluster, leader, batch, warmup);
  cluster.settle();

  const before = leader.appliedProposals;
  const messagesBefore = cluster.messagesDelivered;
  const t0 = performance.now();
  drive(cluster, leader, batch, entries);
  const seconds = (performance.now() - t0) / 1000;
  const committed = leader.appliedProposals - before;
  const messages = cluster.messagesDelivered - messagesBefore;

  // Honesty checks: every node applied the same log, and nothing needed a snapshot.
  cluster.settle();
  const total = warmup + entries;
  for (const n of cluster.nodes.values()) {
    if (n.appliedProposals !== total) throw new Error(`${n.id} applied ${n.appliedProposals} proposals, expected ${total}`);
    if (n.applied !== leader.applied) throw new Error(`${n.id} applied up to ${n.applied}, leader ${leader.applied}`);
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

  console.log(`raftkv core: 3 RawNodes in one process, MemoryStorage, in-memory delivery, no faults`);
  console.log(`${entries} entries of ${PAYLOAD_BYTES} bytes per batch size after ${warmup} warm-up entries; compaction every ${COMPACT_EVERY}; node ${process.version}`);
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
