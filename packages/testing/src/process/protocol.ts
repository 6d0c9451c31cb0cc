/**
 * What a parent test and a node process (node-process.ts) say to each other over the Node IPC
 * channel (`child_process.fork`, JSON serialization):
 *
 *   argv[2]          parent -> child   NodeProcessConfig, as JSON
 *   { type: 'ready' }          child -> parent   the node listens; sent once
 *   { type: 'failed' }         child -> parent   the node could not start; the child then exits with EXIT_START_FAILED
 *   { id, op, args }           parent -> child   a request (Request)
 *   { id, ok, ... }            child -> parent   its reply (Reply), exactly one per request
 *
 * Values travel as strings (UTF-8 on the node's side). Errors travel as their RaftKvError code,
 * so that the parent can match on codes; `code: null` marks an error that is not a RaftKvError.
 */
import type { Consistency, MemberView, NodeOptions, NodeStatus, RaftKvNode } from '@raftkv/node';
import type { NodeId, PeerProgress } from '@raftkv/raft';

/** Exit status of a node process whose node failed to start (bad data on disk, bad options, port taken). */
export const EXIT_START_FAILED = 2;
/** Exit status of a node process whose running node failed (its Ready loop stopped on an I/O error). */
export const EXIT_NODE_FAILED = 3;
/** Exit status of a node process started without an IPC channel or with an unreadable configuration. */
export const EXIT_USAGE = 64;

export type LogLevel = 'silent' | 'fatal' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['silent', 'fatal', 'warn', 'info', 'debug'];

/** The node options a parent passes to a node process: the serializable ones. */
export type NodeProcessConfig = Pick<
  NodeOptions,
  | 'id'
  | 'dataDir'
  | 'members'
  | 'peers'
  | 'clusterId'
  | 'tickMs'
  | 'electionTimeoutMs'
  | 'heartbeatIntervalMs'
  | 'requestTimeoutMs'
  | 'snapshotEveryEntries'
  | 'snapshotCatchupEntries'
  | 'kvLimits'
> & {
  /** Where the node listens for peers; port 0 lets the OS choose (the ready message tells which). */
  readonly listen: { readonly host: string; readonly port: number };
  /** Node and transport logs, as JSON lines on the child's stderr (default: silent). */
  readonly logLevel?: LogLevel;
  /**
   * When set, the process also serves the HTTP API (@raftkv/server) there; port 0 lets the OS
   * choose. Where it forwards to the leader comes with `setPeers` (`httpPeers`).
   */
  readonly http?: { readonly host: string; readonly port: number };
};

/** A key-value item as it crosses the IPC channel: the value decoded as UTF-8. */
export interface ProcessKvItem {
  readonly key: string;
  readonly value: string;
  readonly modIndex: number;
}

/** `RaftKvNode.status()` with its progress map as a plain object. */
export type ProcessNodeStatus = Omit<NodeStatus, 'progress'> & {
  readonly progress: Readonly<Record<NodeId, PeerProgress>> | null;
};

type TransportStats = ReturnType<RaftKvNode['transport']['stats']>;
type PeerStats = TransportStats['peers'] extends ReadonlyMap<NodeId, infer P> ? P : never;

/** The transport's counters with its per-peer map as a plain object. */
export type ProcessTransportStats = Omit<TransportStats, 'peers'> & {
  readonly peers: Readonly<Record<NodeId, PeerStats>>;
};

type Empty = Readonly<Record<string, never>>;

/** Arguments of each operation. */
export interface OpArgs {
  put: { readonly key: string; readonly value: string };
  get: { readonly key: string; readonly consistency?: Consistency };
  delete: { readonly key: string };
  cas: { readonly key: string; readonly value: string; readonly expect: Parameters<RaftKvNode['cas']>[2] };
  scan: { readonly prefix: string; readonly limit?: number; readonly consistency?: Consistency };
  status: Empty;
  transportStats: Empty;
  /** Where this node dials its peers, and (with an HTTP server) where it forwards requests: base URLs "http://host:port". */
  setPeers: { readonly peers: Readonly<Record<NodeId, string>>; readonly httpPeers?: Readonly<Record<NodeId, string>> };
  /** Closes the node gracefully; the process exits once the reply is sent. */
  close: Empty;
  /** Membership (leader only, except `members`): RaftKvNode's methods of the same names. */
  members: Empty;
  addLearner: { readonly id: NodeId; readonly peerAddress: string; readonly httpAddress?: string; readonly uid?: string; readonly autoPromote?: boolean };
  promote: { readonly id: NodeId };
  removeMember: { readonly id: NodeId };
  transferLeadership: { readonly to?: NodeId };
}

/** Result of each operation. */
export interface OpResults {
  put: { modIndex: number };
  get: ProcessKvItem | null;
  delete: { modIndex: number; existed: boolean };
  cas: Awaited<ReturnType<RaftKvNode['cas']>>;
  scan: ProcessKvItem[];
  status: ProcessNodeStatus;
  transportStats: ProcessTransportStats;
  setPeers: null;
  close: null;
  members: MemberView[];
  addLearner: null;
  promote: null;
  removeMember: null;
  /** The node leadership goes to. */
  transferLeadership: NodeId;
}

export type Op = keyof OpArgs;

export const OPS: readonly Op[] = ['put', 'get', 'delete', 'cas', 'scan', 'status', 'transportStats', 'setPeers', 'close', 'members', 'addLearner', 'promote', 'removeMember', 'transferLeadership'];

export type Request = { [O in Op]: { readonly id: number; readonly op: O; readonly args: OpArgs[O] } }[Op];

export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | {
      readonly id: number;
      readonly ok: false;
      /** The RaftKvError code, or null for any other error. */
      readonly code: string | null;
      readonly message: string;
      readonly leaderHint: NodeId | null;
    };

export type Announcement =
  | { readonly type: 'ready'; readonly peerAddress: string; readonly httpAddress: string | null }
  | { readonly type: 'failed'; readonly code: string | null; readonly message: string };

export function isAnnouncement(value: unknown): value is Announcement {
  if (typeof value !== 'object' || value === null) return false;
  const type = (value as { type?: unknown }).type;
  return type === 'ready' || type === 'failed';
}

export function isReply(value: unknown): value is Reply {
  if (typeof value !== 'object' || value === null) return false;
  const f = value as { id?: unknown; ok?: unknown };
  return typeof f.id === 'number' && typeof f.ok === 'boolean';
}

export function isRequest(value: unknown): value is Request {
  if (typeof value !== 'object' || value === null) return false;
  const f = value as { id?: unknown; op?: unknown; args?: unknown };
  return typeof f.id === 'number' && OPS.includes(f.op as Op) && typeof f.args === 'object' && f.args !== null;
}
