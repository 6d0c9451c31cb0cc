export { LocalCluster, startCluster } from './cluster.js';
export type { ClusterOptions } from './cluster.js';
export { RaftKvNode, startNode } from './node.js';
export type { Consistency, KvItem, MemberView, NodeStatus, ReadOptions, RoleChange, StateHash, WriteOptions } from './node.js';
export { NODE_DEFAULTS, parseAddress, resolveNodeOptions } from './options.js';
export type { NodeOptions, NodeSettings } from './options.js';
export { Replica, reconcile } from './replica/replica.js';
export type { ReadConsistency, ReplicaIO, ReplicaOptions, ReplicaStatus } from './replica/replica.js';
export type { Clock, Done, LogWrite, ReplicaEvents, ReplicaInbox, ReplicaLog, ReplicaLogger, ReplicaStateMachine, ReplicaTransport } from './replica/io.js';
export { MemoryReplicaLog, MemoryReplicaStateMachine, NEXT_TURN } from './io/memory.js';
export type { IoOperation, IoScheduler } from './io/memory.js';
export { forceNewCluster, restoreDataDir, restoredClusterId } from './restore.js';
export type { ForceNewClusterOptions, ForceNewClusterReport, RestoreOptions, RestoreReport } from './restore.js';
// The backup file's reader, for the CLI (which depends on this package, not on @raftkv/kv).
export { verifyBackupFile } from '@raftkv/kv';
export type { BackupInfo, BackupMetadata } from '@raftkv/kv';
