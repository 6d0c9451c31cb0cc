/**
 * The short partition suite of the default test run: a few scenarios of `pnpm test:partitions`
 * (docs/testing.md), each a real three-process cluster with every link through the nemesis's
 * proxies, ten HTTP clients, a seeded fault schedule, a heal, and the checkers. And the proof
 * that the suite can fail: stale reads under a partition must be found non-linearizable.
 */
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

const netns = await NetnsNetwork.available();
if (!netns.ok) console.log(`partition suite on network namespaces: skipped: ${netns.reason}`);

describe.skipIf(!netns.ok)('partition suite on network namespaces (root)', () => {
  it('register workload with links cut by packet filters', async () => {
    const result = await scenario({ name: 'register-netns', workload: 'register', network: 'netns', faults: ['isolate-leader', 'split', 'one-way', 'kill-leader', 'pause-node'], seed: 15 });
    expectPassed(result);
    expect(result.linearizable).toBe('ok');
  });
});
