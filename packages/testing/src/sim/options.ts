/** The kinds of fault the simulator injects. Each run draws a subset from its seed. */
export const FAULT_KINDS = [
  'loss', // drop a fraction of messages (snapshot acknowledgements included)
  'duplicate', // deliver some messages twice
  'delay', // long, variable delays: messages overtake each other
  'split', // majority/minority partition
  'isolate-leader', // cut the current leader off from everyone
  'bridge', // two halves that see one shared node but not each other
  'one-way', // asymmetric: a link drops in one direction only
  'flapping', // a partition that heals and returns every few ticks
  'crash', // kill a node (any node, the leader, or several): writes it completed survive
  'power-loss', // kill a node and lose power: unsynced writes of its log and state machine may be lost
  'crash-in-loop', // kill a node right after a step of its Ready loop (install, persist, apply, sync, compact)
  'leader-churn', // crash each new leader within a few message delays of its election, restart it soon after
  'transfer', // ask for leadership transfer to a random node
  'pause', // stop a node (SIGSTOP): its clock runs on, it does nothing; then resume it
  'slow-disk', // one node's disk becomes 5-20 times slower: its Ready loop stays busy
  'membership', // a membership change: add a spare machine as a learner, promote a learner, remove a follower or the leader
  'vote-crash', // a voter loses power the moment its vote grant leaves, and is back a few units later
  'lease-bridge', // 3 nodes: the leader and one follower cut apart, clients quiet; the bridge crashes and restarts as the cut-off node asks it for a pre-vote
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults of processes and disks (one track); the others are faults of the network (another track). */
export const PROCESS_FAULT_KINDS: readonly FaultKind[] = [
  'crash',
  'power-loss',
  'crash-in-loop',
  'leader-churn',
  'transfer',
  'pause',
  'slow-disk',
  'membership',
  'vote-crash',
  'lease-bridge',
];

export interface SimOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Simulated time units per tick (a "millisecond" scale: messages take a few units). */
  readonly tickUnits: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  /**
   * Each node's clock runs at a rate drawn from [1 - clockDriftMax, 1 + clockDriftMax] of the
   * simulated time, and its replica is configured with the same bound (leases depend on it).
   */
  readonly clockDriftMax: number;
  /** Length of the phase with faults, in time units. */
  readonly faultUnits: number;
  /** After the faults stop, a leader must be elected and every probe proposal applied on every node within this many ticks. */
  readonly livenessTicksMax: number;
  /** Fault kinds allowed; each run uses a seeded subset of them (all of them when `allFaults`). */
  readonly faults: readonly FaultKind[];
  readonly allFaults: boolean;
  /** Events kept for the failure trace. */
  readonly traceEvents: number;
  /** Machines outside the cluster at the start, that membership changes may add (`n<nodes+1>`, ...). */
  readonly spares: number;
  /** Compact the log once this many applied entries are not in a snapshot; 0 draws it from the seed. */
  readonly snapshotEveryEntries: number;
}

export const SIM_DEFAULTS: Omit<SimOptions, 'seed'> = {
  nodes: 3,
  tickUnits: 10,
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  clockDriftMax: 0.1,
  faultUnits: 4000,
  livenessTicksMax: 100,
  faults: FAULT_KINDS,
  allFaults: false,
  traceEvents: 400,
  spares: 2,
  snapshotEveryEntries: 0,
};
