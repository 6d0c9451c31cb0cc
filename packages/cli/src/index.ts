export {
  CLUSTER_DEFAULTS,
  CLUSTER_NODES_MAX,
  clusterAddresses,
  clusterIds,
  clusterNodeArgs,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  LOG_LEVELS,
  parseClusterArgs,
  parseStartArgs,
  parseStatusArgs,
  UsageError,
} from './args.js';
export type { ClusterConfig, ClusterNodeAddresses, HostPort, JoinConfig, LogLevel, StartConfig, StatusConfig } from './args.js';
export { ApiError, call, callOk, ENDPOINTS_DEFAULT, ENDPOINTS_ENV, endpointsFrom, NoAnswerError, OutcomeUnknownError } from './endpoints.js';
export type { Answer, CallOptions, Endpoints } from './endpoints.js';
export { JOIN_RECORD_FILE, JoinError, prepareJoin, requestMembership } from './join.js';
export { LEADER_USAGE, MEMBER_TIMEOUT_MS_DEFAULT, MEMBER_USAGE, membersTable, parseLeaderArgs, parseMemberArgs, runLeader, runMember } from './member.js';
export type { LeaderConfig, MemberCommand, MemberConfig, OutputFormat } from './member.js';
export { runCluster, usageLines } from './cluster.js';
export { processOutput } from './output.js';
export type { Output } from './output.js';
export { describeError, runStart } from './start.js';
export { fetchStatus, formatStatus, runStatus } from './status.js';
export type { NodeStatusJson, PeerProgress } from './status.js';
export { RESTART_DELAY_MAX_MS, RESTART_DELAY_MIN_MS, RESTARTS_CONSECUTIVE_MAX, STABLE_RUN_MS, SupervisedNode } from './supervisor.js';
export type { SupervisedNodeOptions } from './supervisor.js';
export { BACKUP_USAGE, parseBackupArgs, parseRecoverArgs, parseRestoreArgs, RECOVER_USAGE, RESTORE_USAGE } from './backup-args.js';
export type { BackupConfig, BackupInspectConfig, BackupTakeConfig, RecoverConfig, RestoreConfig } from './backup-args.js';
export { runBackup, runRecover, runRestore } from './backup.js';
