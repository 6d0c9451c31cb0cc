import { ErrorCode, isRaftKvError } from '@raftkv/raft';

/** Every code is in the one table of `@raftkv/raft`; these are the ones only the HTTP layer raises. */
export const ServerErrorCode = {
  COMPARE_FAILED: ErrorCode.COMPARE_FAILED,
  KEY_NOT_FOUND: ErrorCode.KEY_NOT_FOUND,
  ROUTE_NOT_FOUND: ErrorCode.ROUTE_NOT_FOUND,
  BAD_REQUEST: ErrorCode.BAD_REQUEST,
  INTERNAL: ErrorCode.INTERNAL,
} as const;
export type ServerErrorCode = (typeof ServerErrorCode)[keyof typeof ServerErrorCode];

export type HttpErrorCode = ErrorCode;

/**
 * One HTTP status per code. `satisfies` makes a code added to `ErrorCode` fail to compile
 * here until it is given a status.
 */
export const HTTP_STATUS = {
  RAFTKV_NOT_LEADER: 503,
  RAFTKV_PROPOSAL_DROPPED: 503,
  RAFTKV_SHUTTING_DOWN: 503,
  RAFTKV_STORAGE_CLOSED: 503,
  RAFTKV_TIMEOUT: 504,
  RAFTKV_ENTRY_TOO_LARGE: 413,
  RAFTKV_KEY_TOO_LARGE: 413,
  RAFTKV_VALUE_TOO_LARGE: 413,
  RAFTKV_KEY_INVALID: 400,
  RAFTKV_INVALID_CONFIG: 400,
  RAFTKV_COMMAND_INVALID: 400,
  RAFTKV_BAD_REQUEST: 400,
  RAFTKV_KEY_NOT_FOUND: 404,
  RAFTKV_ROUTE_NOT_FOUND: 404,
  RAFTKV_COMPARE_FAILED: 409,
  // Internal to the node; reaching a client means something went wrong on this node.
  RAFTKV_LOG_COMPACTED: 500,
  RAFTKV_LOG_UNAVAILABLE: 500,
  RAFTKV_SNAPSHOT_OUT_OF_DATE: 500,
  RAFTKV_STORAGE_CORRUPT: 500,
  RAFTKV_PEER_REJECTED: 500,
  RAFTKV_FRAME_INVALID: 500,
  RAFTKV_SNAPSHOT_TRANSFER_FAILED: 500,
  RAFTKV_INTERNAL: 500,
  RAFTKV_CONF_CHANGE_PENDING: 409,
  RAFTKV_CONF_CHANGE_INVALID: 409,
  // Raised by the backup commands on a file, never by a route.
  RAFTKV_BACKUP_INVALID: 500,
  // Like an invalid membership change, a transfer is refused by the state of the cluster (the
  // target is a learner, or there is no other voter), not by the form of the request.
  RAFTKV_TRANSFER_REJECTED: 409,
} as const satisfies Record<HttpErrorCode, number>;

/** Codes after which the client should retry after a short pause (`Retry-After: 1`). */
const RETRY_AFTER_SECONDS: Partial<Record<HttpErrorCode, number>> = {
  RAFTKV_NOT_LEADER: 1,
  RAFTKV_PROPOSAL_DROPPED: 1,
  RAFTKV_CONF_CHANGE_PENDING: 1,
};

export interface ErrorBody {
  readonly code: HttpErrorCode;
  readonly message: string;
  /** The leader this node knows of (NOT_LEADER, PROPOSAL_DROPPED), when it knows one. */
  readonly leaderHint?: string;
  /** COMPARE_FAILED: the key's modification index now, or null when the key is absent. */
  readonly currentModIndex?: number | null;
}

export interface HttpError {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: ErrorBody;
  /** True when the cause is a bug or an unexpected failure, to be logged at error level. */
  readonly unexpected: boolean;
}

export function httpError(code: HttpErrorCode, message: string, extra: Omit<ErrorBody, 'code' | 'message'> = {}): HttpError {
  const retryAfter = RETRY_AFTER_SECONDS[code];
  return {
    status: HTTP_STATUS[code],
    headers: retryAfter === undefined ? {} : { 'retry-after': String(retryAfter) },
    body: { code, message, ...extra },
    unexpected: HTTP_STATUS[code] === 500,
  };
}

interface FastifyLikeError {
  readonly code?: unknown;
  readonly statusCode?: unknown;
  readonly message?: unknown;
}

/** Maps anything thrown while serving a request to one status and a `{ code, message }` body. */
export function toHttpError(error: unknown): HttpError {
  if (isRaftKvError(error)) {
    return httpError(error.code, error.message, error.leaderHint === null ? {} : { leaderHint: error.leaderHint });
  }
  const e = (typeof error === 'object' && error !== null ? error : {}) as FastifyLikeError;
  const message = typeof e.message === 'string' ? e.message : String(error);
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return httpError(ErrorCode.VALUE_TOO_LARGE, message);
  // fastify's own client errors (bad content length, bad URL, ...) carry a 4xx statusCode;
  // they all become 400 so that each code keeps one status.
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return httpError(ServerErrorCode.BAD_REQUEST, message);
  return { ...httpError(ServerErrorCode.INTERNAL, 'internal error; see the node log'), unexpected: true };
}
