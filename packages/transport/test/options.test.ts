import fc from 'fast-check';
import { ErrorCode, isRaftKvError } from '@raftkv/raft';
import { describe, expect, it } from 'vitest';
import { Backoff, formatAddress, parseAddress, TcpTransport, type TcpTransportOptions } from '../src/index.js';

const base: TcpTransportOptions = { id: 'a', clusterId: 'k', listen: { host: '127.0.0.1', port: 0 } };

function code(fn: () => unknown): unknown {
  try {
    fn();
    return null;
  } catch (error) {
    return isRaftKvError(error) ? error.code : error;
  }
}

describe('TcpTransport options', () => {
  const bad: [string, Partial<TcpTransportOptions>][] = [
    ['an empty id', { id: '' }],
    ['an empty cluster id', { clusterId: '' }],
    ['a port out of range', { listen: { host: '127.0.0.1', port: 70000 } }],
    ['a tiny frameBytesMax', { frameBytesMax: 10 }],
    ['a frameBytesMax beyond what the codec decodes', { frameBytesMax: 2 ** 31 }],
    ['a zero sendQueueMax', { sendQueueMax: 0 }],
    ['a byte bound below one frame', { frameBytesMax: 1 << 20, sendQueueBytesMax: 1000 }],
    ['a snapshot chunk that does not fit a frame', { frameBytesMax: 1 << 20, snapshotChunkBytes: 1 << 20 }],
    ['a back-off ceiling below its floor', { reconnectBackoffMinMs: 100, reconnectBackoffMaxMs: 10 }],
    ['a peer address without a port', { peers: new Map([['b', 'localhost']]) }],
  ];
  for (const [name, options] of bad) {
    it(`refuses ${name} with INVALID_CONFIG`, () => {
      expect(code(() => new TcpTransport({ ...base, ...options }))).toBe(ErrorCode.INVALID_CONFIG);
    });
  }

  it('setPeers refuses a malformed address and keeps the old peers', () => {
    const t = new TcpTransport({ ...base, peers: new Map([['b', '127.0.0.1:1']]) });
    expect(code(() => t.setPeers(new Map([['c', 'nope']])))).toBe(ErrorCode.INVALID_CONFIG);
  });

  it('a small frameBytesMax brings the default snapshot chunk size down with it', () => {
    expect(code(() => new TcpTransport({ ...base, frameBytesMax: 64 * 1024 }))).toBe(null);
  });

  it('parses and formats addresses, IPv6 included', () => {
    expect(parseAddress('10.0.0.1:7000', 'x')).toEqual({ host: '10.0.0.1', port: 7000 });
    expect(parseAddress('[::1]:7000', 'x')).toEqual({ host: '::1', port: 7000 });
    expect(formatAddress('::1', 7000)).toBe('[::1]:7000');
    expect(code(() => parseAddress(':7000', 'x'))).toBe(ErrorCode.INVALID_CONFIG);
    expect(code(() => parseAddress('host:0', 'x'))).toBe(ErrorCode.INVALID_CONFIG);
  });
});

describe('Backoff', () => {
  it('waits within [c/2, c] where c doubles from min up to max, and reset starts over', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 0, max: 100_000 }), fc.array(fc.double({ min: 0, max: 0.999999, noNaN: true }), { minLength: 1, maxLength: 40 }), (minMs, extraMs, draws) => {
        const maxMs = minMs + extraMs;
        let k = 0;
        const backoff = new Backoff(minMs, maxMs, () => draws[k++ % draws.length]!);
        for (let attempt = 0; attempt < draws.length; attempt++) {
          const ceiling = Math.min(maxMs, minMs * 2 ** attempt);
          const delay = backoff.nextDelayMs();
          expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(delay).toBeLessThanOrEqual(ceiling);
        }
        backoff.reset();
        expect(backoff.nextDelayMs()).toBeLessThanOrEqual(minMs);
      }),
    );
  });
});
