/**
 * Reading a store back at open. Every record is verified (size, checksum, shape, its place in
 * the log) before anything is served: bad data on disk is reported as STORAGE_CORRUPT naming the
 * directory and the record, never skipped.
 */
import type { Entry, HardState, LogIndex, Snapshot, SnapshotMeta } from '@raftkv/raft';
import { scanAll, type LogDatabase } from './database.js';
import {
  corrupt,
  decodeEntry,
  decodeIdentity,
  decodePeerUid,
  decodeHardState,
  decodeSnapshotData,
  decodeSnapshotMeta,
  decodeVersion,
  FORMAT_VERSION,
  KEY,
  parseEntryKey,
  parsePeerKey,
  type NodeIdentity,
} from './format.js';

/** Everything a store holds, verified. */
export interface StoredState {
  readonly hardState: HardState;
  /** The latest snapshot; `data` is empty unless a caller stored an image (see SNAPSHOT_DATA_BYTES_MAX). */
  readonly snapshot: Snapshot;
  /** Entries [snapshot.meta.index + 1, last], contiguous. */
  readonly entries: readonly Entry[];
  /** Null for a store written before identities were kept. */
  readonly identity: NodeIdentity | null;
  /** The data-directory id first seen from each peer. */
  readonly peers: ReadonlyMap<string, string>;
}

interface RawRecords {
  readonly meta: ReadonlyMap<string, Uint8Array>;
  readonly peers: ReadonlyMap<string, Uint8Array>;
  readonly entries: readonly { readonly index: LogIndex; readonly record: Uint8Array }[];
}

const META_KEYS: ReadonlySet<string> = new Set(Object.values(KEY));
const EMPTY_DATA = new Uint8Array(0);

/** The verified contents of the store, or null when it holds no record at all (a new store). */
export async function loadStore(db: LogDatabase, dataDir: string): Promise<StoredState | null> {
  const raw = await readRecords(db, dataDir);
  if (raw.meta.size === 0 && raw.entries.length === 0) return null;
  // The version first: the other records of a store of another format are not interpreted.
  const versionRecord = raw.meta.get(KEY.version);
  if (versionRecord === undefined) throw corrupt(dataDir, `the log store holds records but no format version (${KEY.version})`);
  const version = decodeVersion(versionRecord, dataDir);
  if (version !== FORMAT_VERSION) {
    throw corrupt(dataDir, `the log store has format version ${version}; this build reads format version ${FORMAT_VERSION} only`);
  }
  const snapshot = loadSnapshot(raw.meta, dataDir);
  const entries = loadEntries(raw.entries, snapshot.meta, dataDir);
  const hardStateRecord = raw.meta.get(KEY.hardState);
  if (hardStateRecord === undefined) throw corrupt(dataDir, `the hard state (${KEY.hardState}) is missing`);
  const hardState = decodeHardState(hardStateRecord, dataDir);
  const lastIndex = entries[entries.length - 1]?.index ?? snapshot.meta.index;
  // The core persists commit with (or after) the entries it covers, and never truncates a
  // committed entry; a commit past the end means entries that were there are gone.
  if (hardState.commit > lastIndex) {
    throw corrupt(dataDir, `the hard state commits index ${hardState.commit}, past the last log entry ${lastIndex}`);
  }
  const identityRecord = raw.meta.get(KEY.identity);
  const identity = identityRecord === undefined ? null : decodeIdentity(identityRecord, dataDir);
  const peers = new Map([...raw.peers].map(([peer, record]) => [peer, decodePeerUid(record, peer, dataDir)]));
  return { hardState, snapshot, entries, identity, peers };
}

/** One ordered scan: entry records by index, metadata records by key; any other key is refused. */
async function readRecords(db: LogDatabase, dataDir: string): Promise<RawRecords> {
  const meta = new Map<string, Uint8Array>();
  const peers = new Map<string, Uint8Array>();
  const entries: { index: LogIndex; record: Uint8Array }[] = [];
  for await (const [key, record] of scanAll(db)) {
    const index = parseEntryKey(key);
    const peer = parsePeerKey(key);
    if (index !== null) entries.push({ index, record });
    else if (META_KEYS.has(key)) meta.set(key, record);
    else if (peer !== null) peers.set(peer, record);
    else throw corrupt(dataDir, `unexpected key ${JSON.stringify(key)}: this is not a raftkv log store, or it is damaged`);
  }
  return { meta, peers, entries };
}

function loadSnapshot(meta: ReadonlyMap<string, Uint8Array>, dataDir: string): Snapshot {
  const metaRecord = meta.get(KEY.snapshot);
  if (metaRecord === undefined) throw corrupt(dataDir, `the snapshot metadata (${KEY.snapshot}) is missing`);
  const snapshotMeta = decodeSnapshotMeta(metaRecord, dataDir);
  const dataRecord = meta.get(KEY.snapshotData);
  if (dataRecord === undefined) return { meta: snapshotMeta, data: EMPTY_DATA };
  const { index, data } = decodeSnapshotData(dataRecord, dataDir);
  if (index !== snapshotMeta.index) {
    throw corrupt(dataDir, `the snapshot data belongs to snapshot ${index}, but the snapshot metadata is at index ${snapshotMeta.index}`);
  }
  return { meta: snapshotMeta, data };
}

/**
 * Verifies the entries after the snapshot: each one where it belongs (no gap, nothing at or
 * below the snapshot), intact, and with a term no lower than the one before it (terms never
 * decrease along a Raft log; the snapshot's term comes first).
 *
 * A torn or corrupt tail is reported like any other damage, not truncated. LevelDB already
 * drops a batch whose write was cut short by a crash: that batch was never acknowledged. An
 * entry that fails here was written whole and synced, so this node may have acknowledged it
 * (MsgAppResp) and the leader may have counted it towards a commit; dropping it silently could
 * lose a committed write if this copy is part of the majority that holds it. An operator must
 * decide (remove the node and let it rejoin from a snapshot).
 */
function loadEntries(raw: RawRecords['entries'], snapshot: SnapshotMeta, dataDir: string): Entry[] {
  const entries: Entry[] = [];
  let prevTerm = snapshot.term;
  for (const { index, record } of raw) {
    const expected = snapshot.index + 1 + entries.length;
    if (index < expected) {
      throw corrupt(dataDir, `log entry ${index} is at or below the snapshot index ${snapshot.index}: the compaction that covered it did not remove it`);
    }
    if (index > expected) {
      const missing = index - 1 === expected ? `log entry ${expected} is missing` : `log entries ${expected}..${index - 1} are missing`;
      throw corrupt(dataDir, `${missing}: the log jumps from ${expected - 1} to ${index}`);
    }
    const entry = decodeEntry(record, index, dataDir);
    if (entry.term < prevTerm) throw corrupt(dataDir, `log entry ${index} has term ${entry.term}, lower than the term ${prevTerm} before it`);
    prevTerm = entry.term;
    entries.push(entry);
  }
  return entries;
}
