import { ErrorCode, RaftKvError } from '@raftkv/raft';

/**
 * Named bounds of the key-value state machine. The defaults follow etcd where etcd has an
 * equivalent (its request size limit is 1.5 MiB).
 *
 * Two kinds of bound live here, and the difference matters:
 * - Per-node admission limits (`keyBytesMax`, `valueBytesMax`) are checked by
 *   `validateCommand` before a command is proposed. They are never checked when a committed
 *   entry is applied: nodes may be configured differently, and applying must give the same
 *   answer on every replica.
 * - `sessionCountMax` shapes the replicated state itself (which client sessions are evicted),
 *   so it must be the same on every node of a cluster.
 */
export interface KvLimits {
  /** Largest key, in UTF-8 bytes. */
  readonly keyBytesMax: number;
  /** Largest value, in bytes. */
  readonly valueBytesMax: number;
  /** Most client sessions remembered for exactly-once retries; the least recently used is evicted. Cluster-wide. */
  readonly sessionCountMax: number;
  /** Most entries one `scan` returns. */
  readonly scanCountMax: number;
  /** Target size of one snapshot chunk (a chunk holds whole records, so one may be larger by one record). */
  readonly snapshotChunkBytes: number;
}

export const KV_LIMITS_DEFAULT: KvLimits = {
  keyBytesMax: 4 * 1024,
  valueBytesMax: 1.5 * 1024 * 1024,
  sessionCountMax: 10_000,
  scanCountMax: 10_000,
  snapshotChunkBytes: 1024 * 1024,
};

/**
 * Fixed, not configurable: checked when a command is decoded, which happens at apply time on
 * every replica, so it must not vary between nodes.
 */
export const CLIENT_ID_BYTES_MAX = 256;

/** A snapshot frame larger than this is refused before it is buffered (a memory bound on import). */
export const SNAPSHOT_FRAME_BYTES_MAX = 64 * 1024 * 1024;

/** The limits with defaults filled in; reads only the KvLimits fields of `options` (other options may ride along). */
export function resolveLimits(options: Partial<KvLimits> = {}): KvLimits {
  const pick = (name: keyof KvLimits): number => options[name] ?? KV_LIMITS_DEFAULT[name];
  const limits: KvLimits = {
    keyBytesMax: pick('keyBytesMax'),
    valueBytesMax: pick('valueBytesMax'),
    sessionCountMax: pick('sessionCountMax'),
    scanCountMax: pick('scanCountMax'),
    snapshotChunkBytes: pick('snapshotChunkBytes'),
  };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `kv limit ${name} must be a positive integer, got ${String(value)}`);
    }
  }
  return limits;
}
