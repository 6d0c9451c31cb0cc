import { decode, encode } from '@raftkv/codec';
import { assert, ErrorCode, RaftKvError, type Message, type MsgSnap, type NodeId } from '@raftkv/raft';
import { UID_LENGTH_MAX } from './options.js';
import { expectBytes, expectCount, expectNodeId, expectRecord, expectString, invalid, validateMessage } from './validate.js';

/**
 * The peer wire protocol. Every frame is a 4-byte big-endian length N (1 <= N <= frameBytesMax)
 * followed by N bytes of msgpack (the one Packr of @raftkv/codec). The first frame a dialer sends
 * on a connection is a `Hello`; what follows depends on `Hello.stream`:
 *
 *   messages stream   dialer -> acceptor: { t: 'msg', m: Message }*            (never MsgSnap)
 *   snapshot stream   dialer -> acceptor: { t: 'snap-begin', m: MsgSnap with empty data }
 *                                         { t: 'snap-chunk', d: bytes }*
 *                                         { t: 'snap-end', chunkCount, byteCount, crc32 }
 *                     acceptor -> dialer: { t: 'snap-ack', index } | { t: 'snap-nack', reason }
 *   either, refused   acceptor -> dialer: { t: 'reject', code: 'RAFTKV_PEER_REJECTED', reason }, then close
 *
 * Anything else on a connection is a FRAME_INVALID and closes it.
 */
export const PROTOCOL_VERSION = 1;
export const FRAME_HEADER_BYTES = 4;
/** The largest length the 4-byte header can declare. */
export const FRAME_LENGTH_LIMIT = 0xffff_ffff;

export type StreamKind = 'messages' | 'snapshot';

export interface Hello {
  readonly v: typeof PROTOCOL_VERSION;
  readonly clusterId: string;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly stream: StreamKind;
  /** The sender's data-directory id, when it has one (see TcpTransportOptions.identity). */
  readonly uid?: string;
}

/** Why an acceptor refused a handshake (sent in the `reject` frame and logged). */
export type RejectReason = 'malformed-handshake' | 'version-unsupported' | 'cluster-mismatch' | 'wrong-node' | 'unknown-peer' | 'identity-missing' | 'identity-mismatch';

export type SnapshotFrame =
  | { readonly t: 'snap-begin'; readonly m: MsgSnap }
  | { readonly t: 'snap-chunk'; readonly d: Uint8Array }
  | { readonly t: 'snap-end'; readonly chunkCount: number; readonly byteCount: number; readonly crc32: number };

export type AcceptorFrame =
  | { readonly t: 'reject'; readonly code: string; readonly reason: string }
  | { readonly t: 'snap-ack'; readonly index: number }
  | { readonly t: 'snap-nack'; readonly reason: string };

export function frameInvalid(message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.FRAME_INVALID, message, cause === undefined ? {} : { cause });
}

export function frameHeader(bodyBytes: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(bodyBytes, 0);
  return header;
}

/** Encodes a frame body; throws FRAME_INVALID when it would exceed `frameBytesMax`. */
export function encodeBody(value: unknown, frameBytesMax: number): Buffer {
  const body = encode(value);
  if (body.byteLength === 0 || body.byteLength > frameBytesMax) {
    throw frameInvalid(`frame body of ${body.byteLength} bytes exceeds frameBytesMax ${frameBytesMax}`);
  }
  return body;
}

/** A whole frame (header and body) in one buffer, for small control frames. */
export function encodeFrame(value: unknown, frameBytesMax: number): Buffer {
  const body = encodeBody(value, frameBytesMax);
  return Buffer.concat([frameHeader(body.byteLength), body]);
}

/** Decodes a frame body; malformed msgpack becomes FRAME_INVALID. */
export function decodeBody(body: Uint8Array): unknown {
  try {
    return decode(body);
  } catch (error) {
    throw frameInvalid('frame body is not valid msgpack', error);
  }
}

/** Returns the decoded handshake, or why it is refused (version and shape only; the caller checks ids). */
export function parseHello(value: unknown): Hello | RejectReason {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'malformed-handshake';
  const f = value as Readonly<Record<string, unknown>>;
  if (f['v'] !== PROTOCOL_VERSION) return typeof f['v'] === 'number' ? 'version-unsupported' : 'malformed-handshake';
  const { clusterId, from, to, stream, uid } = f;
  if (typeof clusterId !== 'string' || (stream !== 'messages' && stream !== 'snapshot')) return 'malformed-handshake';
  if (uid !== undefined && !(typeof uid === 'string' && uid !== '' && uid.length <= UID_LENGTH_MAX)) return 'malformed-handshake';
  try {
    const hello: Hello = { v: PROTOCOL_VERSION, clusterId, from: expectNodeId(from, 'hello.from'), to: expectNodeId(to, 'hello.to'), stream };
    return uid === undefined ? hello : { ...hello, uid };
  } catch {
    return 'malformed-handshake';
  }
}

/** A frame of a messages stream: the message it carries, validated. MsgSnap travels only on a snapshot stream. */
export function parseMessageFrame(value: unknown): Message {
  const f = expectRecord(value, 'frame');
  if (f['t'] !== 'msg') invalid('frame.t', "'msg'");
  const message = validateMessage(f['m']);
  if (message.type === 'MsgSnap') invalid('frame.m.type', 'a message other than MsgSnap on a messages stream');
  return message;
}

export function parseSnapshotFrame(value: unknown): SnapshotFrame {
  const f = expectRecord(value, 'frame');
  switch (f['t']) {
    case 'snap-begin': {
      const m = validateMessage(f['m']);
      if (m.type !== 'MsgSnap') invalid('frame.m.type', 'MsgSnap');
      return { t: 'snap-begin', m };
    }
    case 'snap-chunk':
      return { t: 'snap-chunk', d: expectBytes(f['d'], 'frame.d') };
    case 'snap-end': {
      const crc32 = expectCount(f['crc32'], 'frame.crc32');
      if (crc32 > 0xffff_ffff) invalid('frame.crc32', 'a 32-bit checksum');
      return { t: 'snap-end', chunkCount: expectCount(f['chunkCount'], 'frame.chunkCount'), byteCount: expectCount(f['byteCount'], 'frame.byteCount'), crc32 };
    }
    default:
      return invalid('frame.t', 'a snapshot frame');
  }
}

export function parseAcceptorFrame(value: unknown): AcceptorFrame {
  const f = expectRecord(value, 'frame');
  switch (f['t']) {
    case 'reject':
      return { t: 'reject', code: expectString(f['code'], 'frame.code'), reason: expectString(f['reason'], 'frame.reason') };
    case 'snap-ack':
      return { t: 'snap-ack', index: expectCount(f['index'], 'frame.index') };
    case 'snap-nack':
      return { t: 'snap-nack', reason: expectString(f['reason'], 'frame.reason') };
    default:
      return invalid('frame.t', 'an acceptor frame');
  }
}

/**
 * Splits a byte stream into frame bodies. The declared length is checked against
 * `frameBytesMax` as soon as the 4 header bytes are in, before any of the body is kept, so a
 * peer cannot make us buffer more than one frame's worth (plus one socket read).
 */
export class FrameDecoder {
  readonly #frameBytesMax: number;
  #chunks: Buffer[] = [];
  /** Read position inside `#chunks[0]`. */
  #head = 0;
  #bufferedBytes = 0;
  /** Body length of the frame being assembled, once its header was read. */
  #bodyBytes: number | null = null;

  constructor(frameBytesMax: number) {
    assert(Number.isInteger(frameBytesMax) && frameBytesMax >= 1, `frameBytesMax ${frameBytesMax} is not a positive integer`);
    assert(frameBytesMax <= FRAME_LENGTH_LIMIT, `frameBytesMax ${frameBytesMax} does not fit the 4-byte header`);
    this.#frameBytesMax = frameBytesMax;
  }

  /** Bytes held that do not yet form a whole frame: non-zero at EOF means a truncated frame. */
  get bufferedBytes(): number {
    return this.#bufferedBytes + (this.#bodyBytes === null ? 0 : FRAME_HEADER_BYTES);
  }

  /** Appends bytes; returns the bodies of the frames they complete. Throws FRAME_INVALID on a bad declared length. */
  push(data: Buffer): Buffer[] {
    const bodies: Buffer[] = [];
    if (data.byteLength === 0) return bodies;
    this.#chunks.push(data);
    this.#bufferedBytes += data.byteLength;
    while (true) {
      if (this.#bodyBytes === null) {
        if (this.#bufferedBytes < FRAME_HEADER_BYTES) break;
        const declared = this.#take(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (declared === 0 || declared > this.#frameBytesMax) {
          this.#reset();
          throw frameInvalid(`declared frame length ${declared} is outside [1, ${this.#frameBytesMax}]`);
        }
        this.#bodyBytes = declared;
      }
      if (this.#bufferedBytes < this.#bodyBytes) break;
      bodies.push(this.#take(this.#bodyBytes));
      this.#bodyBytes = null;
    }
    return bodies;
  }

  #reset(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#bufferedBytes = 0;
    this.#bodyBytes = null;
  }

  /** Removes `n` buffered bytes; zero-copy when they lie in one chunk. */
  #take(n: number): Buffer {
    assert(n <= this.#bufferedBytes, `FrameDecoder: take ${n} of ${this.#bufferedBytes} buffered bytes`);
    const first = this.#chunks[0];
    assert(first !== undefined, 'FrameDecoder: buffered bytes but no chunk');
    let out: Buffer;
    if (first.byteLength - this.#head >= n) {
      out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const chunk = this.#chunks[0];
        assert(chunk !== undefined, 'FrameDecoder: buffered byte count out of step');
        const count = Math.min(chunk.byteLength - this.#head, n - filled);
        chunk.copy(out, filled, this.#head, this.#head + count);
        filled += count;
        this.#advance(count);
      }
    }
    this.#bufferedBytes -= n;
    return out;
  }

  #advance(count: number): void {
    this.#head += count;
    const first = this.#chunks[0];
    if (first !== undefined && this.#head === first.byteLength) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }
}
