/**
 * One partition-test scenario, end to end: start a multi-process cluster whose links the
 * nemesis controls, run a client workload through every node's HTTP API while the nemesis
 * injects faults on a seeded schedule, heal everything, measure how long the first write
 * takes to succeed, let the nodes converge, and judge the history. Used by
 * `pnpm test:partitions` (scripts/partitions.ts) and by the default test suite.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeId } from '@raftkv/raft';
import { checkLinearizable, type CheckResult } from '../linearizability/index.js';
import { ProcessCluster } from '../process/process-cluster.js';
import type { LogLevel } from '../process/protocol.js';
import { Nemesis, type FaultKind, type NemesisEvent } from './nemesis.js';
import { processClusterTarget } from './targets.js';
import { RegisterWorkload, UniqueWriteWorkload, type HttpEndpoint, type LostWriteReport, type OperationCounts, type ReadConsistency } from './workload.js';

export type WorkloadKind = 'register' | 'unique-writes';

export interface ScenarioOptions {
  /** Names the scenario's directory and summary line. */
  readonly name: string;
  readonly workload: WorkloadKind;
  /** Faults the nemesis draws from (an empty list: no faults, a control run). */
  readonly faults: readonly FaultKind[];
  /** How long the nemesis works, in ms. */
  readonly durationMs: number;
  readonly seed?: number;
  /** Nodes in the cluster (default 3). */
  readonly nodes?: number;
  /** Where the history, the nemesis's events, the summary and the node logs go: `<outDir>/<name>/`. */
  readonly outDir: string;
  /** 'proxy' (default) or 'netns' (root only). */
  readonly network?: 'proxy' | 'netns';
  /** Read consistency of the register workload (default linearizable). */
  readonly consistency?: ReadConsistency;
  /** Concurrent clients (default 10). */
  readonly clients?: number;
  /** Register workload: keys at a time (default 5) and operations per key before moving on (default 200). */
  readonly keys?: number;
  readonly opsPerKey?: number;
  /** Node timing (default tick 50 ms, election timeout 500 ms, heartbeat 50 ms). */
  readonly tickMs?: number;
  readonly electionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  /** Each fault episode lasts this long (ms; default: from 2 to 6 election timeouts). */
  readonly faultMs?: readonly [number, number];
  /** Quiet time between episodes (ms; default: from 1 to 3 election timeouts). */
  readonly quietMs?: readonly [number, number];
  /** After the heal, a write must succeed within this time (default 30 s), or the scenario fails. */
  readonly recoveryTimeoutMs?: number;
  /** Node log level in the log files (default 'info'). */
  readonly logLevel?: LogLevel;
  /** Search budget of the checker per key (default 1,000,000 steps). */
  readonly checkBudget?: number;
  /** Progress lines (nemesis events), e.g. console.log. */
  readonly log?: (line: string) => void;
}

export interface ScenarioResult {
  readonly name: string;
  readonly workload: WorkloadKind;
  readonly seed: number;
  readonly nodes: number;
  readonly network: 'proxy' | 'netns';
  readonly durationMs: number;
  readonly faults: readonly FaultKind[];
  /** Operations: succeeded (incl. CAS that failed their comparison), failed for sure, indeterminate. */
  readonly ops: OperationCounts;
  /** Fault episodes the nemesis started. */
  readonly episodes: number;
  readonly events: readonly NemesisEvent[];
  /** From the heal to the first successful write (null: none within recoveryTimeoutMs). */
  readonly healToFirstWriteMs: number | null;
  /** Register workload: the checker's verdict. */
  readonly linearizable: CheckResult['result'] | null;
  /** Unique-writes workload: what the read-back found. */
  readonly lostWrites: LostWriteReport | null;
  /** Every way the scenario failed (empty: it passed). */
  readonly violations: string[];
  readonly dir: string;
}

const RECOVERY_TIMEOUT_MS = 30_000;
const PROBE_TIMEOUT_MS = 1_000;
const PROBE_PAUSE_MS = 20;
/** The workload runs on after the heal until the nodes have recovered, and this much longer. */
const AFTER_HEAL_MS = 2_000;
/** How long the nodes have to agree on every register's value after the heal. */
const CONVERGE_TIMEOUT_MS = 20_000;

export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const seed = options.seed ?? 1;
  const nodes = options.nodes ?? 3;
  const network = options.network ?? 'proxy';
  const electionTimeoutMs = options.electionTimeoutMs ?? 500;
  const log = options.log ?? ((): void => {});
  const dir = join(options.outDir, options.name);
  const logDir = join(dir, 'logs');
  await mkdir(logDir, { recursive: true });
  const violations: string[] = [];

  const cluster = await ProcessCluster.start({
    nodes,
    network,
    http: true,
    logDir,
    logLevel: options.logLevel ?? 'info',
    tickMs: options.tickMs ?? 50,
    electionTimeoutMs,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 50,
    requestTimeoutMs: 2_000,
  });
  let result: ScenarioResult;
  let register: RegisterWorkload | null = null;
  let unique: UniqueWriteWorkload | null = null;
  try {
    const endpoints = (): HttpEndpoint[] => cluster.ids.map((id) => ({ id, address: cluster.httpAddress(id) }));
    const target = processClusterTarget(cluster);
    const nemesis = new Nemesis(target, { seed, onEvent: (e) => log(`  [${(e.at / 1000).toFixed(1)}s] ${e.kind} ${e.phase}: ${e.detail}`) });
    if ((await nemesis.waitForLeader(30_000)) === null) throw new Error('no leader elected within 30 s of the start');

    const common = { endpoints, clients: options.clients ?? 10, seed, requestTimeoutMs: 3_000 };
    if (options.workload === 'register') register = new RegisterWorkload({ ...common, consistency: options.consistency ?? 'linearizable', keys: options.keys ?? 5, opsPerKey: options.opsPerKey ?? 200 }).start();
    else unique = new UniqueWriteWorkload(common).start();

    let episodes = 0;
    if (options.faults.length > 0) {
      episodes = await nemesis.schedule({
        faults: options.faults,
        durationMs: options.durationMs,
        faultMs: options.faultMs ?? [2 * electionTimeoutMs, 6 * electionTimeoutMs],
        quietMs: options.quietMs ?? [electionTimeoutMs, 3 * electionTimeoutMs],
      });
    } else {
      await sleep(options.durationMs);
      await nemesis.healAll();
    }

    // Healed: how long until a write succeeds (through any node, in turn)?
    const healedAt = performance.now();
    const healToFirstWriteMs = await firstWrite(endpoints, healedAt, options.recoveryTimeoutMs ?? RECOVERY_TIMEOUT_MS);
    if (healToFirstWriteMs === null) violations.push(`no write succeeded within ${(options.recoveryTimeoutMs ?? RECOVERY_TIMEOUT_MS) / 1000} s of the heal`);
    log(`  healed; first write after ${healToFirstWriteMs === null ? 'never' : `${Math.round(healToFirstWriteMs)} ms`}`);
    await sleep(AFTER_HEAL_MS);
    await register?.stop();
    await unique?.stop();

    let linearizable: CheckResult['result'] | null = null;
    let lostWrites: LostWriteReport | null = null;
    let ops: OperationCounts = { ok: 0, fail: 0, unknown: 0 };
    const files: Promise<void>[] = [];
    if (register !== null) {
      for (const kind of ['read', 'write', 'cas'] as const) {
        ops = { ok: ops.ok + register.counts[kind].ok, fail: ops.fail + register.counts[kind].fail, unknown: ops.unknown + register.counts[kind].unknown };
      }
      const check = checkLinearizable(register.checkable(), options.checkBudget === undefined ? {} : { budget: options.checkBudget });
      linearizable = check.result;
      for (const verdict of check.keys) {
        if (verdict.result === 'illegal') violations.push(`not linearizable: key ${verdict.key}: ${verdict.explanation}`);
        if (verdict.result === 'unknown') log(`  checker gave up on key ${verdict.key}: ${verdict.reason}`);
      }
      files.push(writeJson(join(dir, 'history.json'), register.history));
      files.push(writeJson(join(dir, 'check.json'), check));
      const diverged = await convergence(endpoints, register.keysUsed());
      violations.push(...diverged);
    }
    if (unique !== null) {
      ops = { ...unique.counts };
      lostWrites = await unique.verify(CONVERGE_TIMEOUT_MS);
      for (const lost of lostWrites.lost.slice(0, 20)) violations.push(`acknowledged write lost: ${lost.key} = '${lost.expected}', read ${lost.found === null ? 'nothing' : `'${lost.found}'`}`);
      if (lostWrites.lost.length > 20) violations.push(`... and ${lostWrites.lost.length - 20} more acknowledged writes lost`);
      for (const key of lostWrites.failedButApplied.slice(0, 20)) violations.push(`a write answered as not applied (503 or refused) is there after all: ${key}`);
      if (lostWrites.unreadable.length > 0) violations.push(`${lostWrites.unreadable.length} written keys could not be read back within ${CONVERGE_TIMEOUT_MS / 1000} s`);
      files.push(writeJson(join(dir, 'history.json'), unique.writes));
      files.push(writeJson(join(dir, 'lost-writes.json'), lostWrites));
    }
    for (const id of cluster.ids) {
      const exit = cluster.isRunning(id) ? null : cluster.exitStatus(id);
      if (exit !== null) violations.push(`node ${id} is not running at the end (exit ${exit.code ?? exit.signal ?? '?'})`);
    }
    // A node that died on its own (and was perhaps restarted later by a fault episode).
    for (const crash of cluster.unexpectedExits) {
      violations.push(`node ${crash.id} (pid ${crash.pid}) exited on its own (${crash.exit.code ?? crash.exit.signal ?? '?'}): ${crash.stderr.trim().split('\n').pop() ?? ''}`);
    }
    result = {
      name: options.name,
      workload: options.workload,
      seed,
      nodes,
      network,
      durationMs: options.durationMs,
      faults: options.faults,
      ops,
      episodes,
      events: nemesis.events,
      healToFirstWriteMs,
      linearizable,
      lostWrites,
      violations,
      dir,
    };
    files.push(writeJson(join(dir, 'events.json'), nemesis.events));
    files.push(writeJson(join(dir, 'summary.json'), { ...result, events: undefined, summary: formatSummary(result) }));
    await Promise.all(files);
  } finally {
    // Clients first (on a failure they would go on hammering closed ports), then the nodes.
    await Promise.allSettled([register?.stop(), unique?.stop()]);
    await cluster.close();
  }
  return result;
}

/** One line per scenario, e.g. `register/mixed seed 7: 4,812 ops (4,650 ok, 12 failed, 150 indeterminate), 14 faults, heal->write 412 ms, linearizable: ok`. */
export function formatSummary(r: ScenarioResult): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const total = r.ops.ok + r.ops.fail + r.ops.unknown;
  const verdict =
    r.linearizable !== null
      ? `linearizable: ${r.linearizable}`
      : r.lostWrites !== null
        ? `acknowledged writes: ${n(r.lostWrites.acknowledged)}, lost: ${n(r.lostWrites.lost.length)}, indeterminate applied: ${n(r.lostWrites.unknownApplied)}/${n(r.lostWrites.unknown)}`
        : '';
  const heal = r.healToFirstWriteMs === null ? 'no write after heal' : `heal->first write ${Math.round(r.healToFirstWriteMs)} ms`;
  const status = r.violations.length === 0 ? 'PASS' : `FAIL (${r.violations.length} violation${r.violations.length === 1 ? '' : 's'})`;
  return `${status} ${r.name} [seed ${r.seed}, ${r.nodes} nodes, ${r.network}, ${(r.durationMs / 1000).toFixed(0)} s]: ${n(total)} ops (${n(r.ops.ok)} ok, ${n(r.ops.fail)} failed, ${n(r.ops.unknown)} indeterminate), ${n(r.episodes)} faults, ${heal}, ${verdict}`;
}

/** Writes probe keys through the nodes in turn until one succeeds; ms from `since`, or null. */
async function firstWrite(endpoints: () => HttpEndpoint[], since: number, timeoutMs: number): Promise<number | null> {
  let turn = 0;
  while (performance.now() - since < timeoutMs) {
    const all = endpoints();
    const endpoint = all[turn++ % all.length]!;
    try {
      const response = await fetch(`http://${endpoint.address}/v1/kv/nemesis-probe/${turn}`, { method: 'PUT', body: 'probe', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      await response.arrayBuffer();
      if (response.ok) return performance.now() - since;
    } catch {
      // not yet
    }
    await sleep(PROBE_PAUSE_MS);
  }
  return null;
}

/**
 * After the heal every node must come to hold the same value for every register: waits until
 * each node has applied what the leader committed, then compares stale (local) reads.
 */
async function convergence(endpoints: () => HttpEndpoint[], keys: readonly string[]): Promise<string[]> {
  const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
  let last: string[] = [];
  while (Date.now() < deadline) {
    last = [];
    const all = endpoints();
    const views = await Promise.all(all.map((endpoint) => readAll(endpoint, keys).catch(() => null)));
    if (views.some((v) => v === null)) {
      last = ['not every node answered its local reads'];
    } else {
      for (const key of keys) {
        const values = new Map<NodeId, string | null>(all.map((endpoint, k) => [endpoint.id, views[k]!.get(key) ?? null]));
        if (new Set(values.values()).size > 1) last.push(`replicas diverge on ${key}: ${[...values].map(([id, v]) => `${id}=${v ?? 'absent'}`).join(', ')}`);
      }
    }
    if (last.length === 0) return [];
    await sleep(200);
  }
  return last.slice(0, 10);
}

async function readAll(endpoint: HttpEndpoint, keys: readonly string[]): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (const key of keys) {
    const path = key.split('/').map(encodeURIComponent).join('/');
    const response = await fetch(`http://${endpoint.address}/v1/kv/${path}?consistency=stale`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = await response.text();
    if (response.status === 200) out.set(key, body);
    else if (response.status === 404) out.set(key, null);
    else throw new Error(`${endpoint.id}: ${response.status}`);
  }
  return out;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 1)}\n`);
}
