import { setTimeout as sleep } from 'node:timers/promises';
import type { RaftKvNode } from '@raftkv/node';
import { ErrorCode, isRaftKvError, type NodeId } from '@raftkv/raft';

export interface RetryOptions {
  /** Attempts before the last error is thrown. */
  readonly attemptsMax?: number;
  /** Pause before an attempt that has no new leader hint to follow. */
  readonly backoffMs?: number;
}

/**
 * Runs `write` on the leader, following NOT_LEADER hints across elections.
 * `nodeFor(hint)` returns the node to try: the one the hint names when you can reach it,
 * otherwise any node. Pass a session in `write` if it may be retried after TIMEOUT or
 * SHUTTING_DOWN: those writes may already have taken effect.
 */
export async function withLeaderRetry<T>(
  nodeFor: (hint: NodeId | null) => RaftKvNode,
  write: (node: RaftKvNode) => Promise<T>,
  { attemptsMax = 50, backoffMs = 100 }: RetryOptions = {},
): Promise<T> {
  let hint: NodeId | null = null;
  for (let attempt = 1; ; attempt++) {
    try {
      return await write(nodeFor(hint));
    } catch (error) {
      if (!isRaftKvError(error) || attempt >= attemptsMax) throw error;
      const previous: NodeId | null = hint;
      switch (error.code) {
        case ErrorCode.NOT_LEADER: // not applied
        case ErrorCode.PROPOSAL_DROPPED: // not applied
          hint = error.leaderHint;
          break;
        case ErrorCode.TIMEOUT: // may have been applied
        case ErrorCode.SHUTTING_DOWN: // may have been applied
          hint = null;
          break;
        default:
          throw error; // a bad key, a value over the limit: retrying cannot help
      }
      // Follow a new hint at once; otherwise give the election time to finish.
      if (error.code !== ErrorCode.NOT_LEADER || hint === null || hint === previous) await sleep(backoffMs);
    }
  }
}
