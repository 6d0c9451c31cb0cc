/**
 * Throughput and latency of an embedded three-node cluster: `startCluster` from @raftkv/node,
 * real LevelDB (every log batch fsynced) and loopback TCP, default timeouts (tick 100 ms,
 * election 1000 ms, heartbeat 100 ms). All three nodes live in this one process, so they share
 * its CPU and event loop; the RSS printed is that of the whole process.
 *
 * 1. Writes: N concurrent writers, each awaiting `put` on the leader before its next one;
 *    100-byte values over 10,000 keys. One second of warm-up per level, then `--seconds`.
 *    A write counts once it resolved, i.e. it is committed on a majority and applied on the leader.
 * 2. Linearizable reads: N concurrent readers of existing keys on the leader (ReadIndex).
 * 3. Replace a machine: a fresh cluster loads `--snapshot-keys` keys; a follower dies for good
 *    and is removed; a new node joins under a new id as a learner while `--steady-writers`
 *    writers go on. Measured: until its state machine has applied the leader's commit index of
 *    that moment (it catches up by snapshot), and until the leader has promoted it; the steady
 *    writes' longest latency, and any leader change (there should be none).
 *
 * Latency percentiles are exact: nearest rank over every sample of the level, sorted.
 *
 *   tsx --conditions=@raftkv/source scripts/bench-node.ts [--seconds 10] [--levels 1,16,256]
 *       [--no-snapshot] [--snapshot-keys 100000] [--snapshot-only] [--steady-writers 4]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startCluster, type LocalCluster, type RaftKvNode } from '@raftkv/node';
import { ErrorCode, isRaftKvError } from '@raftkv/raft';

const VALUE_BYTES = 100;
const KEY_COUNT = 10_000;
const WARMUP_MS = 1_000;
/** Concurrency of the loads that are not measured (filling the key space, the snapshot's keys). */
const LOAD_WRITERS = 256;
/** A new node that has not been promoted by then is reported as a failure. */
const REJOIN_TIMEOUT_MS = 180_000;
/** Distinct values written, so that consecutive writes do not all carry the same bytes. */
const VALUE_POOL_COUNT = 64;

const VALUES: readonly Uint8Array[] = Array.from({ length: VALUE_POOL_COUNT }, () => new Uint8Array(randomBytes(VALUE_BYTES)));
const benchKey = (k: number): string => `bench/${String(k).padStart(5, '0')}`;
const snapKey = (k: number): string => `snap/${String(k).padStart(7, '0')}`;

interface Options {
  readonly seconds: number;
  readonly levels: readonly number[];
  readonly snapshot: boolean;
  readonly snapshotKeys: number;
  readonly snapshotOnly: boolean;
  readonly steadyWriters: number;
}

interface PhaseResult {
  readonly ops: number;
  readonly seconds: number;
  /** Every latency of the measured window, in nanoseconds, sorted ascending. */
  readonly latenciesNs: Float64Array;
  /** Requests that failed with a retryable error (leader change, timeout) and were not counted. */
  readonly errors: number;
}

interface Row {
  readonly op: 'put' | 'get';
  readonly concurrency: number;
  readonly result: PhaseResult;
  readonly rssMB: number;
}

/** Small deterministic PRNG (xorshift32), one per worker: key choice costs no syscall. */
function xorshift(seed: number): () => number {
  let s = seed | 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** Nearest-rank percentile of sorted samples: the smallest sample with at least p% of samples at or below it. */
function percentileNs(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

function retryable(error: unknown): boolean {
  return (
    isRaftKvError(error, ErrorCode.NOT_LEADER) ||
    isRaftKvError(error, ErrorCode.PROPOSAL_DROPPED) ||
    isRaftKvError(error, ErrorCode.TIMEOUT)
  );
}

/**
 * Runs `concurrency` workers, each calling `op` in a loop until `durationMs` has passed (requests
 * in flight at the deadline finish and count). A warm-up is a phase whose result is ignored.
 */
async function runPhase(
  cluster: LocalCluster,
  concurrency: number,
  durationMs: number,
  op: (leader: RaftKvNode, next: () => number) => Promise<void>,
): Promise<PhaseResult> {
  let leader = await cluster.leader();
  const latencies: number[] = [];
  let errors = 0;
  const t0 = process.hrtime.bigint();
  const stopAt = t0 + BigInt(durationMs) * 1_000_000n;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const next = xorshift(0x9e3779b9 ^ (w * 7919 + durationMs));
      while (process.hrtime.bigint() < stopAt) {
        const start = process.hrtime.bigint();
        try {
          await op(leader, next);
        } catch (error) {
          if (!retryable(error)) throw error;
          errors++;
          leader = await cluster.leader();
          continue;
        }
        latencies.push(Number(process.hrtime.bigint() - start));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const sorted = Float64Array.from(latencies).sort();
  return { ops: latencies.length, seconds, latenciesNs: sorted, errors };
}

const putOp = async (leader: RaftKvNode, next: () => number): Promise<void> => {
  const r = next();
  await leader.put(benchKey(r % KEY_COUNT), VALUES[r % VALUE_POOL_COUNT]!);
};

const getOp = async (leader: RaftKvNode, next: () => number): Promise<void> => {
  const key = benchKey(next() % KEY_COUNT);
  const item = await leader.get(key);
  // Honesty check: every key was written before the read phases.
  if (item === null || item.value.byteLength !== VALUE_BYTES) throw new Error(`read of ${key} found ${item === null ? 'nothing' : `${item.value.byteLength} bytes`}`);
};

/** Writes keys [0, count) with `writers` concurrent writers. */
async function load(leader: RaftKvNode, count: number, key: (k: number) => string, writers: number): Promise<void> {
  let nextKey = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let k = nextKey++; k < count; k = nextKey++) await leader.put(key(k), VALUES[k % VALUE_POOL_COUNT]!);
    }),
  );
}

const rssMB = (): number => process.memoryUsage().rss / 2 ** 20;
const ms = (ns: number): string => (ns / 1e6).toFixed(2);
const perSecond = (r: PhaseResult): number => r.ops / r.seconds;
const thousands = (n: number): string => Math.round(n).toLocaleString('en-US');

async function throughput(root: string, options: Options): Promise<Row[]> {
  const cluster = await startCluster({ nodes: 3, dataDir: join(root, 'throughput') });
  const leaderChanges: string[] = [];
  for (const node of cluster.nodes) node.on('leader', (c) => leaderChanges.push(`${node.id} sees leader ${c.leader ?? 'none'} (term ${c.term})`));
  try {
    const leader = await cluster.leader();
    const settled = leaderChanges.length;
    console.log(`leader ${leader.id}; filling ${thousands(KEY_COUNT)} keys with ${LOAD_WRITERS} writers ...`);
    await load(leader, KEY_COUNT, benchKey, LOAD_WRITERS);
    const rows: Row[] = [];
    for (const concurrency of options.levels) {
      await runPhase(cluster, concurrency, WARMUP_MS, putOp);
      const writes = await runPhase(cluster, concurrency, options.seconds * 1000, putOp);
      rows.push({ op: 'put', concurrency, result: writes, rssMB: rssMB() });
      await runPhase(cluster, concurrency, WARMUP_MS, getOp);
      const reads = await runPhase(cluster, concurrency, options.seconds * 1000, getOp);
      rows.push({ op: 'get', concurrency, result: reads, rssMB: rssMB() });
      console.log(`  level ${concurrency} done`);
    }
    const after = leaderChanges.slice(settled);
    if (after.length > 0) console.log(`note: leadership changed during the run: ${after.join('; ')}`);
    return rows;
  } finally {
    await cluster.close();
  }
}

function printTable(rows: readonly Row[]): void {
  const header = ['op', 'conc', 'ops', 'seconds', 'ops/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'rss MB'];
  const cells = rows.map((row) => {
    const r = row.result;
    return [
      row.op === 'put' ? 'put' : 'get (lin)',
      String(row.concurrency),
      String(r.ops),
      r.seconds.toFixed(2),
      thousands(perSecond(r)),
      ms(percentileNs(r.latenciesNs, 50)),
      ms(percentileNs(r.latenciesNs, 99)),
      ms(r.latenciesNs[r.latenciesNs.length - 1] ?? NaN),
      String(r.errors),
      row.rssMB.toFixed(0),
    ];
  });
  const widths = header.map((h, k) => Math.max(h.length, ...cells.map((c) => c[k]!.length)));
  const line = (c: readonly string[]): string => c.map((cell, k) => (k === 0 ? cell.padEnd(widths[k]!) : cell.padStart(widths[k]!))).join('  ');
  console.log(line(header));
  for (const c of cells) console.log(line(c));
  console.log('');
  for (const concurrency of new Set(rows.map((r) => r.concurrency))) {
    const w = rows.find((r) => r.op === 'put' && r.concurrency === concurrency)!;
    const g = rows.find((r) => r.op === 'get' && r.concurrency === concurrency)!;
    console.log(
      `level ${concurrency}: ${thousands(perSecond(w.result))} writes/s ` +
        `(p50 ${ms(percentileNs(w.result.latenciesNs, 50))} ms, p99 ${ms(percentileNs(w.result.latenciesNs, 99))} ms, ` +
        `max ${ms(w.result.latenciesNs[w.result.latenciesNs.length - 1] ?? NaN)} ms); ` +
        `${thousands(perSecond(g.result))} linearizable reads/s ` +
        `(p50 ${ms(percentileNs(g.result.latenciesNs, 50))} ms, p99 ${ms(percentileNs(g.result.latenciesNs, 99))} ms); ` +
        `rss ${g.rssMB.toFixed(0)} MB`,
    );
  }
}

async function snapshotRejoin(root: string, keys: number, steadyWriters: number): Promise<void> {
  const cluster = await startCluster({ nodes: 3, dataDir: join(root, 'snapshot') });
  try {
    const leader = await cluster.leader();
    console.log('');
    console.log(`replace a machine: loading ${thousands(keys)} keys of ${VALUE_BYTES}-byte values with ${LOAD_WRITERS} writers ...`);
    const loadStart = process.hrtime.bigint();
    await load(leader, keys, snapKey, LOAD_WRITERS);
    const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;
    // The machine of a follower dies for good; the operator removes it and adds a new machine
    // under a new id, which joins as a learner, catches up by snapshot and is promoted.
    const victim = cluster.nodes.find((n) => n !== leader)!;
    await cluster.stopNode(victim.id);
    await cluster.removeNode(victim.id);
    const { commit: target, firstIndex, term } = leader.status();
    console.log(`loaded in ${loadSeconds.toFixed(1)} s; leader ${leader.id} (term ${term}) log starts at ${firstIndex} (compacted), commit ${target}; ${victim.id} died and was removed`);

    const leaderChanges: string[] = [];
    for (const node of cluster.nodes) node.on('leader', (c) => leaderChanges.push(`${node.id} sees leader ${c.leader ?? 'none'} (term ${c.term})`));
    const steady = steadyWrites(leader, steadyWriters);
    const t0 = process.hrtime.bigint();
    const fresh = await cluster.addNode({ autoPromote: true });
    const deadline = Date.now() + REJOIN_TIMEOUT_MS;
    let caughtUpSeconds: number | null = null;
    for (;;) {
      if (caughtUpSeconds === null && fresh.status().appliedIndexKv >= target) caughtUpSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (leader.members().some((m) => m.id === fresh.id && m.role === 'voter')) break;
      if (Date.now() > deadline) {
        const st = fresh.status();
        const stats = fresh.transport.stats();
        throw new Error(
          `${fresh.id} was not promoted within ${REJOIN_TIMEOUT_MS / 1000} s: appliedIndexKv ${st.appliedIndexKv} of ${target}, ` +
            `role ${st.role}, term ${st.term}, lead ${st.lead ?? 'none'}, commit ${st.commit}, ` +
            `snapshots received ${stats.snapshotsReceived}, rejected ${stats.snapshotsRejected}`,
        );
      }
      await sleep(10);
    }
    const promotedSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const writes = await steady.stop();
    const payloadBytes = keys * (snapKey(0).length + VALUE_BYTES);
    const received = fresh.transport.stats().snapshotsReceived;
    console.log(
      `replace a machine: new node ${fresh.id} applied index ${target} in ${(caughtUpSeconds ?? promotedSeconds).toFixed(2)} s ` +
        `(${received} snapshot(s) received; ~${(payloadBytes / 1e6).toFixed(1)} MB of keys + values ` +
        `=> ~${(payloadBytes / 1e6 / (caughtUpSeconds ?? promotedSeconds)).toFixed(1)} MB/s, payload bytes only), promoted to voter after ${promotedSeconds.toFixed(2)} s`,
    );
    console.log(
      `replace a machine: ${steadyWriters} steady writer(s) meanwhile: ${thousands(writes.ok)} writes, ${writes.failed} failed, ` +
        `longest write ${ms(writes.longestNs)} ms; leader changes: ${leaderChanges.length === 0 ? 'none' : leaderChanges.join('; ')}`,
    );
  } finally {
    await cluster.close();
  }
}

/** Writers that put through `leader` one write at a time each until stopped, counting what they saw. */
function steadyWrites(leader: RaftKvNode, writers: number): { stop: () => Promise<{ ok: number; failed: number; longestNs: number }> } {
  let stopping = false;
  const seen = { ok: 0, failed: 0, longestNs: 0 };
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let k = 0; !stopping; k++) {
      const start = process.hrtime.bigint();
      try {
        await leader.put(`steady/${w}/${k % 1_000}`, VALUES[k % VALUE_POOL_COUNT]!);
        seen.ok++;
      } catch {
        seen.failed++;
        await sleep(10);
      }
      seen.longestNs = Math.max(seen.longestNs, Number(process.hrtime.bigint() - start));
    }
  });
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      return seen;
    },
  };
}

function positiveInt(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got '${value}'`);
  return n;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      levels: { type: 'string', default: '1,16,256' },
      'no-snapshot': { type: 'boolean', default: false },
      'snapshot-keys': { type: 'string', default: '100000' },
      'snapshot-only': { type: 'boolean', default: false },
      'steady-writers': { type: 'string', default: '4' },
    },
    strict: true,
  });
  return {
    seconds: positiveInt(values.seconds, '--seconds'),
    levels: values.levels.split(',').map((s) => positiveInt(s.trim(), '--levels')),
    snapshot: !values['no-snapshot'],
    snapshotKeys: positiveInt(values['snapshot-keys'], '--snapshot-keys'),
    snapshotOnly: values['snapshot-only'],
    steadyWriters: positiveInt(values['steady-writers'], '--steady-writers'),
  };
}

async function main(): Promise<void> {
  const options = parseOptions();
  // Bound the whole run: every phase is timed, so only a hang can reach this.
  const budgetMs = options.levels.length * 2 * (options.seconds * 1000 + WARMUP_MS + 30_000) + (options.snapshot ? REJOIN_TIMEOUT_MS * 2 : 0) + 60_000;
  const watchdog = setTimeout(() => {
    console.error(`bench-node: still running after ${budgetMs / 1000} s; giving up`);
    process.exit(2);
  }, budgetMs);
  watchdog.unref();

  console.log('raftkv node: 3 nodes in one process (startCluster), LevelDB with fsync, loopback TCP, default timeouts');
  console.log(
    `${options.seconds} s per level after ${WARMUP_MS / 1000} s of warm-up; ${VALUE_BYTES}-byte values over ${thousands(KEY_COUNT)} keys; ` +
      `node ${process.version}; rss is the whole process (all three nodes)`,
  );
  const root = await mkdtemp(join(tmpdir(), 'raftkv-bench-'));
  try {
    if (!options.snapshotOnly) printTable(await throughput(root, options));
    if (options.snapshot || options.snapshotOnly) await snapshotRejoin(root, options.snapshotKeys, options.steadyWriters);
  } finally {
    await rm(root, { recursive: true, force: true });
    clearTimeout(watchdog);
  }
}

try {
  await main();
} catch (error) {
  console.error('bench-node failed:', error);
  process.exitCode = 1;
}
