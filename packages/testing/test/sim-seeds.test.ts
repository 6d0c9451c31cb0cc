import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, runSeeds, type SeedsSummary } from '../src/index.js';

/**
 * The default suite's share of the simulator: 1,000 seeded schedules over 3 and 5 nodes. Every
 * run checks the safety properties after every step, linearizability of its reads at the end,
 * and liveness once the faults stop. `pnpm sim --seeds N` runs more.
 */
function expectClean(summary: SeedsSummary): void {
  const first = summary.violations[0];
  if (first !== undefined && first.violation !== null) {
    // Print the whole story of the first failure: seed, step, property and trace.
    throw new Error(
      `seed ${first.seed} (${first.nodes} nodes): ${first.violation.property} at step ${first.violation.step}: ${first.violation.detail}\n${first.trace}\n` +
        `replay: pnpm sim --seeds 1 --seed ${first.seed} --nodes ${first.nodes}`,
    );
  }
  expect(summary.violations).toHaveLength(0);
  // Liveness bound: the test states it (SIM_DEFAULTS.livenessTicksMax = 100 ticks = 10 election
  // timeouts); each run fails on its own past it. Here: it was never even close.
  expect(summary.recoveryTicksMax).toBeLessThanOrEqual(100);
  // The runs did real work: hundreds of entries committed per seed on average.
  expect(summary.committedTotal / summary.seeds).toBeGreaterThan(50);
  // The search never gave up on a history.
  expect(summary.linearizabilityUnknown).toBe(0);
}

describe('deterministic simulation', () => {
  it('3 nodes, seeds 1-400, seeded subsets of every fault kind', () => {
    const summary = runSeeds(1, 400, { nodes: 3 });
    expectClean(summary);
    for (const kind of FAULT_KINDS) expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(0);
  });

  it('3 nodes, seeds 10001-10150, all fault kinds in every run', () => {
    expectClean(runSeeds(10_001, 150, { nodes: 3, allFaults: true }));
  });

  it('5 nodes, seeds 1-300, seeded subsets of every fault kind', () => {
    const summary = runSeeds(1, 300, { nodes: 5 });
    expectClean(summary);
    for (const kind of FAULT_KINDS) expect(summary.faults[kind] ?? 0, kind).toBeGreaterThan(0);
  });

  it('5 nodes, seeds 20001-20150, all fault kinds in every run', () => {
    expectClean(runSeeds(20_001, 150, { nodes: 5, allFaults: true }));
  });
});
