export { decodeCommand, encodeCommand, isWellFormedText, validateCommand, validateKey } from './command.js';
export type { CasCommand, CasExpect, ClientSession, Command, CommandType, DeleteCommand, PutCommand } from './command.js';
export { NODE_DIR_OPS, recoverDataDir } from './home.js';
export type { DirOps, KvDb, RecoveryAction } from './home.js';
export { CLIENT_ID_BYTES_MAX, KV_LIMITS_DEFAULT, SNAPSHOT_FRAME_BYTES_MAX } from './limits.js';
export type { KvLimits } from './limits.js';
export { encodeMemberInfo, FORMAT_VERSION, memberInfoOf } from './records.js';
export type { MemberInfo } from './records.js';
export { InvalidReason } from './result.js';
export type { ApplyResult, CasFailedResult, CommandResult, DeleteResult, InvalidResult, WriteResult } from './result.js';
export { SNAPSHOT_FORMAT_VERSION } from './snapshot.js';
export { KvStateMachine, openKvStateMachine } from './state-machine.js';
export type {
  KvDirOptions,
  KvPair,
  KvStateMachineOptions,
  KvValue,
  SnapshotExport,
  SnapshotPosition,
  StagedSnapshot,
} from './state-machine.js';
export { MemoryKvStateMachine } from './memory.js';
export type { MemoryImage } from './memory.js';
export { BACKUP_FORMAT_VERSION, BACKUP_METADATA_BYTES_MAX, backupStream, readBackupImage, STATE_HASH_DOMAIN, summarizeImage, verifyBackupFile } from './backup.js';
export type { BackupInfo, BackupMetadata, BackupSource, ImageSummary } from './backup.js';
