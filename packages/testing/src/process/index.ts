/**
 * Multi-process test clusters: every node in its own OS process, so that tests can kill -9,
 * pause, restart and corrupt them. Kept apart from the main entry (it forks processes and
 * needs `tsx` to run the node from source).
 */
export { findWorkspaceRoot, isNodeProcessError, NodeChild, NodeProcessError, NodeProcessErrorCode, PENDING_REQUESTS_MAX, STDERR_BYTES_MAX } from './node-child.js';
export type { ExitStatus, SpawnOptions } from './node-child.js';
export { isRetryableOnLeader, ProcessCluster } from './process-cluster.js';
export type { ProcessClusterOptions, RequestOptions, RoutedOptions, UnexpectedExit } from './process-cluster.js';
export { EXIT_NODE_FAILED, EXIT_START_FAILED, EXIT_USAGE } from './protocol.js';
export type { LogLevel, NodeProcessConfig, Op, OpArgs, OpResults, ProcessKvItem, ProcessNodeStatus, ProcessTransportStats } from './protocol.js';
