import { ErrorCode, RaftKvError } from './errors.js';
import type { RandomSource } from './random.js';
import type { LogStorage } from './storage.js';
import type { LogIndex, NodeId } from './types.js';

export interface RaftConfig {
  readonly id: NodeId;
  /** Stable storage, read-only to the core. Its contents decide where the node restarts. */
  readonly storage: LogStorage;
  /** Source of election-timeout jitter. */
  readonly random: RandomSource;
  /**
   * Minimum election timeout in ticks; the actual timeout is drawn from
   * [electionTimeoutTicks, 2 * electionTimeoutTicks) at each reset (paper section 5.2).
   */
  readonly electionTimeoutTicks?: number;
  /** A leader sends heartbeats every this many ticks. Must be less than electionTimeoutTicks. */
  readonly heartbeatIntervalTicks?: number;
  /** The index the state machine has already applied (durably) when the node restarts. */
  readonly applied?: LogIndex;
  /** Pre-vote (thesis section 9.6): a partitioned node cannot disrupt the cluster when it returns. */
  readonly preVote?: boolean;
  /** Check-quorum (thesis section 6.2): a leader steps down when it has not heard from a quorum. */
  readonly checkQuorum?: boolean;
  /**
   * The largest relative difference between the tick rates of any two nodes' clocks that lease
   * reads tolerate: each node's ticks run at between (1 - d) and (1 + d) times the nominal rate.
   * The leader lease shrinks with it (see `leaseTicks` in lease.ts). In [0, 1).
   */
  readonly clockDriftMax?: number;
  /** Upper bound on the entry bytes in one MsgApp. */
  readonly msgBytesMax?: number;
  /** Upper bound on MsgApp messages in flight to one follower (pipelining window). */
  readonly inflightCountMax?: number;
  /** Upper bound on the bytes of committed entries handed out in one Ready. */
  readonly committedBytesPerReadyMax?: number;
  /** Upper bound on bytes of entries the leader holds uncommitted; beyond it proposals are dropped. */
  readonly uncommittedBytesMax?: number;
  /** Upper bound on one proposal's data bytes. */
  readonly entryBytesMax?: number;
  /** A learner is promoted only when it is replicating and at most this many entries behind the leader. */
  readonly promotionLagEntriesMax?: number;
}

export type ResolvedRaftConfig = Required<RaftConfig>;

export const RAFT_DEFAULTS = {
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  applied: 0,
  preVote: true,
  checkQuorum: true,
  clockDriftMax: 0.1,
  msgBytesMax: 1024 * 1024,
  inflightCountMax: 256,
  committedBytesPerReadyMax: 16 * 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  entryBytesMax: 4 * 1024 * 1024,
  promotionLagEntriesMax: 256,
} as const;

export function resolveConfig(config: RaftConfig): ResolvedRaftConfig {
  const resolved: ResolvedRaftConfig = { ...RAFT_DEFAULTS, ...stripUndefined(config) } as ResolvedRaftConfig;
  const fail = (message: string): never => {
    throw new RaftKvError(ErrorCode.INVALID_CONFIG, message);
  };
  if (resolved.id === '') fail('id must not be empty');
  if (!(Number.isInteger(resolved.heartbeatIntervalTicks) && resolved.heartbeatIntervalTicks >= 1)) {
    fail(`heartbeatIntervalTicks must be an integer >= 1, got ${resolved.heartbeatIntervalTicks}`);
  }
  if (!(Number.isInteger(resolved.electionTimeoutTicks) && resolved.electionTimeoutTicks > resolved.heartbeatIntervalTicks)) {
    fail(`electionTimeoutTicks must be an integer > heartbeatIntervalTicks, got ${resolved.electionTimeoutTicks}`);
  }
  if (!(Number.isInteger(resolved.inflightCountMax) && resolved.inflightCountMax >= 1)) {
    fail(`inflightCountMax must be an integer >= 1, got ${resolved.inflightCountMax}`);
  }
  for (const key of ['msgBytesMax', 'committedBytesPerReadyMax', 'uncommittedBytesMax', 'entryBytesMax', 'promotionLagEntriesMax'] as const) {
    if (!(Number.isInteger(resolved[key]) && resolved[key] >= 1)) fail(`${key} must be an integer >= 1, got ${resolved[key]}`);
  }
  if (!(Number.isInteger(resolved.applied) && resolved.applied >= 0)) fail(`applied must be an integer >= 0, got ${resolved.applied}`);
  if (!(typeof resolved.clockDriftMax === 'number' && resolved.clockDriftMax >= 0 && resolved.clockDriftMax < 1)) fail(`clockDriftMax must be in [0, 1), got ${resolved.clockDriftMax}`);
  return resolved;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
