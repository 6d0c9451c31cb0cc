/**
 * The backup file, and the state hash: what `GET /v1/backup` streams, `raftkv backup` stores,
 * `raftkv backup inspect` checks and `raftkv restore` installs (docs/operations.md, "Back up and
 * restore").
 *
 * Layout (integers big-endian):
 *
 *   preamble  "RAFTKVBK" (8 bytes, ASCII) | format version u32 (BACKUP_FORMAT_VERSION)
 *   image     the state machine's snapshot stream, byte for byte (snapshot.ts: a header, frames
 *             of records in key order, a trailer with the record count and a CRC32 of the stream)
 *   metadata  one UTF-8 JSON object (`BackupMetadata`), at most BACKUP_METADATA_BYTES_MAX bytes
 *   footer    image length u64 | metadata length u32 | "RKVBKEND" (8 bytes, ASCII)
 *   hash      the SHA-256 of every byte before it (32 bytes)
 *
 * Why this shape: the image is the very stream a leader sends a follower, so a restore installs
 * it through the verified snapshot import and no second image format exists. The metadata
 * (counts, the state hash) is known only once the image has streamed, so it follows the image,
 * and the writer holds one chunk at a time whatever the size of the state. The fixed-size footer
 * lets a reader find the parts from the end of the file, and its end marker makes a truncated
 * file fail at once with a message that says so. The SHA-256 covers everything, so one flipped
 * byte anywhere (the preamble, a length, the metadata, the marker, the hash itself) is refused.
 *
 * The state hash (`stateHash`) is the SHA-256 of the user-visible state: for every key, in
 * ascending order of its UTF-8 bytes, `u32 key length | key | u64 modIndex | u32 value length |
 * value`, after the domain tag STATE_HASH_DOMAIN. It covers keys, values and modification
 * indexes and nothing else: not the client sessions, not the membership records (`c/`, which a
 * restore rewrites), not the applied index (the answer names it beside the hash). Two nodes with
 * the same hash at the same applied index hold the same keys, values and modIndexes.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { assert, ErrorCode, isRaftKvError, RaftKvError } from '@raftkv/raft';
import type { ConfState, LogIndex, NodeId, Term } from '@raftkv/raft';
import { asBuffer, CONF_KEY, DATA_PREFIX, decodeConfRecord, EMPTY_CONF, hasPrefix, readU64, VALUE_HEADER_BYTES, VALUE_MOD_INDEX_OFFSET, writeU64 } from './records.js';
import type { AppliedPosition } from './records.js';
import { SnapshotParser } from './snapshot.js';
import type { ParsedFrame } from './snapshot.js';
import type { SnapshotExport } from './state-machine.js';

export const BACKUP_FORMAT_VERSION = 1;

const PREAMBLE_MAGIC = Buffer.from('RAFTKVBK', 'ascii');
const FOOTER_MAGIC = Buffer.from('RKVBKEND', 'ascii');
const PREAMBLE_BYTES = PREAMBLE_MAGIC.byteLength + 4;
const FOOTER_BYTES = 8 + 4 + FOOTER_MAGIC.byteLength;
const HASH_BYTES = 32;
/** Bounds what a reader buffers for the metadata; the real object is well under 1 KiB. */
export const BACKUP_METADATA_BYTES_MAX = 64 * 1024;
/** The smallest file that can be a backup: every fixed part, an empty image and empty metadata. */
const FILE_BYTES_MIN = PREAMBLE_BYTES + FOOTER_BYTES + HASH_BYTES;
/** Read size of the file passes (each chunk a fresh buffer: the snapshot parser keeps references). */
const READ_CHUNK_BYTES = 1024 * 1024;

/** Hashed first, so that a state hash cannot be mistaken for the hash of anything else. */
export const STATE_HASH_DOMAIN = Buffer.from('raftkv state hash v1\n', 'ascii');

/** What a backup says of itself (the JSON object between the image and the footer). */
export interface BackupMetadata {
  readonly formatVersion: number;
  /** The cluster the backup was taken from. */
  readonly clusterId: string;
  /** The node that served it. */
  readonly nodeId: NodeId;
  /** The image's position: its applied index and the term of that entry. */
  readonly index: LogIndex;
  readonly term: Term;
  /** The source cluster's configuration at `index` (a restore replaces it). */
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** User keys in the image. */
  readonly keyCount: number;
  /** UTF-8 bytes of those keys plus the bytes of their values. */
  readonly dataBytes: number;
  /** Records in the image: keys, client sessions and membership records. */
  readonly recordCount: number;
  /** Length of the image, in bytes. */
  readonly imageBytes: number;
  /** See the top of this file; lowercase hex. */
  readonly stateHash: string;
  /** When the node started streaming it (ISO 8601, UTC). */
  readonly createdAt: string;
}

/** A verified backup file. */
export interface BackupInfo {
  readonly path: string;
  readonly fileBytes: number;
  /** The SHA-256 the file ends with, lowercase hex: it names the file's content. */
  readonly sha256: string;
  readonly metadata: BackupMetadata;
}

/** What a snapshot stream holds, summarised (a backup's metadata, a node's state hash). */
export interface ImageSummary {
  readonly position: AppliedPosition;
  readonly stateHash: string;
  readonly keyCount: number;
  readonly dataBytes: number;
  readonly recordCount: number;
  readonly conf: ConfState;
}

/** Accumulates the state hash, the counts and the configuration of a parsed snapshot stream. */
class StateDigest {
  readonly #hash: Hash = createHash('sha256').update(STATE_HASH_DOMAIN);
  readonly #where: string;
  #keyCount = 0;
  #dataBytes = 0;
  #conf: ConfState = EMPTY_CONF;
  #scratchBuffer = Buffer.allocUnsafe(256);

  constructor(where: string) {
    this.#where = where;
  }

  add(frame: ParsedFrame): void {
    if (frame.kind !== 'records') return;
    for (const { key, value } of frame.records) {
      if (key.equals(CONF_KEY)) {
        this.#conf = decodeConfRecord(this.#where, value);
        continue;
      }
      if (!hasPrefix(key, DATA_PREFIX)) continue;
      // The parser verified the record (checksum, modIndex): its fields are read in place.
      const modIndex = readU64(value, VALUE_MOD_INDEX_OFFSET);
      assert(modIndex !== null, 'a verified value record holds a safe modIndex');
      const userKeyBytes = key.byteLength - DATA_PREFIX.byteLength;
      const valueBytes = value.byteLength - VALUE_HEADER_BYTES;
      // One update for the fixed part and the key, one for the value: `u32 | key | u64 | u32`.
      const head = this.#scratch(4 + userKeyBytes + 8 + 4);
      head.writeUInt32BE(userKeyBytes, 0);
      key.copy(head, 4, DATA_PREFIX.byteLength);
      writeU64(head, 4 + userKeyBytes, modIndex);
      head.writeUInt32BE(valueBytes, 4 + userKeyBytes + 8);
      this.#hash.update(head).update(value.subarray(VALUE_HEADER_BYTES));
      this.#keyCount += 1;
      this.#dataBytes += userKeyBytes + valueBytes;
    }
  }

  /** A buffer of exactly `bytes`, reused between records (hash.update copies what it is given). */
  #scratch(bytes: number): Buffer {
    if (this.#scratchBuffer.byteLength < bytes) this.#scratchBuffer = Buffer.allocUnsafe(Math.max(bytes, 2 * this.#scratchBuffer.byteLength));
    return this.#scratchBuffer.subarray(0, bytes);
  }

  summary(position: AppliedPosition, recordCount: number): ImageSummary {
    return { position, stateHash: this.#hash.digest('hex'), keyCount: this.#keyCount, dataBytes: this.#dataBytes, recordCount, conf: this.#conf };
  }
}

/** Reads a whole snapshot stream, verifying it, and summarises it. Throws SNAPSHOT_TRANSFER_FAILED or STORAGE_CORRUPT. */
export async function summarizeImage(chunks: AsyncIterable<Uint8Array>, where: string): Promise<ImageSummary> {
  const parser = new SnapshotParser(null, where);
  const digest = new StateDigest(where);
  for await (const chunk of chunks) for (const frame of parser.push(chunk)) digest.add(frame);
  const position = parser.finish();
  return digest.summary(position, parser.recordCount);
}

// ---- writing ------------------------------------------------------------------------------

export interface BackupSource {
  readonly clusterId: string;
  readonly nodeId: NodeId;
}

/**
 * The backup file of an exported snapshot, as a stream of chunks (one image chunk at a time).
 * The image is parsed as it passes, which both computes the metadata and refuses to wrap an
 * image that does not verify (the stream then fails, and whoever stores it gets a short file).
 */
export async function* backupStream(exported: SnapshotExport, source: BackupSource, createdAt: Date): AsyncGenerator<Uint8Array, void, undefined> {
  const hash = createHash('sha256');
  const emit = (bytes: Buffer): Buffer => {
    hash.update(bytes);
    return bytes;
  };
  const preamble = Buffer.allocUnsafe(PREAMBLE_BYTES);
  PREAMBLE_MAGIC.copy(preamble, 0);
  preamble.writeUInt32BE(BACKUP_FORMAT_VERSION, PREAMBLE_MAGIC.byteLength);
  yield emit(preamble);

  const where = `backup of ${source.nodeId}`;
  const parser = new SnapshotParser(exported.meta, where);
  const digest = new StateDigest(where);
  let imageBytes = 0;
  for await (const chunk of exported.chunks) {
    for (const frame of parser.push(chunk)) digest.add(frame);
    imageBytes += chunk.byteLength;
    yield emit(asBuffer(chunk));
  }
  const summary = digest.summary(parser.finish(), parser.recordCount);
  const metadata: BackupMetadata = {
    formatVersion: BACKUP_FORMAT_VERSION,
    clusterId: source.clusterId,
    nodeId: source.nodeId,
    index: summary.position.index,
    term: summary.position.term,
    voters: [...summary.conf.voters],
    learners: [...summary.conf.learners],
    keyCount: summary.keyCount,
    dataBytes: summary.dataBytes,
    recordCount: summary.recordCount,
    imageBytes,
    stateHash: summary.stateHash,
    createdAt: createdAt.toISOString(),
  };
  const metadataBytes = Buffer.from(JSON.stringify(metadata), 'utf8');
  yield emit(metadataBytes);
  const footer = Buffer.allocUnsafe(FOOTER_BYTES);
  writeU64(footer, 0, imageBytes);
  footer.writeUInt32BE(metadataBytes.byteLength, 8);
  FOOTER_MAGIC.copy(footer, 12);
  yield emit(footer);
  yield hash.digest();
}

// ---- reading ------------------------------------------------------------------------------

function invalid(path: string, message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.BACKUP_INVALID, `backup file ${path}: ${message}`, cause === undefined ? {} : { cause });
}

/** The part of `chunk` (which starts at file offset `at`) inside [from, to). */
function within(chunk: Buffer, at: number, from: number, to: number): Buffer {
  const start = Math.max(from, at);
  const end = Math.min(to, at + chunk.byteLength);
  return end > start ? chunk.subarray(start - at, end - at) : chunk.subarray(0, 0);
}

interface Layout {
  readonly fileBytes: number;
  readonly imageBytes: number;
  readonly metadataBytes: number;
}

/** Where the parts are, from the file's size, its preamble and its footer; nothing else is trusted yet. */
async function readLayout(path: string): Promise<Layout> {
  let fileBytes: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw invalid(path, 'is not a regular file');
    fileBytes = st.size;
  } catch (error) {
    if (isRaftKvError(error)) throw error;
    throw invalid(path, `cannot be read: ${(error as Error).message}`, error);
  }
  if (fileBytes < FILE_BYTES_MIN) throw invalid(path, `is ${fileBytes} bytes, shorter than any backup (${FILE_BYTES_MIN}): it is truncated, or not a raftkv backup file`);
  const handle = await open(path, 'r');
  try {
    const preamble = Buffer.alloc(PREAMBLE_BYTES);
    await handle.read(preamble, 0, PREAMBLE_BYTES, 0);
    if (!preamble.subarray(0, PREAMBLE_MAGIC.byteLength).equals(PREAMBLE_MAGIC)) throw invalid(path, 'does not start with RAFTKVBK: it is not a raftkv backup file, or its first bytes are damaged');
    const version = preamble.readUInt32BE(PREAMBLE_MAGIC.byteLength);
    if (version !== BACKUP_FORMAT_VERSION) {
      throw invalid(path, `is of backup format version ${version}; this build reads version ${BACKUP_FORMAT_VERSION} (or the file is damaged)`);
    }
    const footer = Buffer.alloc(FOOTER_BYTES);
    await handle.read(footer, 0, FOOTER_BYTES, fileBytes - HASH_BYTES - FOOTER_BYTES);
    if (!footer.subarray(12).equals(FOOTER_MAGIC)) {
      throw invalid(path, `does not end with the RKVBKEND marker and its hash: it is truncated (${fileBytes} bytes), or its last bytes are damaged`);
    }
    const imageBytes = readU64(footer, 0);
    const metadataBytes = footer.readUInt32BE(8);
    const expected = imageBytes === null ? null : PREAMBLE_BYTES + imageBytes + metadataBytes + FOOTER_BYTES + HASH_BYTES;
    if (imageBytes === null || expected !== fileBytes || metadataBytes > BACKUP_METADATA_BYTES_MAX) {
      throw invalid(path, `its footer gives an image of ${String(imageBytes)} bytes and metadata of ${metadataBytes} bytes, which do not add up to its ${fileBytes} bytes: it is damaged or truncated`);
    }
    return { fileBytes, imageBytes, metadataBytes };
  } finally {
    await handle.close();
  }
}

/**
 * Verifies a backup file from end to end, in one pass holding one chunk at a time: its layout
 * (preamble, footer, lengths: needed to find the hash), its SHA-256, the image (every check of a
 * snapshot import: frames, record checksums, key order, record count, CRC32), and that the
 * metadata says what the image holds (position, counts, state hash, configuration). Throws
 * BACKUP_INVALID naming the file and what failed. Damage past the layout is reported as a
 * SHA-256 failure, whatever else it also broke: that names the cause most plainly.
 */
export async function verifyBackupFile(path: string): Promise<BackupInfo> {
  const layout = await readLayout(path);
  const imageEnd = PREAMBLE_BYTES + layout.imageBytes;
  const metadataEnd = imageEnd + layout.metadataBytes;
  const hashAt = layout.fileBytes - HASH_BYTES;
  const hash = createHash('sha256');
  const parser = new SnapshotParser(null, path);
  const digest = new StateDigest(path);
  let imageError: unknown = null;
  const metadataParts: Buffer[] = [];
  const storedParts: Buffer[] = [];
  let at = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK_BYTES }) as AsyncIterable<Buffer>) {
      hash.update(within(chunk, at, 0, hashAt));
      const image = within(chunk, at, PREAMBLE_BYTES, imageEnd);
      if (image.byteLength > 0 && imageError === null) {
        try {
          for (const frame of parser.push(image)) digest.add(frame);
        } catch (error) {
          imageError = error; // reported after the SHA-256, which names damage more plainly
        }
      }
      metadataParts.push(within(chunk, at, imageEnd, metadataEnd));
      storedParts.push(within(chunk, at, hashAt, layout.fileBytes));
      at += chunk.byteLength;
    }
  } catch (error) {
    throw invalid(path, `cannot be read: ${(error as Error).message}`, error);
  }
  if (at !== layout.fileBytes) throw invalid(path, `changed while it was read (${layout.fileBytes} bytes, then ${at})`);
  const sha256 = hash.digest('hex');
  const stored = Buffer.concat(storedParts).toString('hex');
  if (sha256 !== stored) throw invalid(path, `fails its SHA-256 check (computed ${sha256}, the file says ${stored}): the file is damaged`);
  let summary: ImageSummary;
  try {
    if (imageError !== null) throw imageError;
    summary = digest.summary(parser.finish(), parser.recordCount);
  } catch (error) {
    throw invalid(path, `its image does not verify: ${(error as Error).message}`, error);
  }
  const metadata = parseMetadata(path, Buffer.concat(metadataParts));
  checkAgainstImage(path, metadata, summary, layout.imageBytes);
  return { path, fileBytes: layout.fileBytes, sha256, metadata };
}

/**
 * The image of a backup verified by `verifyBackupFile`, read again from the file, for a restore
 * to import. The SHA-256 is computed again on the way: if the file is not the one verified any
 * more, the iteration throws BACKUP_INVALID at its end, before the import records the image
 * as complete (the import then removes what it wrote).
 */
export async function* readBackupImage(info: BackupInfo): AsyncGenerator<Uint8Array, void, undefined> {
  const imageEnd = PREAMBLE_BYTES + info.metadata.imageBytes;
  const hashAt = info.fileBytes - HASH_BYTES;
  const hash = createHash('sha256');
  let at = 0;
  for await (const chunk of createReadStream(info.path, { highWaterMark: READ_CHUNK_BYTES }) as AsyncIterable<Buffer>) {
    hash.update(within(chunk, at, 0, hashAt));
    const image = within(chunk, at, PREAMBLE_BYTES, imageEnd);
    at += chunk.byteLength;
    if (image.byteLength > 0) yield image;
  }
  if (at !== info.fileBytes || hash.digest('hex') !== info.sha256) throw invalid(info.path, 'changed after it was verified; nothing was restored');
}

function parseMetadata(path: string, bytes: Buffer): BackupMetadata {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw invalid(path, `its metadata is not JSON: ${(error as Error).message}`, error);
  }
  const m = (typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : {}) as Record<string, unknown>;
  const count = (name: string): number => {
    const v = m[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(path, `its metadata has no valid ${name}`);
    return v;
  };
  const text = (name: string): string => {
    const v = m[name];
    if (typeof v !== 'string' || v === '') throw invalid(path, `its metadata has no valid ${name}`);
    return v;
  };
  const ids = (name: string): string[] => {
    const v = m[name];
    if (!Array.isArray(v) || !v.every((id) => typeof id === 'string' && id !== '')) throw invalid(path, `its metadata has no valid ${name}`);
    return v as string[];
  };
  const metadata: BackupMetadata = {
    formatVersion: count('formatVersion'),
    clusterId: text('clusterId'),
    nodeId: text('nodeId'),
    index: count('index'),
    term: count('term'),
    voters: ids('voters'),
    learners: ids('learners'),
    keyCount: count('keyCount'),
    dataBytes: count('dataBytes'),
    recordCount: count('recordCount'),
    imageBytes: count('imageBytes'),
    stateHash: text('stateHash'),
    createdAt: text('createdAt'),
  };
  if (metadata.formatVersion !== BACKUP_FORMAT_VERSION) throw invalid(path, `its metadata says format version ${metadata.formatVersion}, its preamble ${BACKUP_FORMAT_VERSION}`);
  if (Number.isNaN(Date.parse(metadata.createdAt))) throw invalid(path, `its metadata has no valid createdAt`);
  return metadata;
}

/** The metadata must say what the image holds: a writer that lied, or a bug, is caught here. */
function checkAgainstImage(path: string, m: BackupMetadata, image: ImageSummary, imageBytes: number): void {
  const pairs: Array<[string, unknown, unknown]> = [
    ['index', m.index, image.position.index],
    ['term', m.term, image.position.term],
    ['keyCount', m.keyCount, image.keyCount],
    ['dataBytes', m.dataBytes, image.dataBytes],
    ['recordCount', m.recordCount, image.recordCount],
    ['imageBytes', m.imageBytes, imageBytes],
    ['stateHash', m.stateHash, image.stateHash],
    ['voters', m.voters.join(','), image.conf.voters.join(',')],
    ['learners', m.learners.join(','), image.conf.learners.join(',')],
  ];
  for (const [name, said, found] of pairs) {
    if (said !== found) throw invalid(path, `its metadata says ${name} ${JSON.stringify(said)}, its image holds ${JSON.stringify(found)}`);
  }
  if (m.index < 1) throw invalid(path, 'its image is at index 0: a node that applied nothing has nothing to back up');
}
