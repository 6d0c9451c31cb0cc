/**
 * The one error class of raftkv. Every error a caller may see carries a stable `code` from
 * `ErrorCode`; match on the code, never on the message text. `docs/errors.md` lists each code
 * and what to do about it. Assertion failures are not RaftKvErrors (see assert.ts).
 */
export const ErrorCode = {
  /** This node is not the leader; `leaderHint` says who is, when known. */
  NOT_LEADER: 'RAFTKV_NOT_LEADER',
  /** The proposal was not appended (no leader, transfer in progress, or too many uncommitted bytes). */
  PROPOSAL_DROPPED: 'RAFTKV_PROPOSAL_DROPPED',
  /** An entry, or one message's worth of entries, is larger than the configured limit. */
  ENTRY_TOO_LARGE: 'RAFTKV_ENTRY_TOO_LARGE',
  /** The requested log index was compacted into a snapshot. */
  LOG_COMPACTED: 'RAFTKV_LOG_COMPACTED',
  /** The requested log index is past the end of the stored log. */
  LOG_UNAVAILABLE: 'RAFTKV_LOG_UNAVAILABLE',
  /** A snapshot older than what storage already has was offered. */
  SNAPSHOT_OUT_OF_DATE: 'RAFTKV_SNAPSHOT_OUT_OF_DATE',
  /** A membership change was refused: another is still being applied, or the leader has not yet committed an entry of its term. Retry shortly. */
  CONF_CHANGE_PENDING: 'RAFTKV_CONF_CHANGE_PENDING',
  /** A membership change cannot follow the current configuration (adding a member twice, removing the last voter, promoting a learner that is not caught up, ...). */
  CONF_CHANGE_INVALID: 'RAFTKV_CONF_CHANGE_INVALID',
  /** A leadership transfer could not start (unknown target, or target is self). */
  TRANSFER_REJECTED: 'RAFTKV_TRANSFER_REJECTED',
  /** A configuration value is out of range. */
  INVALID_CONFIG: 'RAFTKV_INVALID_CONFIG',
  /** Data on disk failed its checksum or does not decode; the message names the directory and the record. */
  STORAGE_CORRUPT: 'RAFTKV_STORAGE_CORRUPT',
  /** A storage or state machine was used after close(). */
  STORAGE_CLOSED: 'RAFTKV_STORAGE_CLOSED',
  /** A peer connection was refused: wrong cluster id, unknown node id, or a bad handshake. */
  PEER_REJECTED: 'RAFTKV_PEER_REJECTED',
  /** A frame on the peer port was malformed, truncated or over the size limit; the connection is closed. */
  FRAME_INVALID: 'RAFTKV_FRAME_INVALID',
  /** A snapshot stream to or from a peer broke off or did not verify. */
  SNAPSHOT_TRANSFER_FAILED: 'RAFTKV_SNAPSHOT_TRANSFER_FAILED',
  /** A key is empty or not valid UTF-8 text. */
  KEY_INVALID: 'RAFTKV_KEY_INVALID',
  /** A key is longer than the configured limit. */
  KEY_TOO_LARGE: 'RAFTKV_KEY_TOO_LARGE',
  /** A value is larger than the configured limit. */
  VALUE_TOO_LARGE: 'RAFTKV_VALUE_TOO_LARGE',
  /** A command does not decode into a known operation. */
  COMMAND_INVALID: 'RAFTKV_COMMAND_INVALID',
  /** A proposal or read did not complete in time; a write may still have taken effect. */
  TIMEOUT: 'RAFTKV_TIMEOUT',
  /** The node is shutting down; the request was not completed (a write may still take effect). */
  SHUTTING_DOWN: 'RAFTKV_SHUTTING_DOWN',
  /** HTTP: a compare-and-set did not match the key's current modification index. */
  COMPARE_FAILED: 'RAFTKV_COMPARE_FAILED',
  /** HTTP: the key does not exist. */
  KEY_NOT_FOUND: 'RAFTKV_KEY_NOT_FOUND',
  /** HTTP: no route matches the method and path. */
  ROUTE_NOT_FOUND: 'RAFTKV_ROUTE_NOT_FOUND',
  /** HTTP: a malformed request (query parameter, header, URL or body framing). */
  BAD_REQUEST: 'RAFTKV_BAD_REQUEST',
  /** A bug or an unexpected failure on the node; it is logged there. */
  INTERNAL: 'RAFTKV_INTERNAL',
  /** A backup file failed to verify (corrupt, truncated, not a backup, or of an unsupported version); the message names the file and the check. */
  BACKUP_INVALID: 'RAFTKV_BACKUP_INVALID',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface RaftKvErrorOptions {
  readonly cause?: unknown;
  readonly leaderHint?: string | null;
}

export class RaftKvError extends Error {
  override readonly name = 'RaftKvError';
  readonly code: ErrorCode;
  readonly leaderHint: string | null;

  constructor(code: ErrorCode, message: string, options: RaftKvErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.leaderHint = options.leaderHint ?? null;
  }
}

export function isRaftKvError(error: unknown, code?: ErrorCode): error is RaftKvError {
  return error instanceof RaftKvError && (code === undefined || error.code === code);
}
