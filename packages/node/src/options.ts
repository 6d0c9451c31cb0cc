import type { KvLimits } from '@raftkv/kv';
import { ErrorCode, RaftKvError, type NodeId } from '@raftkv/raft';
import type { Transport } from '@raftkv/transport';
import type { Logger } from 'pino';

export interface NodeOptions {
  /** This node's id; one of `members` for a founding member. */
  readonly id: NodeId;
  /** Where this node keeps its log (`<dataDir>/log`) and its state machine (`<dataDir>/kv`). */
  readonly dataDir: string;
  /**
   * The voters a new cluster is bootstrapped with, this node among them (ignored once the data
   * directory holds state). Absent: this node joins a running cluster; it starts with no
   * configuration and waits for a leader to add it (`addLearner` on a member, or
   * `raftkv start --join`).
   */
  readonly members?: readonly NodeId[];
  /** Once a learner that joined with auto-promotion has been caught up this long, the leader makes it a voter (default 2 s). */
  readonly autoPromoteStableMs?: number;
  /** Peer addresses ("host:port") by node id; this node's own entry, if any, is where it listens. */
  readonly peers: Readonly<Record<NodeId, string>>;
  /** Where to listen for peers, when not taken from `peers[id]`. Port 0 lets the OS choose. */
  readonly listen?: { readonly host: string; readonly port: number };
  /**
   * Nodes of one cluster share this id; connections from other clusters are refused. A data
   * directory records the cluster it was created for: omit this to use that one (a restored
   * cluster has an id of its own), or give it and it must match. Default for a new data
   * directory: "raftkv".
   */
  readonly clusterId?: string;
  /** Length of one Raft tick. Election and heartbeat timeouts are whole numbers of ticks. */
  readonly tickMs?: number;
  /** Minimum election timeout (etcd's default: 1000 ms). */
  readonly electionTimeoutMs?: number;
  /**
   * The largest relative difference between the rates of two nodes' clocks that lease reads
   * tolerate, as a fraction (default 0.1). A larger value makes the lease shorter.
   */
  readonly clockDriftMax?: number;
  /** Leader heartbeat interval (etcd's default: 100 ms). */
  readonly heartbeatIntervalMs?: number;
  /** Compact the log once this many entries were applied since the last compaction. */
  readonly snapshotEveryEntries?: number;
  /** Entries kept behind the compaction point, so slightly lagging followers catch up without a snapshot. */
  readonly snapshotCatchupEntries?: number;
  /** A write or read that has not completed by then fails with RAFTKV_TIMEOUT. */
  readonly requestTimeoutMs?: number;
  /** Requests waiting at once (writes and reads); beyond it new ones fail fast. */
  readonly pendingRequestsMax?: number;
  readonly kvLimits?: Partial<KvLimits>;
  /** A pino logger; the node logs through a child bound to its id and term. Default: silent. */
  readonly logger?: Logger;
  /** A transport to use instead of TCP (e.g. a MemoryTransport for tests). */
  readonly transport?: Transport;
}

export const NODE_DEFAULTS = {
  tickMs: 100,
  electionTimeoutMs: 1000,
  heartbeatIntervalMs: 100,
  snapshotEveryEntries: 10_000,
  snapshotCatchupEntries: 5_000,
  requestTimeoutMs: 5_000,
  pendingRequestsMax: 65_536,
  autoPromoteStableMs: 2_000,
} as const;

/** Options with every default filled in. */
export type NodeSettings = NodeOptions & Required<Pick<NodeOptions, keyof typeof NODE_DEFAULTS>>;

export function resolveNodeOptions(options: NodeOptions): NodeSettings {
  const s = { ...NODE_DEFAULTS, ...definedOnly(options) } as NodeSettings;
  const fail = (message: string): never => {
    throw new RaftKvError(ErrorCode.INVALID_CONFIG, message);
  };
  if (s.id === '') fail('id must not be empty');
  if (s.members !== undefined) {
    if (!s.members.includes(s.id)) fail(`id ${s.id} is not one of members [${s.members.join(', ')}]`);
    if (new Set(s.members).size !== s.members.length) fail(`members has duplicates: [${s.members.join(', ')}]`);
  }
  const positive = ['tickMs', 'electionTimeoutMs', 'heartbeatIntervalMs', 'snapshotEveryEntries', 'requestTimeoutMs', 'pendingRequestsMax', 'autoPromoteStableMs'] as const;
  for (const key of positive) {
    if (!(Number.isInteger(s[key]) && s[key] > 0)) fail(`${key} must be a positive integer, got ${s[key]}`);
  }
  if (!(Number.isInteger(s.snapshotCatchupEntries) && s.snapshotCatchupEntries >= 0)) {
    fail(`snapshotCatchupEntries must be an integer >= 0, got ${s.snapshotCatchupEntries}`);
  }
  if (s.heartbeatIntervalMs % s.tickMs !== 0 || s.electionTimeoutMs % s.tickMs !== 0) {
    fail(`electionTimeoutMs (${s.electionTimeoutMs}) and heartbeatIntervalMs (${s.heartbeatIntervalMs}) must be multiples of tickMs (${s.tickMs})`);
  }
  if (s.electionTimeoutMs <= s.heartbeatIntervalMs) fail('electionTimeoutMs must be larger than heartbeatIntervalMs');
  if (s.transport === undefined && s.listen === undefined && s.peers[s.id] === undefined) {
    fail(`no address to listen on: give listen, or peers[${JSON.stringify(s.id)}]`);
  }
  return s;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** "host:port" → { host, port }; IPv6 hosts in brackets. */
export function parseAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65_535) {
    throw new RaftKvError(ErrorCode.INVALID_CONFIG, `address ${JSON.stringify(address)} is not host:port`);
  }
  return { host: match[1] ?? match[2]!, port };
}
