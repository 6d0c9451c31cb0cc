import { Simulation, type SimResult } from './simulation.js';
import type { SimOptions } from './options.js';

export interface SeedsSummary {
  readonly seeds: number;
  readonly violations: SimResult[];
  readonly seconds: number;
  readonly recoveryTicksMax: number;
  readonly faults: Record<string, number>;
  readonly committedTotal: number;
  readonly linearizabilityUnknown: number;
}

/** Runs `count` seeded schedules starting at `firstSeed`. */
export function runSeeds(firstSeed: number, count: number, options: Partial<Omit<SimOptions, 'seed'>> = {}, onResult?: (r: SimResult) => void): SeedsSummary {
  const started = process.hrtime.bigint();
  const violations: SimResult[] = [];
  const faults: Record<string, number> = {};
  let recoveryTicksMax = 0;
  let committedTotal = 0;
  let linearizabilityUnknown = 0;
  for (let k = 0; k < count; k++) {
    const result = new Simulation({ ...options, seed: firstSeed + k }).run();
    if (result.violation !== null) violations.push(result);
    for (const [kind, n] of Object.entries(result.stats.faults)) faults[kind] = (faults[kind] ?? 0) + n;
    recoveryTicksMax = Math.max(recoveryTicksMax, result.stats.recoveryTicks ?? 0);
    committedTotal += result.stats.committed;
    if (result.stats.linearizability === 'unknown') linearizabilityUnknown++;
    onResult?.(result);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seeds: count, violations, seconds, recoveryTicksMax, faults, committedTotal, linearizabilityUnknown };
}
