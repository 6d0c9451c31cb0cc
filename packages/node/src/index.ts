export { LocalCluster, startCluster } from './cluster.js';
export type { ClusterOptions } from './cluster.js';
export { RaftKvNode, startNode } from './node.js';
export type { Consistency, KvItem, NodeStatus, ReadOptions, RoleChange, WriteOptions } from './node.js';
export { NODE_DEFAULTS, parseAddress, resolveNodeOptions } from './options.js';
export type { NodeOptions, NodeSettings } from './options.js';
