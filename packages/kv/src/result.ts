/**
 * What applying a command answers. Results are part of the replicated state (the session table
 * stores the last one per client), so they are plain data and identical on every replica.
 */
import { ErrorCode } from '@raftkv/raft';
import type { LogIndex } from '@raftkv/raft';

/** A put, or a successful compare-and-set: `modIndex` is the index of the entry that wrote the key. */
export interface WriteResult {
  readonly type: 'put' | 'cas';
  readonly ok: true;
  readonly modIndex: LogIndex;
}

/**
 * A delete always succeeds. `existed` says whether the key was present; `modIndex` is the index
 * of the delete's entry either way.
 */
export interface DeleteResult {
  readonly type: 'delete';
  readonly ok: true;
  readonly modIndex: LogIndex;
  readonly existed: boolean;
}

/** A compare-and-set whose expectation did not hold: `current` is the key's state (null: absent). */
export interface CasFailedResult {
  readonly type: 'cas';
  readonly ok: false;
  readonly current: { readonly modIndex: LogIndex } | null;
}

export const InvalidReason = {
  /** The entry's bytes are not a command (`decodeCommand` refused them). */
  Undecodable: 'undecodable',
  /**
   * The session's sequence number is older than the last one applied for that client. Only the
   * last result is kept, and a client has one command outstanding at a time, so nobody waits
   * for this answer; the command is not executed.
   */
  SessionSeqStale: 'session-seq-stale',
} as const;
export type InvalidReason = (typeof InvalidReason)[keyof typeof InvalidReason];

/** A committed entry that was not executed. Deterministic: every replica answers the same. */
export interface InvalidResult {
  readonly type: 'invalid';
  readonly ok: false;
  readonly error: typeof ErrorCode.COMMAND_INVALID;
  readonly reason: InvalidReason;
}

export type CommandResult = WriteResult | DeleteResult | CasFailedResult | InvalidResult;

/** The outcome of one entry given to `apply`, in the same order. */
export interface ApplyResult {
  readonly index: LogIndex;
  /**
   * Null when the entry carried no command (a leader's no-op, a configuration entry) or was
   * already applied before (a replay after restart); otherwise the command's result.
   */
  readonly result: CommandResult | null;
}

export function invalidResult(reason: InvalidReason): InvalidResult {
  return { type: 'invalid', ok: false, error: ErrorCode.COMMAND_INVALID, reason };
}

/** Rebuilds a result read back from storage; null when its shape is wrong (the caller reports corruption). */
export function checkStoredResult(raw: unknown): CommandResult | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const r = raw as Record<string, unknown>;
  const modIndex = r['modIndex'];
  const validIndex = typeof modIndex === 'number' && Number.isSafeInteger(modIndex) && modIndex >= 0;
  if ((r['type'] === 'put' || r['type'] === 'cas') && r['ok'] === true && validIndex) {
    return { type: r['type'], ok: true, modIndex };
  }
  if (r['type'] === 'delete' && r['ok'] === true && validIndex && typeof r['existed'] === 'boolean') {
    return { type: 'delete', ok: true, modIndex, existed: r['existed'] };
  }
  if (r['type'] === 'cas' && r['ok'] === false) {
    const current = r['current'];
    if (current === null) return { type: 'cas', ok: false, current: null };
    const currentIndex = typeof current === 'object' ? (current as Record<string, unknown>)['modIndex'] : undefined;
    if (typeof currentIndex === 'number' && Number.isSafeInteger(currentIndex) && currentIndex >= 1) {
      return { type: 'cas', ok: false, current: { modIndex: currentIndex } };
    }
  }
  return null;
}
