/**
 * The on-disk format of the log store: keys, record layout, checksums and the format version.
 * Everything that decides which bytes reach the disk lives in this file.
 *
 * Keys (utf8, fixed width so that lexicographic order is numeric order):
 *   e/<16 lowercase hex digits>  one log entry, by index
 *   m/hardstate                  the hard state (term, vote, commit)
 *   m/snapshot                   the latest snapshot's metadata (index, term, configuration)
 *   m/snapshot-data              the snapshot's data, only when a caller gave non-empty bytes
 *   m/version                    the format version (FORMAT_VERSION)
 *   m/identity                   this node's identity: cluster id, node id, and a random id of the data directory
 *   p/<node id>                  the data-directory id first seen from that peer (see LevelLogStorage.rememberPeer)
 *
 * Record (every value): crc32 (4 bytes, big-endian, over the payload) ‖ payload, where the
 * payload is one msgpack value encoded with the shared `Packr` of @raftkv/codec:
 *   entry          [index, term, typeCode, data]   typeCode: ENTRY_TYPE_BY_CODE
 *   hard state     [term, vote | null, commit]
 *   snapshot meta  [index, term, voters, learners]
 *   snapshot data  [index, data]                   index: the snapshot it belongs to
 *   version        FORMAT_VERSION                  (this record's layout never changes)
 *   identity       [clusterId, nodeId, uid]
 *   peer           uid
 */
import { crc32 } from 'node:zlib';
import { decode, encode } from '@raftkv/codec';
import {
  assert,
  EntryType,
  ErrorCode,
  RaftKvError,
  type ConfState,
  type Entry,
  type HardState,
  type LogIndex,
  type SnapshotMeta,
} from '@raftkv/raft';

/** The layout described above. A store written in any other version is refused at open. */
export const FORMAT_VERSION = 1;

/**
 * Upper bound on one record, checked before it is written and before it is decoded. Well above
 * the core's default `entryBytesMax` (4 MiB) so that any entry the core accepts fits.
 */
export const RECORD_BYTES_MAX = 32 * 1024 * 1024;

/**
 * Upper bound on snapshot data kept by `compact` / `applySnapshot`. The store is not a snapshot
 * store (the KV state machine holds the state); it keeps small images only so that the
 * LogStorage contract can round-trip them.
 */
export const SNAPSHOT_DATA_BYTES_MAX = 64 * 1024;

const CHECKSUM_BYTES = 4;

export const KEY = {
  hardState: 'm/hardstate',
  snapshot: 'm/snapshot',
  snapshotData: 'm/snapshot-data',
  version: 'm/version',
  identity: 'm/identity',
} as const;

const PEER_KEY_PREFIX = 'p/';

/** Who this log store belongs to. The uid is drawn when the store is created: a wiped store gets a new one. */
export interface NodeIdentity {
  readonly clusterId: string;
  readonly nodeId: string;
  readonly uid: string;
}

export function peerKey(nodeId: string): string {
  return PEER_KEY_PREFIX + nodeId;
}

/** The node id a peer key names, or null when `key` is not a peer key. */
export function parsePeerKey(key: string): string | null {
  return key.startsWith(PEER_KEY_PREFIX) && key.length > PEER_KEY_PREFIX.length ? key.slice(PEER_KEY_PREFIX.length) : null;
}

export function encodeIdentity(identity: NodeIdentity): Uint8Array {
  return seal([identity.clusterId, identity.nodeId, identity.uid], 'the node identity');
}

export function decodeIdentity(record: Uint8Array, dataDir: string): NodeIdentity {
  return unseal(record, `the node identity (${KEY.identity})`, dataDir, (value) => {
    const [clusterId, node, uid] = tuple(value, 3);
    return { clusterId: nodeId(clusterId, 'clusterId'), nodeId: nodeId(node, 'nodeId'), uid: nodeId(uid, 'uid') };
  });
}

export function encodePeerUid(uid: string): Uint8Array {
  return seal(uid, 'a peer identity');
}

export function decodePeerUid(record: Uint8Array, peer: string, dataDir: string): string {
  return unseal(record, `the identity of peer ${peer}`, dataDir, (value) => nodeId(value, 'uid'));
}

const ENTRY_KEY_PREFIX = 'e/';
const ENTRY_KEY_DIGITS = 16;

/** On-disk codes of entry types. Append only: a code, once written, keeps its meaning. */
const ENTRY_TYPE_BY_CODE: readonly EntryType[] = [EntryType.Normal, EntryType.ConfChange];

export function entryKey(index: LogIndex): string {
  assert(Number.isSafeInteger(index) && index >= 1, `entry key for invalid index ${index}`);
  return ENTRY_KEY_PREFIX + index.toString(16).padStart(ENTRY_KEY_DIGITS, '0');
}

/** The index an entry key names, or null when `key` is not a well-formed entry key. */
export function parseEntryKey(key: string): LogIndex | null {
  if (!key.startsWith(ENTRY_KEY_PREFIX) || key.length !== ENTRY_KEY_PREFIX.length + ENTRY_KEY_DIGITS) return null;
  const digits = key.slice(ENTRY_KEY_PREFIX.length);
  if (!/^[0-9a-f]+$/.test(digits)) return null;
  const index = Number.parseInt(digits, 16);
  return Number.isSafeInteger(index) && index >= 1 ? index : null;
}

/** The error for bad data on disk: names the directory and the record. */
export function corrupt(dataDir: string, message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.STORAGE_CORRUPT, `${message} (data directory ${dataDir})`, cause === undefined ? {} : { cause });
}

// ---------------------------------------------------------------------------------------------
// Records: checksum and size bound.

/** Encodes `value` and prefixes the checksum. `what` names the record in errors. */
function seal(value: unknown, what: string): Uint8Array {
  const payload = encode(value);
  const record = new Uint8Array(CHECKSUM_BYTES + payload.byteLength);
  if (record.byteLength > RECORD_BYTES_MAX) {
    throw new RaftKvError(ErrorCode.ENTRY_TOO_LARGE, `${what} encodes to ${record.byteLength} bytes, over the log store's record limit of ${RECORD_BYTES_MAX}`);
  }
  // `encode` returns a view of a buffer the codec reuses: copy it out at once.
  record.set(payload, CHECKSUM_BYTES);
  new DataView(record.buffer, record.byteOffset, record.byteLength).setUint32(0, crc32(payload) >>> 0, false);
  return record;
}

/** Raised by the shape checks below; turned into STORAGE_CORRUPT by `unseal`. */
class MalformedRecord extends Error {}

function malformed(message: string): never {
  throw new MalformedRecord(message);
}

/**
 * Verifies the size bound and the checksum, decodes, and checks the shape with `parse`.
 * Throws STORAGE_CORRUPT naming `what` (say, "log entry 1234") and the directory.
 */
function unseal<T>(record: Uint8Array, what: string, dataDir: string, parse: (value: unknown) => T): T {
  if (record.byteLength > RECORD_BYTES_MAX) {
    throw corrupt(dataDir, `${what} is ${record.byteLength} bytes, over the record limit of ${RECORD_BYTES_MAX}`);
  }
  if (record.byteLength <= CHECKSUM_BYTES) throw corrupt(dataDir, `${what} is truncated (${record.byteLength} bytes)`);
  const payload = record.subarray(CHECKSUM_BYTES);
  const stored = new DataView(record.buffer, record.byteOffset, record.byteLength).getUint32(0, false);
  if (stored !== crc32(payload) >>> 0) throw corrupt(dataDir, `${what} failed its checksum`);
  let value: unknown;
  try {
    value = decode(payload);
  } catch (error) {
    throw corrupt(dataDir, `${what} passed its checksum but does not decode`, error);
  }
  try {
    return parse(value);
  } catch (error) {
    if (error instanceof MalformedRecord) throw corrupt(dataDir, `${what} is malformed: ${error.message}`);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Shape checks shared by the decoders.

function tuple(value: unknown, length: number): unknown[] {
  if (!Array.isArray(value)) malformed(`expected an array, got ${typeof value}`);
  if (value.length !== length) malformed(`expected ${length} fields, got ${value.length}`);
  return value as unknown[];
}

function count(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) malformed(`${field} is not a non-negative integer`);
  return value;
}

function nodeId(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') malformed(`${field} is not a node id`);
  return value;
}

function bytes(value: unknown, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) malformed(`${field} is not binary`);
  return value;
}

function nodeIds(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) malformed(`${field} is not a list`);
  return (value as unknown[]).map((id, k) => nodeId(id, `${field}[${k}]`));
}

// ---------------------------------------------------------------------------------------------
// Entries.

export function encodeEntry(entry: Entry): Uint8Array {
  const code = ENTRY_TYPE_BY_CODE.indexOf(entry.type);
  assert(code >= 0, `entry ${entry.index} has unknown type ${String(entry.type)}`);
  return seal([entry.index, entry.term, code, entry.data], `log entry ${entry.index}`);
}

/** Decodes the record stored under the key of entry `keyIndex`, and checks that it is that entry. */
export function decodeEntry(record: Uint8Array, keyIndex: LogIndex, dataDir: string): Entry {
  const what = `log entry ${keyIndex}`;
  return unseal(record, what, dataDir, (value) => {
    const [index, term, code, data] = tuple(value, 4);
    const type = ENTRY_TYPE_BY_CODE[count(code, 'type')];
    if (type === undefined) malformed(`unknown entry type code ${String(code)}`);
    const entry: Entry = { index: count(index, 'index'), term: count(term, 'term'), type, data: bytes(data, 'data') };
    if (entry.index !== keyIndex) malformed(`it holds entry ${entry.index}`);
    if (entry.term < 1) malformed(`term ${entry.term} (entries have terms >= 1)`);
    return entry;
  });
}

// ---------------------------------------------------------------------------------------------
// Hard state, snapshot metadata and data, version.

export function encodeHardState(hs: HardState): Uint8Array {
  return seal([hs.term, hs.vote, hs.commit], 'the hard state');
}

export function decodeHardState(record: Uint8Array, dataDir: string): HardState {
  return unseal(record, `the hard state (${KEY.hardState})`, dataDir, (value) => {
    const [term, vote, commit] = tuple(value, 3);
    return { term: count(term, 'term'), vote: vote === null ? null : nodeId(vote, 'vote'), commit: count(commit, 'commit') };
  });
}

export function encodeSnapshotMeta(meta: SnapshotMeta): Uint8Array {
  return seal([meta.index, meta.term, meta.confState.voters, meta.confState.learners], 'the snapshot metadata');
}

export function decodeSnapshotMeta(record: Uint8Array, dataDir: string): SnapshotMeta {
  return unseal(record, `the snapshot metadata (${KEY.snapshot})`, dataDir, (value) => {
    const [index, term, voters, learners] = tuple(value, 4);
    const confState: ConfState = { voters: nodeIds(voters, 'voters'), learners: nodeIds(learners, 'learners') };
    const members = [...confState.voters, ...confState.learners];
    if (new Set(members).size !== members.length) malformed('a node appears twice in the configuration');
    const meta: SnapshotMeta = { index: count(index, 'index'), term: count(term, 'term'), confState };
    if ((meta.index === 0) !== (meta.term === 0)) malformed(`index ${meta.index} with term ${meta.term}`);
    return meta;
  });
}

export function encodeSnapshotData(index: LogIndex, data: Uint8Array): Uint8Array {
  assert(data.byteLength > 0 && data.byteLength <= SNAPSHOT_DATA_BYTES_MAX, `snapshot data of ${data.byteLength} bytes`);
  return seal([index, data], 'the snapshot data');
}

export function decodeSnapshotData(record: Uint8Array, dataDir: string): { index: LogIndex; data: Uint8Array } {
  return unseal(record, `the snapshot data (${KEY.snapshotData})`, dataDir, (value) => {
    const [index, data] = tuple(value, 2);
    const result = { index: count(index, 'index'), data: bytes(data, 'data') };
    if (result.data.byteLength === 0 || result.data.byteLength > SNAPSHOT_DATA_BYTES_MAX) malformed(`${result.data.byteLength} bytes of data`);
    return result;
  });
}

export function encodeVersion(): Uint8Array {
  return seal(FORMAT_VERSION, 'the format version');
}

/** The stored format version (any non-negative integer: the caller judges it). */
export function decodeVersion(record: Uint8Array, dataDir: string): number {
  return unseal(record, `the format version (${KEY.version})`, dataDir, (value) => count(value, 'version'));
}
