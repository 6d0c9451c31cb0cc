import fc from 'fast-check';
import { ErrorCode, isRaftKvError } from '@raftkv/raft';
import { describe, expect, it } from 'vitest';
import { FrameDecoder } from '../src/index.js';
import { decodeBody, encodeBody, encodeFrame, frameHeader, parseAcceptorFrame, parseHello, parseSnapshotFrame } from '../src/wire.js';

function frames(bodies: readonly Uint8Array[]): Buffer {
  return Buffer.concat(bodies.flatMap((b) => [frameHeader(b.byteLength), Buffer.from(b)]));
}

function code(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (error) {
    return isRaftKvError(error) ? error.code : `not a RaftKvError: ${String(error)}`;
  }
}

describe('FrameDecoder', () => {
  it('yields the same bodies however the byte stream is cut', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (bodies, cuts) => {
        const stream = frames(bodies);
        const points = [...new Set(cuts.map((c) => (stream.byteLength === 0 ? 0 : c % stream.byteLength)))].sort((x, y) => x - y);
        const decoder = new FrameDecoder(1024);
        const out: Buffer[] = [];
        let previous = 0;
        for (const p of [...points, stream.byteLength]) {
          out.push(...decoder.push(stream.subarray(previous, p)));
          previous = p;
        }
        expect(out.map((b) => Array.from(b))).toEqual(bodies.map((b) => Array.from(b)));
        expect(decoder.bufferedBytes).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('reports the bytes of a partial frame (a truncated frame at EOF)', () => {
    const decoder = new FrameDecoder(1024);
    expect(decoder.push(Buffer.from([0, 0]))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(2);
    expect(decoder.push(Buffer.from([0, 10, 1, 2, 3]))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(7);
  });

  it('rejects an oversized declared length from the header alone, before any of the body', () => {
    const decoder = new FrameDecoder(1024);
    expect(code(() => decoder.push(Buffer.from([0, 0, 4, 1])))).toBe(ErrorCode.FRAME_INVALID);
    expect(code(() => new FrameDecoder(1024).push(Buffer.from([0xff, 0xff, 0xff, 0xff])))).toBe(ErrorCode.FRAME_INVALID);
    expect(code(() => new FrameDecoder(1024).push(Buffer.from([0, 0, 0, 0])))).toBe(ErrorCode.FRAME_INVALID);
    // Exactly at the limit is fine.
    expect(new FrameDecoder(1024).push(Buffer.concat([frameHeader(1024), Buffer.alloc(1024)]))[0]?.byteLength).toBe(1024);
  });
});

describe('frame bodies', () => {
  it('encodeBody refuses a body over frameBytesMax', () => {
    expect(code(() => encodeBody({ d: new Uint8Array(5000) }, 4096))).toBe(ErrorCode.FRAME_INVALID);
    expect(encodeFrame({ t: 'snap-ack', index: 3 }, 4096).readUInt32BE(0)).toBeGreaterThan(0);
  });

  it('decodeBody turns any malformed msgpack into FRAME_INVALID', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (raw) => {
        const c = code(() => decodeBody(raw));
        expect(c === null || c === ErrorCode.FRAME_INVALID).toBe(true);
      }),
      { numRuns: 2000 },
    );
    expect(code(() => decodeBody(Buffer.from([0x92])))).toBe(ErrorCode.FRAME_INVALID); // an array of 2 with no items
  });

  it('parseHello accepts a well-formed hello and names what is wrong otherwise', () => {
    const good = { v: 1, clusterId: 'k', from: 'a', to: 'b', stream: 'messages' };
    expect(parseHello(good)).toEqual(good);
    expect(parseHello({ ...good, v: 2 })).toBe('version-unsupported');
    expect(parseHello({ ...good, v: '1' })).toBe('malformed-handshake');
    expect(parseHello({ ...good, from: '' })).toBe('malformed-handshake');
    expect(parseHello({ ...good, stream: 'x' })).toBe('malformed-handshake');
    expect(parseHello(null)).toBe('malformed-handshake');
    expect(parseHello([1])).toBe('malformed-handshake');
  });

  it('parseSnapshotFrame and parseAcceptorFrame accept only their frames', () => {
    expect(parseSnapshotFrame({ t: 'snap-end', chunkCount: 1, byteCount: 2, crc32: 3 })).toEqual({ t: 'snap-end', chunkCount: 1, byteCount: 2, crc32: 3 });
    expect(code(() => parseSnapshotFrame({ t: 'snap-end', chunkCount: 1, byteCount: 2, crc32: 2 ** 32 }))).toBe(ErrorCode.FRAME_INVALID);
    expect(code(() => parseSnapshotFrame({ t: 'snap-chunk', d: 'text' }))).toBe(ErrorCode.FRAME_INVALID);
    expect(code(() => parseSnapshotFrame({ t: 'msg' }))).toBe(ErrorCode.FRAME_INVALID);
    expect(parseAcceptorFrame({ t: 'snap-nack', reason: 'r' })).toEqual({ t: 'snap-nack', reason: 'r' });
    expect(code(() => parseAcceptorFrame({ t: 'snap-ack', index: -1 }))).toBe(ErrorCode.FRAME_INVALID);
  });
});
