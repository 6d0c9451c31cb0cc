export { FAULT_KINDS, SIM_DEFAULTS } from './options.js';
export type { FaultKind, SimOptions } from './options.js';
export type { Violation } from './safety.js';
export { Simulation } from './simulation.js';
export type { SimResult, SimStats, SimViolation } from './simulation.js';
export { runSeeds } from './run-seeds.js';
export type { SeedsSummary } from './run-seeds.js';
