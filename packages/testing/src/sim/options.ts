/** The kinds of fault the simulator injects. Each run draws a subset from its seed. */
export const FAULT_KINDS = [
  'loss', // drop a fraction of messages
  'duplicate', // deliver some messages twice
  'delay', // long, variable delays: messages overtake each other
  'split', // majority/minority partition
  'isolate-leader', // cut the current leader off from everyone
  'bridge', // two halves that see one shared node but not each other
  'one-way', // asymmetric: a link drops in one direction only
  'flapping', // a partition that heals and returns every few ticks
  'crash', // kill a node (any node, the leader, or several) and restart it later
  'crash-mid-persist', // kill a node while a Ready is being persisted (unsynced state lost)
  'leader-churn', // crash each new leader within a few message delays of its election, restart it soon after
  'transfer', // ask for leadership transfer to a random node
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Simulated time units per tick (a "millisecond" scale: messages take a few units). */
  readonly tickUnits: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  /** Length of the phase with faults, in time units. */
  readonly faultUnits: number;
  /** After the faults stop, a leader must be elected and every probe proposal applied on every node within this many ticks. */
  readonly livenessTicksMax: number;
  /** Fault kinds allowed; each run uses a seeded subset of them (all of them when `allFaults`). */
  readonly faults: readonly FaultKind[];
  readonly allFaults: boolean;
  /** Events kept for the failure trace. */
  readonly traceEvents: number;
  /** Compact the log once this many applied entries are not in a snapshot; 0 draws it from the seed. */
  readonly snapshotEveryEntries: number;
}

export const SIM_DEFAULTS: Omit<SimOptions, 'seed'> = {
  nodes: 3,
  tickUnits: 10,
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  faultUnits: 4000,
  livenessTicksMax: 100,
  faults: FAULT_KINDS,
  allFaults: false,
  traceEvents: 400,
  snapshotEveryEntries: 0,
};
