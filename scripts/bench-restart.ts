/**
 * `pnpm bench:restart`: a rolling restart of a three-node cluster of real processes under a
 * client workload, done the graceful way (SIGTERM each node, the leader last: it hands
 * leadership over before it exits) and the crash way (kill -9), in alternating rounds. Nodes
 * run with the default timings (tick 100 ms, election timeout 1000 ms, heartbeat 100 ms).
 *
 * Clients: one retrying writer, which puts one key at a time and, after a failure or no answer
 * within 1 s, tries the next node at once (a client with a list of endpoints); and, for the
 * checks, `--clients` register clients (reads, writes and compare-and-set over a few keys, each
 * operation to the next node in turn) and as many unique-key writers. Printed per round: for
 * each node's turn (from its signal until it is back and caught up), the retrying writer's
 * longest time without a successful write; the same over an equal quiet stretch before the
 * restarts (the floor: what a busy machine gives without faults); whether the history is
 * linearizable; and how many acknowledged unique writes were lost (read back at the end). The
 * figure to watch is the leader's turn: a leadership transfer when graceful, an election
 * timeout when killed.
 *
 *   tsx --conditions=@raftkv/source scripts/bench-restart.ts [--rounds 3] [--clients 4]
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkLinearizable } from '@raftkv/testing';
import { ProcessCluster } from '@raftkv/testing/process';
import { RegisterWorkload, UniqueWriteWorkload, type HttpEndpoint } from '@raftkv/testing/nemesis';

const WARMUP_MS = 2_000;
/** The quiet stretch whose longest write gap is the floor, before the restarts. */
const QUIET_MS = 5_000;
/** Quiet time between two nodes' turns. */
const BETWEEN_TURNS_MS = 1_000;
const CAUGHT_UP_TIMEOUT_MS = 30_000;
const VERIFY_TIMEOUT_MS = 20_000;
/** The retrying writer gives up on a node after this long and tries the next. */
const WRITER_TIMEOUT_MS = 1_000;

type Mode = 'SIGTERM' | 'kill -9';

interface Turn {
  readonly node: string;
  readonly wasLeader: boolean;
  readonly from: number;
  readonly to: number;
  /** Longest stretch inside [from, to] without a write that succeeded, in ms. */
  readonly gapMs: number;
}

interface Round {
  readonly mode: Mode;
  readonly turns: Turn[];
  /** The retrying writer's longest gap over a quiet stretch before the restarts, as long as the longest turn. */
  readonly quietGapMs: number;
  readonly linearizable: string;
  readonly acknowledged: number;
  readonly lost: number;
  readonly ops: number;
}

function positiveInt(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got '${value}'`);
  return n;
}

/** The longest time inside [from, to] between two successful writes (or a window edge and one). */
function longestGap(successes: readonly number[], from: number, to: number): number {
  let previous = from;
  let longest = 0;
  for (const t of successes) {
    if (t < from) continue;
    if (t > to) break;
    longest = Math.max(longest, t - previous);
    previous = t;
  }
  // The window ends once the node is back and caught up; the next success closes the last gap.
  const next = successes.find((t) => t > to);
  return Math.max(longest, (next ?? to) - previous);
}

/** Puts one key at a time, moving to the next node after a failure; records when each put succeeded. */
function retryingWriter(endpoints: () => HttpEndpoint[], now: () => number): { successes: number[]; stop: () => Promise<void> } {
  const successes: number[] = [];
  let stopping = false;
  const loop = (async () => {
    let turn = 0;
    for (let k = 0; !stopping; k++) {
      const all = endpoints();
      const endpoint = all[turn % all.length]!;
      try {
        const response = await fetch(`http://${endpoint.address}/v1/kv/writer/${k % 100}`, { method: 'PUT', body: `w${k}`, signal: AbortSignal.timeout(WRITER_TIMEOUT_MS) });
        await response.arrayBuffer();
        if (response.ok) successes.push(now());
        else turn++;
      } catch {
        turn++;
      }
    }
  })();
  return {
    successes,
    stop: async () => {
      stopping = true;
      await loop;
    },
  };
}

async function caughtUp(cluster: ProcessCluster, id: string): Promise<void> {
  const deadline = Date.now() + CAUGHT_UP_TIMEOUT_MS;
  for (;;) {
    const leader = await cluster.leader(CAUGHT_UP_TIMEOUT_MS);
    const [mine, theirs] = await Promise.all([cluster.status(id), cluster.status(leader)]);
    if (mine.appliedIndexKv >= theirs.commit) return;
    if (Date.now() > deadline) throw new Error(`${id} did not catch up within ${CAUGHT_UP_TIMEOUT_MS} ms`);
    await sleep(20);
  }
}

async function round(mode: Mode, clients: number, seed: number): Promise<Round> {
  const cluster = await ProcessCluster.start({ nodes: 3, http: true, tickMs: 100, electionTimeoutMs: 1_000, heartbeatIntervalMs: 100, requestTimeoutMs: 2_000 });
  try {
    const endpoints = (): HttpEndpoint[] => cluster.ids.map((id) => ({ id, address: cluster.httpAddress(id) }));
    await cluster.leader(30_000);
    const common = { endpoints, clients, seed, requestTimeoutMs: 2_000, thinkMs: 2 };
    const register = new RegisterWorkload({ ...common, keys: 4, opsPerKey: 150 }).start();
    const unique = new UniqueWriteWorkload({ ...common, keyPrefix: 'unique' }).start();
    const writer = retryingWriter(endpoints, () => register.now());
    await sleep(WARMUP_MS);
    const quietFrom = register.now();
    await sleep(QUIET_MS);
    const quietTo = register.now();
    const leader = await cluster.leader();
    const order = [...cluster.ids.filter((id) => id !== leader), leader];
    const windows: { node: string; wasLeader: boolean; from: number; to: number }[] = [];
    for (const id of order) {
      const from = register.now();
      await cluster.kill(id, mode === 'SIGTERM' ? 'SIGTERM' : 'SIGKILL');
      await cluster.restart(id);
      await caughtUp(cluster, id);
      windows.push({ node: id, wasLeader: id === leader, from, to: register.now() });
      await sleep(BETWEEN_TURNS_MS);
    }
    await Promise.all([register.stop(), unique.stop(), writer.stop()]);
    const successes = writer.successes;
    const turns = windows.map((w) => ({ ...w, gapMs: longestGap(successes, w.from, w.to) }));
    const quietGapMs = longestGap(successes, quietFrom, quietTo);
    const check = checkLinearizable(register.checkable());
    const lost = await unique.verify(VERIFY_TIMEOUT_MS);
    return { mode, turns, quietGapMs, linearizable: check.result, acknowledged: lost.acknowledged, lost: lost.lost.length, ops: register.history.length };
  } finally {
    await cluster.close();
  }
}

function describe(r: Round): string {
  const turns = r.turns.map((t) => `${t.node}${t.wasLeader ? ' (leader)' : ''} ${Math.round(t.gapMs)} ms`).join(', ');
  return `${r.mode.padEnd(7)}: longest write gap per turn: ${turns} (quiet: ${Math.round(r.quietGapMs)} ms); ${r.ops.toLocaleString('en-US')} register ops, linearizable: ${r.linearizable}; unique writes acknowledged ${r.acknowledged.toLocaleString('en-US')}, lost ${r.lost}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '4' } }, strict: true });
  const rounds = positiveInt(values.rounds, '--rounds');
  const clients = positiveInt(values.clients, '--clients');
  console.log(`rolling restart of 3 node processes (tick 100 ms, election 1000 ms, heartbeat 100 ms), leader last; ${clients} register clients + ${clients} unique writers; ${rounds} round(s) of each mode, alternating`);
  const results: Round[] = [];
  for (let k = 0; k < rounds; k++) {
    for (const mode of ['SIGTERM', 'kill -9'] as const) {
      const r = await round(mode, clients, 100 + k);
      console.log(`round ${k + 1} ${describe(r)}`);
      results.push(r);
    }
  }
  let failed = false;
  for (const mode of ['SIGTERM', 'kill -9'] as const) {
    const leaderGaps = results.filter((r) => r.mode === mode).map((r) => Math.round(r.turns.find((t) => t.wasLeader)!.gapMs));
    const followerGaps = results.filter((r) => r.mode === mode).flatMap((r) => r.turns.filter((t) => !t.wasLeader).map((t) => Math.round(t.gapMs)));
    const quietGaps = results.filter((r) => r.mode === mode).map((r) => Math.round(r.quietGapMs));
    console.log(`${mode.padEnd(7)}: leader's turn, longest write gap: ${leaderGaps.join(', ')} ms (max ${Math.max(...leaderGaps)}); followers' turns: max ${Math.max(...followerGaps)} ms; quiet floor: max ${Math.max(...quietGaps)} ms`);
  }
  for (const r of results) {
    if (r.linearizable === 'illegal' || r.lost > 0) failed = true;
  }
  if (failed) console.log('FAILED: a history was not linearizable or an acknowledged write was lost');
  return failed ? 1 : 0;
}

process.exitCode = await main();
