/**
 * The layout of the state machine inside one LevelDB (keys sort bytewise):
 *
 *   c/conf                the cluster configuration at the applied index: crc32 u32 | msgpack [voters, learners]
 *   c/member/<id>         a member added by a change: crc32 u32 | msgpack { peer, http, uid, autoPromote }
 *   c/removed/<id>        a node id removed from the cluster, never to be added again: crc32 u32 | msgpack index
 *   d/<key, UTF-8>        a value record:   crc32 u32 | modIndex u64 | value bytes
 *   s/<clientId, UTF-8>   a session record: crc32 u32 | msgpack { seq, index, result }
 *   m/format              the format version: u32 (FORMAT_VERSION)
 *   m/applied             the applied position: crc32 u32 | index u64 | term u64
 *
 * Integers are big-endian; a u64 is written as two u32 halves and holds a safe integer.
 * Every CRC32 (zlib.crc32) covers the full database key first and then the rest of the record,
 * so a record that was copied under another key fails its check as surely as a flipped bit.
 * Records are checked when read, and again before a snapshot import writes them.
 */
import { crc32 } from 'node:zlib';
import { decode, encode } from '@raftkv/codec';
import { assert, ErrorCode, RaftKvError } from '@raftkv/raft';
import type { ConfState, LogIndex, Term } from '@raftkv/raft';
import { checkStoredResult } from './result.js';
import type { CommandResult } from './result.js';

export const FORMAT_VERSION = 1;

export const CLUSTER_PREFIX = Buffer.from('c/', 'utf8');
export const CONF_KEY = Buffer.from('c/conf', 'utf8');
export const MEMBER_PREFIX = Buffer.from('c/member/', 'utf8');
export const REMOVED_PREFIX = Buffer.from('c/removed/', 'utf8');
export const DATA_PREFIX = Buffer.from('d/', 'utf8');
export const SESSION_PREFIX = Buffer.from('s/', 'utf8');
export const META_FORMAT_KEY = Buffer.from('m/format', 'utf8');
export const META_APPLIED_KEY = Buffer.from('m/applied', 'utf8');

const CRC_BYTES = 4;
const U64_BYTES = 8;
/** A value record's modIndex follows its CRC; the value follows the modIndex. */
export const VALUE_MOD_INDEX_OFFSET = CRC_BYTES;
export const VALUE_HEADER_BYTES = CRC_BYTES + U64_BYTES;
const APPLIED_RECORD_BYTES = CRC_BYTES + 2 * U64_BYTES;

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function writeU64(target: Buffer, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field must hold a safe non-negative integer, got ${value}`);
  target.writeUInt32BE(Math.floor(value / 2 ** 32), offset);
  target.writeUInt32BE(value >>> 0, offset + 4);
}

/** Reads a u64 written by writeU64; null when it does not hold a safe integer. */
export function readU64(source: Buffer, offset: number): number | null {
  const value = source.readUInt32BE(offset) * 2 ** 32 + source.readUInt32BE(offset + 4);
  return Number.isSafeInteger(value) ? value : null;
}

function checksum(dbKey: Buffer, body: Buffer): number {
  return crc32(body, crc32(dbKey));
}

export function storageCorrupt(where: string, message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.STORAGE_CORRUPT, `${where}: ${message}`, cause === undefined ? {} : { cause });
}

// ---- keys ----------------------------------------------------------------------------------

export function dataKey(key: string): Buffer {
  return Buffer.concat([DATA_PREFIX, Buffer.from(key, 'utf8')]);
}

export function sessionKey(clientId: string): Buffer {
  return Buffer.concat([SESSION_PREFIX, Buffer.from(clientId, 'utf8')]);
}

export function hasPrefix(dbKey: Buffer, prefix: Buffer): boolean {
  return dbKey.byteLength >= prefix.byteLength && dbKey.subarray(0, prefix.byteLength).equals(prefix);
}

/** The user's key inside a `d/` database key. */
export function userKey(dbKey: Buffer): string {
  assert(hasPrefix(dbKey, DATA_PREFIX), 'userKey: not a data key');
  return dbKey.subarray(DATA_PREFIX.byteLength).toString('utf8');
}

/** The bytewise range of every database key that starts with `prefix` (which is never empty here). */
export function prefixRange(prefix: Buffer): { readonly gte: Buffer; readonly lt: Buffer } {
  assert(prefix.byteLength > 0 && prefix[0] !== 0xff, 'prefixRange: the prefix starts with a namespace byte');
  const upper = Buffer.from(prefix);
  let end = upper.byteLength;
  // Drop trailing 0xff bytes, then increment the last byte: the smallest key greater than every extension.
  while (upper[end - 1] === 0xff) end -= 1;
  const last = upper[end - 1];
  assert(last !== undefined, 'prefixRange: the namespace byte is below 0xff');
  upper[end - 1] = last + 1;
  return { gte: Buffer.from(prefix), lt: upper.subarray(0, end) };
}

// ---- value records (d/) ---------------------------------------------------------------------

export interface StoredValue {
  readonly value: Uint8Array;
  readonly modIndex: LogIndex;
}

export function encodeValueRecord(dbKey: Buffer, modIndex: LogIndex, value: Uint8Array): Buffer {
  assert(modIndex >= 1, 'a value record is written by an entry, whose index is >= 1');
  const record = Buffer.allocUnsafe(VALUE_HEADER_BYTES + value.byteLength);
  writeU64(record, CRC_BYTES, modIndex);
  record.set(value, VALUE_HEADER_BYTES);
  record.writeUInt32BE(checksum(dbKey, record.subarray(CRC_BYTES)), 0);
  return record;
}

/** Checks and decodes a value record; STORAGE_CORRUPT naming the key when it does not verify. */
export function decodeValueRecord(where: string, dbKey: Buffer, recordBytes: Uint8Array): StoredValue {
  const record = asBuffer(recordBytes);
  const name = () => JSON.stringify(dbKey.subarray(DATA_PREFIX.byteLength).toString('utf8'));
  if (record.byteLength < VALUE_HEADER_BYTES) {
    throw storageCorrupt(where, `value record of key ${name()} is ${record.byteLength} bytes, shorter than its header`);
  }
  if (record.readUInt32BE(0) !== checksum(dbKey, record.subarray(CRC_BYTES))) {
    throw storageCorrupt(where, `value record of key ${name()} fails its checksum`);
  }
  const modIndex = readU64(record, CRC_BYTES);
  if (modIndex === null || modIndex < 1) {
    throw storageCorrupt(where, `value record of key ${name()} holds an impossible modIndex`);
  }
  return { value: record.subarray(VALUE_HEADER_BYTES), modIndex };
}

// ---- session records (s/) -------------------------------------------------------------------

export interface SessionRecord {
  readonly clientId: string;
  /** The last sequence number executed for this client. */
  readonly seq: number;
  /** The log index that last used the session: the least recently used is evicted first. */
  readonly index: LogIndex;
  readonly result: CommandResult;
}

export function encodeSessionRecord(session: SessionRecord): Buffer {
  const dbKey = sessionKey(session.clientId);
  const body = encode({ seq: session.seq, index: session.index, result: session.result });
  const record = Buffer.allocUnsafe(CRC_BYTES + body.byteLength);
  record.set(body, CRC_BYTES);
  record.writeUInt32BE(checksum(dbKey, body), 0);
  return record;
}

export function decodeSessionRecord(where: string, dbKey: Buffer, recordBytes: Uint8Array): SessionRecord {
  const record = asBuffer(recordBytes);
  const clientId = dbKey.subarray(SESSION_PREFIX.byteLength).toString('utf8');
  const name = JSON.stringify(clientId);
  if (record.byteLength < CRC_BYTES || record.readUInt32BE(0) !== checksum(dbKey, record.subarray(CRC_BYTES))) {
    throw storageCorrupt(where, `session record of client ${name} fails its checksum`);
  }
  let raw: unknown;
  try {
    raw = decode(record.subarray(CRC_BYTES));
  } catch (cause) {
    throw storageCorrupt(where, `session record of client ${name} does not decode`, cause);
  }
  const fields = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const seq = fields['seq'];
  const index = fields['index'];
  const result = checkStoredResult(fields['result']);
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw storageCorrupt(where, `session record of client ${name} has no valid seq`);
  }
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 1) {
    throw storageCorrupt(where, `session record of client ${name} has no valid index`);
  }
  if (result === null) throw storageCorrupt(where, `session record of client ${name} has no valid result`);
  return { clientId, seq, index, result };
}

// ---- cluster records (c/) -------------------------------------------------------------------

/** No configuration yet (a node that has not applied its cluster's first entry). */
export const EMPTY_CONF: ConfState = Object.freeze({ voters: Object.freeze([]) as readonly string[], learners: Object.freeze([]) as readonly string[] });

export function encodeConfRecord(conf: ConfState): Buffer {
  const body = encode([[...conf.voters], [...conf.learners]]);
  const record = Buffer.allocUnsafe(CRC_BYTES + body.byteLength);
  record.set(body, CRC_BYTES);
  record.writeUInt32BE(checksum(CONF_KEY, body), 0);
  return record;
}

export function decodeConfRecord(where: string, recordBytes: Uint8Array): ConfState {
  const record = asBuffer(recordBytes);
  if (record.byteLength < CRC_BYTES || record.readUInt32BE(0) !== checksum(CONF_KEY, record.subarray(CRC_BYTES))) {
    throw storageCorrupt(where, 'configuration record fails its checksum');
  }
  let raw: unknown;
  try {
    raw = decode(record.subarray(CRC_BYTES));
  } catch (cause) {
    throw storageCorrupt(where, 'configuration record does not decode', cause);
  }
  const ids = (v: unknown): v is string[] => Array.isArray(v) && v.every((id) => typeof id === 'string' && id !== '');
  if (!Array.isArray(raw) || raw.length !== 2 || !ids(raw[0]) || !ids(raw[1])) throw storageCorrupt(where, 'configuration record has the wrong shape');
  return { voters: raw[0], learners: raw[1] };
}

/**
 * What a membership change that adds a node says about it (the change entry's context): where it
 * listens and which data directory it is. Replicated, so every node can reach it.
 */
export interface MemberInfo {
  /** "host:port" of its peer port. */
  readonly peer: string | null;
  /** Base URL of its HTTP API. */
  readonly http: string | null;
  /** Its data directory's random id (peers refuse another one under its node id). */
  readonly uid: string | null;
  /** Promote it to voter on its own once it has caught up. */
  readonly autoPromote: boolean;
}

export function memberKey(id: string): Buffer {
  return Buffer.concat([MEMBER_PREFIX, Buffer.from(id, 'utf8')]);
}

export function removedKey(id: string): Buffer {
  return Buffer.concat([REMOVED_PREFIX, Buffer.from(id, 'utf8')]);
}

function sealed(key: Buffer, value: unknown): Buffer {
  const body = encode(value);
  const record = Buffer.allocUnsafe(CRC_BYTES + body.byteLength);
  record.set(body, CRC_BYTES);
  record.writeUInt32BE(checksum(key, body), 0);
  return record;
}

function unsealed(where: string, key: Buffer, recordBytes: Uint8Array, what: string): unknown {
  const record = asBuffer(recordBytes);
  if (record.byteLength < CRC_BYTES || record.readUInt32BE(0) !== checksum(key, record.subarray(CRC_BYTES))) throw storageCorrupt(where, `${what} fails its checksum`);
  try {
    return decode(record.subarray(CRC_BYTES));
  } catch (cause) {
    throw storageCorrupt(where, `${what} does not decode`, cause);
  }
}

/** Decodes a change's context into member information; anything malformed reads as nothing known. */
export function memberInfoOf(context: Uint8Array): MemberInfo {
  let raw: unknown = null;
  try {
    if (context.byteLength > 0) raw = decode(context);
  } catch {
    raw = null;
  }
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const text = (v: unknown): string | null => (typeof v === 'string' && v !== '' && v.length <= 1024 ? v : null);
  return { peer: text(r['peer']), http: text(r['http']), uid: text(r['uid']), autoPromote: r['autoPromote'] === true };
}

export function encodeMemberInfo(info: MemberInfo): Uint8Array {
  return encode({ peer: info.peer, http: info.http, uid: info.uid, autoPromote: info.autoPromote });
}

export function encodeMemberRecord(id: string, info: MemberInfo): Buffer {
  return sealed(memberKey(id), [info.peer, info.http, info.uid, info.autoPromote]);
}

export function decodeMemberRecord(where: string, dbKey: Buffer, recordBytes: Uint8Array): { id: string; info: MemberInfo } {
  const id = dbKey.subarray(MEMBER_PREFIX.byteLength).toString('utf8');
  const raw = unsealed(where, dbKey, recordBytes, `member record of ${JSON.stringify(id)}`);
  const text = (v: unknown): v is string | null => v === null || typeof v === 'string';
  if (!Array.isArray(raw) || raw.length !== 4 || !text(raw[0]) || !text(raw[1]) || !text(raw[2]) || typeof raw[3] !== 'boolean') {
    throw storageCorrupt(where, `member record of ${JSON.stringify(id)} has the wrong shape`);
  }
  return { id, info: { peer: raw[0], http: raw[1], uid: raw[2], autoPromote: raw[3] } };
}

export function encodeRemovedRecord(id: string, index: LogIndex): Buffer {
  return sealed(removedKey(id), index);
}

export function decodeRemovedRecord(where: string, dbKey: Buffer, recordBytes: Uint8Array): { id: string; index: LogIndex } {
  const id = dbKey.subarray(REMOVED_PREFIX.byteLength).toString('utf8');
  const raw = unsealed(where, dbKey, recordBytes, `removal record of ${JSON.stringify(id)}`);
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw < 1) throw storageCorrupt(where, `removal record of ${JSON.stringify(id)} has the wrong shape`);
  return { id, index: raw };
}

/** Verifies any `c/` record (for snapshot streams and images); throws STORAGE_CORRUPT. */
export function checkClusterRecord(where: string, dbKey: Buffer, value: Uint8Array): void {
  if (dbKey.equals(CONF_KEY)) decodeConfRecord(where, value);
  else if (hasPrefix(dbKey, MEMBER_PREFIX) && dbKey.byteLength > MEMBER_PREFIX.byteLength) decodeMemberRecord(where, dbKey, value);
  else if (hasPrefix(dbKey, REMOVED_PREFIX) && dbKey.byteLength > REMOVED_PREFIX.byteLength) decodeRemovedRecord(where, dbKey, value);
  else throw storageCorrupt(where, `unexpected cluster record ${JSON.stringify(dbKey.toString('utf8'))}`);
}

// ---- metadata (m/) --------------------------------------------------------------------------

export interface AppliedPosition {
  readonly index: LogIndex;
  readonly term: Term;
}

export function encodeFormatRecord(): Buffer {
  const record = Buffer.alloc(4);
  record.writeUInt32BE(FORMAT_VERSION, 0);
  return record;
}

export function decodeFormatRecord(where: string, recordBytes: Uint8Array): number {
  const record = asBuffer(recordBytes);
  if (record.byteLength !== 4) throw storageCorrupt(where, `format record is ${record.byteLength} bytes, expected 4`);
  return record.readUInt32BE(0);
}

export function encodeAppliedRecord(position: AppliedPosition): Buffer {
  const record = Buffer.allocUnsafe(APPLIED_RECORD_BYTES);
  writeU64(record, CRC_BYTES, position.index);
  writeU64(record, CRC_BYTES + U64_BYTES, position.term);
  record.writeUInt32BE(checksum(META_APPLIED_KEY, record.subarray(CRC_BYTES)), 0);
  return record;
}

export function decodeAppliedRecord(where: string, recordBytes: Uint8Array): AppliedPosition {
  const record = asBuffer(recordBytes);
  if (record.byteLength !== APPLIED_RECORD_BYTES || record.readUInt32BE(0) !== checksum(META_APPLIED_KEY, record.subarray(CRC_BYTES))) {
    throw storageCorrupt(where, 'applied-index record fails its checksum');
  }
  const index = readU64(record, CRC_BYTES);
  const term = readU64(record, CRC_BYTES + U64_BYTES);
  if (index === null || term === null) throw storageCorrupt(where, 'applied-index record holds an impossible index or term');
  return { index, term };
}
