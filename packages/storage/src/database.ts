/**
 * The narrow slice of abstract-level the store uses: one synced batch per write and one ordered
 * scan at open. Every call names its encodings, so the database's own defaults do not matter
 * (a MemoryLevel created with utf8 values serves as well as a ClassicLevel opened with 'view').
 */
import type { AbstractBatchOptions, AbstractIteratorOptions, AbstractLevel } from 'abstract-level';

/** Any abstract-level database: `ClassicLevel` in production, `MemoryLevel` in tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the store fixes encodings per call, so the database's key/value/format types are irrelevant
export type LogDatabase = AbstractLevel<any, any, any>;

export type BatchOp = { readonly type: 'put'; readonly key: string; readonly value: Uint8Array } | { readonly type: 'del'; readonly key: string };

const KEY_ENCODING = 'utf8';
const VALUE_ENCODING = 'view';

/**
 * `sync: true` makes LevelDB fsync its write-ahead log before the batch resolves (classic-level;
 * memory-level ignores it). abstract-level's types do not list `sync`, hence the intersection.
 */
const BATCH_OPTIONS: AbstractBatchOptions<string, Uint8Array> & { readonly sync: boolean } = {
  keyEncoding: KEY_ENCODING,
  valueEncoding: VALUE_ENCODING,
  sync: true,
};

const BATCH_OPTIONS_UNSYNCED: AbstractBatchOptions<string, Uint8Array> & { readonly sync: boolean } = { ...BATCH_OPTIONS, sync: false };

/**
 * Writes `ops` atomically: all of them or none; durably when `sync` (the default). Unsynced
 * batches are for what Raft does not need durable (a hard state whose only change is the
 * commit index); the next synced batch carries them to disk too, since LevelDB's log is one file.
 */
export async function writeBatch(db: LogDatabase, ops: readonly BatchOp[], sync = true): Promise<void> {
  await db.batch<string, Uint8Array>([...ops], sync ? BATCH_OPTIONS : BATCH_OPTIONS_UNSYNCED);
}

/** Bytes read per step of the scan at open (the iterator's buffer). */
const SCAN_BYTES_MAX = 4 * 1024 * 1024;

const SCAN_OPTIONS: AbstractIteratorOptions<string, Uint8Array> & { readonly highWaterMarkBytes: number; readonly fillCache: boolean } = {
  keyEncoding: KEY_ENCODING,
  valueEncoding: VALUE_ENCODING,
  keys: true,
  values: true,
  highWaterMarkBytes: SCAN_BYTES_MAX,
  // A one-off scan: do not evict the block cache for it (classic-level).
  fillCache: false,
};

/** Every record of the database, in key order. */
export async function* scanAll(db: LogDatabase): AsyncGenerator<[string, Uint8Array]> {
  for await (const [key, value] of db.iterator<string, Uint8Array>(SCAN_OPTIONS)) yield [key, value];
}
