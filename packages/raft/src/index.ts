export { assert, assertNever, RaftAssertionError } from './assert.js';
export { RAFT_DEFAULTS, resolveConfig } from './config.js';
export type { RaftConfig, ResolvedRaftConfig } from './config.js';
export { describeEntry, describeMessage, describeReady } from './describe.js';
export { ErrorCode, isRaftKvError, RaftKvError } from './errors.js';
export type { RaftKvErrorOptions } from './errors.js';
export { leaseTicks } from './lease.js';
export { RaftLog } from './log.js';
export { UnstableLog } from './log-unstable.js';
export { applyConfChange, confChangeRefusal, ConfHistory, decodeConfChange, encodeConfChange } from './membership.js';
export type { ConfChange, ConfChangeType } from './membership.js';
export { majorityValue, voteResult } from './quorum.js';
export { DropReason } from './screen.js';
export type { VoteResult } from './quorum.js';
export { SeededRandom } from './random.js';
export type { RandomSource } from './random.js';
export { RawNode } from './raw-node.js';
export { Inflights } from './tracker/inflights.js';
export { Progress } from './tracker/progress.js';
export { ENTRY_OVERHEAD_BYTES, entryBytes, limitBytes, MemoryStorage } from './storage.js';
export type { LogStorage } from './storage.js';
export { EntryType, Role } from './types.js';
export type {
  BasicStatus,
  ConfState,
  Entry,
  HardState,
  LogIndex,
  Message,
  MessageType,
  MsgApp,
  MsgAppResp,
  MsgHeartbeat,
  MsgHeartbeatResp,
  MsgLogLost,
  MsgReadIndex,
  MsgReadIndexResp,
  MsgSnap,
  MsgTimeoutNow,
  MsgTransferLeader,
  MsgVote,
  MsgVoteResp,
  NodeId,
  PeerProgress,
  ReadContext,
  ReadState,
  Ready,
  Snapshot,
  SnapshotMeta,
  SoftState,
  Status,
  Term,
} from './types.js';
