/**
 * The snapshot stream: how a state machine's image travels from one node to another (or to a
 * backup file) without being held in memory.
 *
 * Format version 1 is a byte stream of frames, each `kind u8 | payloadBytes u32 | payload`:
 *
 *   header  (kind 1, once, first):  magic "RKVS" | formatVersion u32 | index u64 | term u64
 *   records (kind 2, any number):   repeated { keyBytes u32 | key | valueBytes u32 | value }
 *                                   (the c/conf record, then the d/ and s/ records)
 *   trailer (kind 3, once, last):   recordCount u64 | crc32 u32
 *
 * Records are the database's `c/`, `d/` and `s/` records exactly as stored (each still carries its own
 * CRC, see records.ts), in strictly ascending key order; the `m/` records are rebuilt from the
 * header. The trailer's CRC32 covers every byte of the stream before the CRC field itself.
 * Integers are big-endian. The exporter yields one frame per chunk, about `snapshotChunkBytes`
 * each; the importer parses the bytes whatever their chunking.
 */
import { crc32 } from 'node:zlib';
import type { AbstractSnapshot } from 'abstract-level';
import { assert, ErrorCode, RaftKvError } from '@raftkv/raft';
import type { KvDb } from './home.js';
import { SNAPSHOT_FRAME_BYTES_MAX } from './limits.js';
import {
  asBuffer,
  CLUSTER_PREFIX,
  checkClusterRecord,
  DATA_PREFIX,
  decodeAppliedRecord,
  decodeSessionRecord,
  decodeValueRecord,
  encodeAppliedRecord,
  encodeFormatRecord,
  hasPrefix,
  META_APPLIED_KEY,
  META_FORMAT_KEY,
  prefixRange,
  readU64,
  SESSION_PREFIX,
  writeU64,
} from './records.js';
import type { AppliedPosition } from './records.js';

export const SNAPSHOT_FORMAT_VERSION = 1;

const MAGIC = Buffer.from('RKVS', 'ascii');
const FRAME_HEADER_BYTES = 5;
const HEADER_PAYLOAD_BYTES = 4 + 4 + 8 + 8;
const TRAILER_PAYLOAD_BYTES = 8 + 4;
const LENGTH_BYTES = 4;

const FrameKind = { Header: 1, Records: 2, Trailer: 3 } as const;
type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

/**
 * Export reads rows in batches: at most EXPORT_ROWS_MAX rows, and for classic-level at most about
 * `highWaterMarkBytes` (plus one row) per batch, so a chunk overshoots `snapshotChunkBytes` by at
 * most one batch. memory-level hands out references to rows it already holds.
 */
const EXPORT_ROWS_MAX = 1024;
const EXPORT_ITERATOR: typeof VIEW & { readonly highWaterMarkBytes: number } = { ...VIEW, highWaterMarkBytes: 64 * 1024 };

function transferFailed(message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, message, cause === undefined ? {} : { cause });
}

function frameHead(kind: FrameKind, payloadBytes: number): Buffer {
  assert(payloadBytes <= SNAPSHOT_FRAME_BYTES_MAX, `snapshot frame of ${payloadBytes} bytes exceeds ${SNAPSHOT_FRAME_BYTES_MAX}`);
  const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  head.writeUInt8(kind, 0);
  head.writeUInt32BE(payloadBytes, 1);
  return head;
}

function lengthPrefix(bytes: number): Buffer {
  const prefix = Buffer.allocUnsafe(LENGTH_BYTES);
  prefix.writeUInt32BE(bytes, 0);
  return prefix;
}

// ---- export ---------------------------------------------------------------------------------

/** Accumulates the running CRC of everything emitted. */
class FrameWriter {
  #crc = 0;

  frame(kind: FrameKind, parts: readonly Buffer[], payloadBytes: number): Buffer {
    const frame = Buffer.concat([frameHead(kind, payloadBytes), ...parts], FRAME_HEADER_BYTES + payloadBytes);
    this.#crc = crc32(frame, this.#crc);
    return frame;
  }

  trailer(recordCount: number): Buffer {
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + TRAILER_PAYLOAD_BYTES);
    frameHead(FrameKind.Trailer, TRAILER_PAYLOAD_BYTES).copy(frame, 0);
    writeU64(frame, FRAME_HEADER_BYTES, recordCount);
    const crcOffset = FRAME_HEADER_BYTES + 8;
    frame.writeUInt32BE(crc32(frame.subarray(0, crcOffset), this.#crc), crcOffset);
    return frame;
  }
}

function headerPayload(position: AppliedPosition): Buffer {
  const payload = Buffer.allocUnsafe(HEADER_PAYLOAD_BYTES);
  MAGIC.copy(payload, 0);
  payload.writeUInt32BE(SNAPSHOT_FORMAT_VERSION, 4);
  writeU64(payload, 8, position.index);
  writeU64(payload, 16, position.term);
  return payload;
}

/**
 * Streams the image of `db` as seen by `snapshot` (taken by the caller at `position`). Holds one
 * chunk in memory at a time; calls `release` (which closes the snapshot) when done, failed, or
 * abandoned by the consumer once started. A generator that never started runs no `finally`: a
 * caller that may drop the stream unread calls `release` itself (see `SnapshotExport.close`).
 */
export async function* exportFrames(
  db: KvDb,
  snapshot: AbstractSnapshot,
  position: AppliedPosition,
  chunkBytes: number,
  where: string,
  release: () => Promise<void>,
): AsyncGenerator<Uint8Array, void, undefined> {
  try {
    // Pair check: the image's own applied record is the position announced in the header.
    const appliedRecord = await db.get(META_APPLIED_KEY, { ...VIEW, snapshot });
    assert(appliedRecord !== undefined, `${where}: the snapshot holds no applied-index record`);
    const applied = decodeAppliedRecord(where, appliedRecord);
    assert(applied.index === position.index && applied.term === position.term, `${where}: snapshot image is at ${applied.index}/${applied.term}, announced ${position.index}/${position.term}`);

    const writer = new FrameWriter();
    yield writer.frame(FrameKind.Header, [headerPayload(position)], HEADER_PAYLOAD_BYTES);
    let parts: Buffer[] = [];
    let payloadBytes = 0;
    let recordCount = 0;
    for (const prefix of [CLUSTER_PREFIX, DATA_PREFIX, SESSION_PREFIX]) {
      const iterator = db.iterator({ ...prefixRange(prefix), ...EXPORT_ITERATOR, snapshot });
      try {
        for (let rows = await iterator.nextv(EXPORT_ROWS_MAX); rows.length > 0; rows = await iterator.nextv(EXPORT_ROWS_MAX)) {
          for (const [keyBytes, valueBytes] of rows) {
            const key = asBuffer(keyBytes);
            const value = asBuffer(valueBytes);
            checkRecord(where, key, value); // do not ship a record that is already corrupt here
            parts.push(lengthPrefix(key.byteLength), key, lengthPrefix(value.byteLength), value);
            payloadBytes += 2 * LENGTH_BYTES + key.byteLength + value.byteLength;
            recordCount += 1;
          }
          if (payloadBytes >= chunkBytes) {
            yield writer.frame(FrameKind.Records, parts, payloadBytes);
            parts = [];
            payloadBytes = 0;
          }
        }
      } finally {
        await iterator.close();
      }
    }
    if (payloadBytes > 0) yield writer.frame(FrameKind.Records, parts, payloadBytes);
    yield writer.trailer(recordCount);
  } finally {
    await release();
  }
}

/** Verifies one `c/`, `d/` or `s/` record; throws STORAGE_CORRUPT (naming the key) or for any other key. */
function checkRecord(where: string, key: Buffer, value: Buffer): void {
  if (hasPrefix(key, CLUSTER_PREFIX)) {
    checkClusterRecord(where, key, value);
  } else if (hasPrefix(key, DATA_PREFIX) && key.byteLength > DATA_PREFIX.byteLength) {
    decodeValueRecord(where, key, value);
  } else if (hasPrefix(key, SESSION_PREFIX) && key.byteLength > SESSION_PREFIX.byteLength) {
    decodeSessionRecord(where, key, value);
  } else {
    throw new RaftKvError(ErrorCode.STORAGE_CORRUPT, `${where}: unexpected key ${JSON.stringify(key.toString('utf8'))} in a snapshot`);
  }
}

// ---- import ---------------------------------------------------------------------------------

interface Frame {
  readonly kind: number;
  /** The whole frame, head included. */
  readonly bytes: Buffer;
  /** CRC of every stream byte before this frame. */
  readonly crcBefore: number;
}

/** Reassembles frames from chunks of any size, keeping the running CRC of consumed bytes. */
class FrameReader {
  readonly #pieces: Buffer[] = [];
  #bufferedBytes = 0;
  #crc = 0;

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#pieces.push(asBuffer(chunk));
    this.#bufferedBytes += chunk.byteLength;
  }

  /** The next whole frame, or null when more bytes are needed. */
  next(): Frame | null {
    if (this.#bufferedBytes < FRAME_HEADER_BYTES) return null;
    const head = this.#peekHead();
    const payloadBytes = head.readUInt32BE(1);
    if (payloadBytes > SNAPSHOT_FRAME_BYTES_MAX) {
      throw transferFailed(`snapshot frame of ${payloadBytes} bytes exceeds the limit of ${SNAPSHOT_FRAME_BYTES_MAX}`);
    }
    if (this.#bufferedBytes < FRAME_HEADER_BYTES + payloadBytes) return null;
    const bytes = this.#take(FRAME_HEADER_BYTES + payloadBytes);
    const crcBefore = this.#crc;
    this.#crc = crc32(bytes, this.#crc);
    return { kind: head.readUInt8(0), bytes, crcBefore };
  }

  #peekHead(): Buffer {
    const first = this.#pieces[0];
    assert(first !== undefined, 'peekHead: buffered bytes without pieces');
    if (first.byteLength >= FRAME_HEADER_BYTES) return first.subarray(0, FRAME_HEADER_BYTES);
    return Buffer.concat(this.#pieces.slice(0, FRAME_HEADER_BYTES)).subarray(0, FRAME_HEADER_BYTES);
  }

  #take(byteCount: number): Buffer {
    assert(byteCount <= this.#bufferedBytes, 'take: not enough bytes buffered');
    const taken: Buffer[] = [];
    let needed = byteCount;
    while (needed > 0) {
      const piece = this.#pieces[0];
      assert(piece !== undefined, 'take: ran out of pieces');
      if (piece.byteLength <= needed) {
        taken.push(piece);
        this.#pieces.shift();
        needed -= piece.byteLength;
      } else {
        taken.push(piece.subarray(0, needed));
        this.#pieces[0] = piece.subarray(needed);
        needed = 0;
      }
    }
    this.#bufferedBytes -= byteCount;
    return taken.length === 1 && taken[0] !== undefined ? taken[0] : Buffer.concat(taken, byteCount);
  }
}

export type BatchPut = { readonly type: 'put'; readonly key: Buffer; readonly value: Buffer };

/** What one whole frame of a stream held, once verified. */
export type ParsedFrame =
  | { readonly kind: 'header'; readonly position: AppliedPosition }
  | { readonly kind: 'records'; readonly records: readonly BatchPut[] }
  | { readonly kind: 'trailer'; readonly recordCount: number };

/**
 * Parses and verifies a snapshot stream pushed in chunks of any size, one whole frame at a time
 * (so it holds at most one frame, `SNAPSHOT_FRAME_BYTES_MAX`, plus a chunk): the header, each
 * record (its checksum, and strictly ascending key order), the trailer's record count and the
 * CRC32 over the whole stream. Throws SNAPSHOT_TRANSFER_FAILED at the first thing wrong. The
 * snapshot import and the backup file (backup.ts) read streams through it.
 */
export class SnapshotParser {
  readonly #expected: AppliedPosition | null;
  readonly #where: string;
  readonly #reader = new FrameReader();
  #position: AppliedPosition | null = null;
  #sawTrailer = false;
  readonly #records: { recordCount: number; lastKey: Buffer | null } = { recordCount: 0, lastKey: null };

  /**
   * `expected`: the position a leader announced; the stream must be at it or ahead of it (see
   * `importFrames`). Null accepts any position (a backup file carries its own).
   */
  constructor(expected: AppliedPosition | null, where: string) {
    this.#expected = expected;
    this.#where = where;
  }

  /** The stream's position, once its header was parsed. */
  get position(): AppliedPosition | null {
    return this.#position;
  }

  get recordCount(): number {
    return this.#records.recordCount;
  }

  /** The frames `chunk` completed, in order. */
  push(chunk: Uint8Array): ParsedFrame[] {
    if (this.#sawTrailer && chunk.byteLength > 0) throw transferFailed('snapshot stream has bytes after its trailer');
    this.#reader.push(chunk);
    const parsed: ParsedFrame[] = [];
    for (let frame = this.#reader.next(); frame !== null; frame = this.#reader.next()) {
      parsed.push(this.#frame(frame));
      if (this.#sawTrailer && this.#reader.bufferedBytes > 0) throw transferFailed('snapshot stream has bytes after its trailer');
    }
    return parsed;
  }

  /** Checks that the stream ended exactly after its trailer; returns its position. */
  finish(): AppliedPosition {
    if (!this.#sawTrailer || this.#position === null) {
      throw transferFailed(`snapshot stream ended early (${this.#reader.bufferedBytes} bytes of a partial frame, no trailer)`);
    }
    return this.#position;
  }

  #frame(frame: Frame): ParsedFrame {
    const payload = frame.bytes.subarray(FRAME_HEADER_BYTES);
    if (this.#position === null) {
      if (frame.kind !== FrameKind.Header) throw transferFailed('snapshot stream does not start with a header');
      this.#position = checkHeader(payload, this.#expected);
      return { kind: 'header', position: this.#position };
    }
    if (frame.kind === FrameKind.Records) return { kind: 'records', records: parseRecords(payload, this.#records, this.#where) };
    if (frame.kind === FrameKind.Trailer) {
      if (payload.byteLength !== TRAILER_PAYLOAD_BYTES) throw transferFailed('snapshot trailer has the wrong size');
      const recordCount = readU64(payload, 0);
      const crcOffset = FRAME_HEADER_BYTES + 8;
      const crc = crc32(frame.bytes.subarray(0, crcOffset), frame.crcBefore);
      if (recordCount !== this.#records.recordCount) {
        throw transferFailed(`snapshot trailer counts ${String(recordCount)} records, the stream held ${this.#records.recordCount}`);
      }
      if (crc !== frame.bytes.readUInt32BE(crcOffset)) throw transferFailed('snapshot stream fails its CRC32');
      this.#sawTrailer = true;
      return { kind: 'trailer', recordCount };
    }
    throw transferFailed(`snapshot stream has a frame of unknown kind ${frame.kind}`);
  }
}

/**
 * Writes the stream into the empty database `db`, verifying as it goes; the applied-index record
 * is written last (synced), after the trailer verified, so a database without it is incomplete.
 * Returns the record count and the position the image is at. Throws SNAPSHOT_TRANSFER_FAILED when
 * the stream is truncated, corrupt, or behind `expected`.
 *
 * The image may be *ahead* of `expected`: a leader streams its state machine as it is now, at
 * or beyond the log position its Raft snapshot names. Everything up to the image's applied index
 * is committed, so installing it is safe; the follower skips the entries in between when its
 * log hands them out again (apply ignores entries at or below the applied index).
 */
export async function importFrames(
  db: KvDb,
  expected: AppliedPosition,
  chunks: AsyncIterable<Uint8Array>,
  where: string,
): Promise<{ recordCount: number; position: AppliedPosition }> {
  const parser = new SnapshotParser(expected, where);
  for await (const chunk of chunks) {
    for (const frame of parser.push(chunk)) {
      if (frame.kind === 'records') await db.batch([...frame.records], VIEW);
    }
  }
  const position = parser.finish();
  await db.batch(
    [
      { type: 'put', key: META_FORMAT_KEY, value: encodeFormatRecord() },
      { type: 'put', key: META_APPLIED_KEY, value: encodeAppliedRecord(position) },
    ],
    WRITE_SYNCED,
  );
  return { recordCount: parser.recordCount, position };
}

/** LevelDB's sync flag (memory-level ignores it): the last write of an import reaches the disk. */
const WRITE_SYNCED: typeof VIEW & { readonly sync: boolean } = { ...VIEW, sync: true };

function checkHeader(payload: Buffer, expected: AppliedPosition | null): AppliedPosition {
  if (payload.byteLength !== HEADER_PAYLOAD_BYTES || !payload.subarray(0, 4).equals(MAGIC)) {
    throw transferFailed('snapshot header is malformed');
  }
  const version = payload.readUInt32BE(4);
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw transferFailed(`snapshot format version ${version} is not supported (this build reads ${SNAPSHOT_FORMAT_VERSION})`);
  }
  const index = readU64(payload, 8);
  const term = readU64(payload, 16);
  if (index === null || term === null) throw transferFailed('snapshot header position is out of range');
  if (expected === null) return { index, term };
  const same = index === expected.index && term === expected.term;
  const ahead = index > expected.index && term >= expected.term;
  if (!same && !ahead) {
    throw transferFailed(`snapshot stream is at ${index}/${term}, behind or beside the expected ${expected.index}/${expected.term}`);
  }
  return { index, term };
}

function parseRecords(payload: Buffer, state: { recordCount: number; lastKey: Buffer | null }, where: string): BatchPut[] {
  const ops: BatchPut[] = [];
  let offset = 0;
  const field = (): Buffer => {
    if (offset + LENGTH_BYTES > payload.byteLength) throw transferFailed('snapshot record frame is truncated');
    const bytes = payload.readUInt32BE(offset);
    offset += LENGTH_BYTES;
    if (offset + bytes > payload.byteLength) throw transferFailed('snapshot record frame is truncated');
    const out = payload.subarray(offset, offset + bytes);
    offset += bytes;
    return out;
  };
  while (offset < payload.byteLength) {
    const key = field();
    const value = field();
    if (state.lastKey !== null && Buffer.compare(state.lastKey, key) >= 0) {
      throw transferFailed('snapshot records are not in strictly ascending key order');
    }
    try {
      checkRecord(`${where} (incoming snapshot)`, key, value);
    } catch (cause) {
      throw transferFailed(`snapshot record does not verify: ${(cause as Error).message}`, cause);
    }
    state.lastKey = key;
    state.recordCount += 1;
    ops.push({ type: 'put', key, value });
  }
  return ops;
}
