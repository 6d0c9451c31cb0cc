/**
 * pnpm sim --seeds N [--nodes 3|5] [--seed S] [--faults loss,split,...] [--all-faults] [--trace] [--fault-units U]
 *
 * Runs N seeded schedules of the deterministic simulator (seeds S, S+1, ...) and ends with one
 * line: `N seeds, V violations, X seeds/s`. A failing seed prints the violated property, the
 * step, the trace of events that led to it, and the command that replays it. Exit status 1 on
 * any violation.
 */
import { parseArgs } from 'node:util';
import { FAULT_KINDS, runSeeds, type FaultKind, type SimResult } from '@raftkv/testing';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '100' },
    seed: { type: 'string', default: '1' },
    nodes: { type: 'string', default: '3' },
    faults: { type: 'string' },
    'all-faults': { type: 'boolean', default: false },
    'fault-units': { type: 'string' },
    trace: { type: 'boolean', default: false },
    'max-failures': { type: 'string', default: '3' },
  },
  strict: true,
});

function int(name: string, text: string | undefined, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`sim: --${name} must be an integer >= ${min}, got ${text}`);
    process.exit(2);
  }
  return n;
}

const seeds = int('seeds', values.seeds, 1);
const firstSeed = int('seed', values.seed, 0);
const nodes = int('nodes', values.nodes, 1);
const maxFailures = int('max-failures', values['max-failures'], 0);
let faults: readonly FaultKind[] = FAULT_KINDS;
if (values.faults !== undefined) {
  const names = values.faults.split(',').filter((s) => s !== '');
  const unknown = names.filter((n) => !(FAULT_KINDS as readonly string[]).includes(n));
  if (unknown.length > 0) {
    console.error(`sim: unknown fault kinds: ${unknown.join(', ')} (known: ${FAULT_KINDS.join(', ')})`);
    process.exit(2);
  }
  faults = names as FaultKind[];
}
const faultUnits = values['fault-units'] === undefined ? undefined : int('fault-units', values['fault-units'], 0);

let printed = 0;
function report(r: SimResult): void {
  if (r.violation === null) return;
  if (printed++ >= maxFailures) return;
  const v = r.violation;
  console.log(`\nseed ${r.seed} (${r.nodes} nodes): ${v.property} violated at step ${v.step} (t=${v.time})`);
  console.log(`  ${v.detail.split('\n').join('\n  ')}`);
  console.log(`  events that led to it (last ${r.trace.split('\n').length}):`);
  console.log(r.trace.split('\n').map((l) => `    ${l}`).join('\n'));
  console.log(`  replay: pnpm sim --seeds 1 --seed ${r.seed} --nodes ${r.nodes}${values.faults ? ` --faults ${values.faults}` : ''}${values['all-faults'] ? ' --all-faults' : ''}`);
}

const summary = runSeeds(firstSeed, seeds, {
  nodes,
  faults,
  allFaults: values['all-faults'],
  traceEvents: values.trace ? 5000 : 300,
  ...(faultUnits === undefined ? {} : { faultUnits }),
}, report);

const kinds = Object.entries(summary.faults).sort().map(([k, n]) => `${k}=${n}`).join(' ');
console.log(`faults injected: ${kinds}`);
console.log(`entries committed: ${summary.committedTotal}; slowest recovery after faults stopped: ${summary.recoveryTicksMax} ticks; linearizability unknown (search budget): ${summary.linearizabilityUnknown}`);
console.log(`${summary.seeds} seeds, ${summary.violations.length} violations, ${(summary.seeds / summary.seconds).toFixed(1)} seeds/s`);
process.exit(summary.violations.length > 0 ? 1 : 0);
