/**
 * The short partition suite of the default test run: a few scenarios of `pnpm test:partitions`
 * (docs/testing.md), each a real three-process cluster with every link through the nemesis's
 * proxies, ten HTTP clients, a seeded fault schedule, a heal, and the checkers. And the proof
 * that the suite can fail: stale reads under a partition must be found non-linearizable. Last,
 * the command itself: it must exit soon after its summary.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSummary, NetnsNetwork, runScenario, type ScenarioOptions, type ScenarioResult } from '@raftkv/testing/nemesis';

const SECONDS = 12;
let outDir: string;
let keep = false;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'raftkv-partitions-'));
});

afterAll(async () => {
  // A failing scenario's history and logs stay for inspection; the path is in the failure message.
  if (!keep) await rm(outDir, { recursive: true, force: true });
});

async function scenario(options: Omit<ScenarioOptions, 'outDir' | 'durationMs'> & { durationMs?: number }): Promise<ScenarioResult> {
  const result = await runScenario({ durationMs: SECONDS * 1000, outDir, logLevel: 'warn', ...options });
  console.log(formatSummary(result));
  if (result.violations.length > 0 && options.consistency !== 'stale') keep = true;
  return result;
}

function expectPassed(result: ScenarioResult): void {
  expect(result.violations, `${formatSummary(result)}\nhistory and logs: ${result.dir}`).toEqual([]);
  expect(result.episodes).toBeGreaterThan(0);
  expect(result.ops.ok).toBeGreaterThan(100);
  expect(result.healToFirstWriteMs).not.toBeNull();
}

describe('partition suite (short)', () => {
  it('register workload under network faults: isolate, split, bridge, one-way, flapping, slow links', async () => {
    const result = await scenario({
      name: 'register-network',
      workload: 'register',
      faults: ['isolate-leader', 'isolate-node', 'split', 'bridge', 'one-way', 'flapping', 'slow-network'],
      seed: 11,
    });
    expectPassed(result);
    expect(result.linearizable).toBe('ok');
  });

  it('register workload under process faults: kill -9, SIGSTOP, rolling restart, combined with partitions', async () => {
    const result = await scenario({
      name: 'register-process',
      workload: 'register',
      faults: ['kill-leader', 'kill-node', 'pause-leader', 'pause-node', 'rolling-restart', 'isolate-leader', 'split'],
      seed: 12,
    });
    expectPassed(result);
    expect(result.linearizable).toBe('ok');
  });

  it('lease reads under partitions, kill -9 and SIGSTOP pauses of the leader are linearizable', async () => {
    const result = await scenario({
      name: 'register-lease',
      workload: 'register',
      consistency: 'lease',
      faults: ['isolate-leader', 'pause-leader', 'one-way', 'kill-leader', 'split', 'pause-node'],
      seed: 16,
    });
    expectPassed(result);
    expect(result.linearizable).toBe('ok');
  });

  it('no acknowledged write is lost under every kind of fault', async () => {
    const result = await scenario({ name: 'unique-writes-all', workload: 'unique-writes', faults: ['kill-leader', 'kill-minority', 'pause-leader', 'isolate-leader', 'split', 'one-way', 'flapping'], seed: 13 });
    expectPassed(result);
    expect(result.lostWrites?.lost).toEqual([]);
    expect(result.lostWrites?.acknowledged).toBeGreaterThan(100);
  });

  it('membership changes under partitions: a machine replaced, one added and another removed, the leader stopped with SIGTERM', async () => {
    // Each membership episode runs its whole sequence (kill, remove, join, catch up, promote),
    // so this scenario gets more time than the others.
    const result = await scenario({
      name: 'register-membership',
      workload: 'register',
      faults: ['replace-node', 'grow-shrink', 'stop-leader', 'split'],
      durationMs: 25_000,
      seed: 5,
    });
    expectPassed(result);
    expect(result.linearizable).toBe('ok');
    const membership = result.events.filter((e) => (e.kind === 'replace-node' || e.kind === 'grow-shrink') && e.phase === 'stop');
    expect(membership.length, 'at least one membership change ran to its end').toBeGreaterThan(0);
  });

  it('can fail: stale reads under a partition are found non-linearizable', async () => {
    // An isolated node keeps answering stale reads from its own state while the majority moves
    // on; a client that just saw a newer value through another node then reads an older one.
    const result = await scenario({
      name: 'register-stale-reads',
      workload: 'register',
      consistency: 'stale',
      faults: ['isolate-leader', 'isolate-node'],
      faultMs: [3_000, 4_000],
      quietMs: [500, 1_000],
      seed: 14,
    });
    expect(result.linearizable, formatSummary(result)).toBe('illegal');
    expect(result.violations.some((v) => v.startsWith('not linearizable'))).toBe(true);
  });
});

/** Waits for `promise`, at most `ms` (no timer is left behind). */
async function waitUpTo(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}

describe('pnpm test:partitions, the command', () => {
  const ROOT = join(import.meta.dirname, '..');
  const SCRIPT = join(ROOT, 'scripts/partitions.ts');
  /** Its last line; nothing is left to do after it but exit. */
  const SUMMARY = /^\d+ of \d+ scenarios passed/m;
  /** From start to summary: one short scenario is about 10 s here; past this something hangs. */
  const RUN_TIMEOUT_MS = 40_000;
  /** From summary to exit: a clean exit takes well under a second. */
  const EXIT_TIMEOUT_MS = 5_000;

  it('exits, with status 0, soon after printing its summary', async () => {
    // One scenario, as short as the command allows: 2 s of network faults only (no SIGSTOP: a
    // killed command's node processes then see their IPC channel close and exit by themselves).
    const args = ['--time', '2', '--faults', 'isolate-node', '--workloads', 'register', '--clients', '4', '--seed', '16', '--quiet', '--out', join(outDir, 'command')];
    const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=@raftkv/source', SCRIPT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid === undefined) throw new Error('spawn produced no process');
    // Filled in by the child's events (a holder: TypeScript does not follow assignments in callbacks).
    const seen = { stdout: '', stderr: '', summaryAt: null as number | null, exit: null as { code: number | null; signal: NodeJS.Signals | null; at: number } | null };
    let summarySeen: () => void = () => undefined;
    const summary = new Promise<void>((resolve) => (summarySeen = resolve));
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      seen.stdout += text;
      if (seen.summaryAt === null && SUMMARY.test(seen.stdout)) {
        seen.summaryAt = performance.now();
        summarySeen();
      }
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      seen.stderr += text;
    });
    const exited = new Promise<void>((resolve) =>
      child.once('close', (code, signal) => {
        seen.exit = { code, signal, at: performance.now() };
        resolve();
      }),
    );
    const output = (): string => `stdout:\n${seen.stdout}\nstderr:\n${seen.stderr.slice(-4_000)}`;
    try {
      await waitUpTo(Promise.race([exited, summary]), RUN_TIMEOUT_MS);
      if (seen.exit === null && seen.summaryAt !== null) await waitUpTo(exited, seen.summaryAt + EXIT_TIMEOUT_MS - performance.now());
      const { summaryAt, exit } = seen;
      if (summaryAt === null) expect.unreachable(`no summary within ${RUN_TIMEOUT_MS / 1000} s\n${output()}`);
      if (exit === null) expect.unreachable(`still running ${EXIT_TIMEOUT_MS / 1000} s after its summary\n${output()}`);
      expect({ code: exit.code, signal: exit.signal }, output()).toEqual({ code: 0, signal: null });
      expect(exit.at - summaryAt).toBeLessThan(EXIT_TIMEOUT_MS);
      expect(seen.stdout).toMatch(/^1 of 1 scenarios passed/m);
    } finally {
      if (seen.exit === null) {
        // By its pid: SIGTERM first, which the command turns into killing its node processes;
        // SIGKILL if it cannot (spinning in its exit path, it runs no JavaScript).
        process.kill(pid, 'SIGTERM');
        await waitUpTo(exited, 3_000);
        if (seen.exit === null) process.kill(pid, 'SIGKILL');
        await exited;
      }
    }
  }, 60_000);
});

const netns = await NetnsNetwork.available();
if (!netns.ok) console.log(`partition suite on network namespaces: skipped: ${netns.reason}`);

describe.skipIf(!netns.ok)('partition suite on network namespaces (root)', () => {
  it('register workload with links cut by packet filters', async () => {
    const result = await scenario({ name: 'register-netns', workload: 'register', network: 'netns', faults: ['isolate-leader', 'split', 'one-way', 'kill-leader', 'pause-node'], seed: 15 });
    expectPassed(result);
    expect(result.linearizable).toBe('ok');
  });
});
