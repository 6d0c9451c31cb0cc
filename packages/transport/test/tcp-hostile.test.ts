import { decode } from '@raftkv/codec';
import { ErrorCode } from '@raftkv/raft';
import { describe, expect, it } from 'vitest';
import { TransportLog } from '../src/index.js';
import { encodeFrame, frameHeader } from '../src/wire.js';
import { closeAll, deadPort, expectLinkWorks, LOCALHOST, rawExchange, startTcpNodes, type TcpNode } from './helpers.js';

const FRAME_MAX = 16 * 1024 * 1024;

function hello(fields: Record<string, unknown> = {}): Buffer {
  return encodeFrame({ v: 1, clusterId: 'test', from: 'c', to: 'b', stream: 'messages', ...fields }, FRAME_MAX);
}

function rawFrame(body: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(body.byteLength), body]);
}

/** a and b are real; c is a known peer that is down, so a stranger can speak as c without displacing a. */
async function withPair(body: (a: TcpNode, b: TcpNode) => Promise<void>, options: Parameters<typeof startTcpNodes>[1] = {}): Promise<void> {
  const c = `${LOCALHOST}:${await deadPort()}`;
  const nodes = await startTcpNodes(['a', 'b'], options, new Map([['c', c]]));
  try {
    await expectLinkWorks(nodes[0]!, nodes[1]!, 1);
    await body(nodes[0]!, nodes[1]!);
    // The real peer is unaffected.
    await expectLinkWorks(nodes[0]!, nodes[1]!, 2);
  } finally {
    await closeAll(nodes);
  }
}

interface BadFrameCase {
  readonly name: string;
  readonly bytes: () => Buffer[];
  /** Half-close after writing (EOF); otherwise the server must close on its own. */
  readonly end: boolean;
}

const badFrames: BadFrameCase[] = [
  { name: 'garbage (an HTTP request)', bytes: () => [Buffer.from('GET / HTTP/1.1\r\nHost: raftkv\r\n\r\n')], end: false },
  { name: 'a frame that is not msgpack', bytes: () => [rawFrame(Buffer.from([0xc1, 0xc1, 0xc1]))], end: false },
  { name: 'a zero-length frame', bytes: () => [Buffer.from([0, 0, 0, 0])], end: false },
  { name: 'a truncated frame, then EOF', bytes: () => [Buffer.concat([frameHeader(100), Buffer.alloc(10)])], end: true },
  { name: 'a truncated frame header, then EOF', bytes: () => [Buffer.from([0, 0])], end: true },
  { name: 'an oversized declared length (0xFFFFFFFF), body never sent', bytes: () => [Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])], end: false },
  {
    name: 'a valid frame with an invalid message after a good handshake',
    bytes: () => [hello(), encodeFrame({ t: 'msg', m: { type: 'MsgApp', from: 'c', to: 'b', term: 1, index: 0, logTerm: 0, entries: 'nope', commit: 0 } }, FRAME_MAX)],
    end: false,
  },
  {
    name: 'a message of another sender than the handshake said',
    bytes: () => [hello(), encodeFrame({ t: 'msg', m: { type: 'MsgHeartbeat', from: 'a', to: 'b', term: 9, commit: 0, commitTerm: 0, readRound: 0, leaseTick: 0 } }, FRAME_MAX)],
    end: false,
  },
  {
    name: 'a message for another node',
    bytes: () => [hello(), encodeFrame({ t: 'msg', m: { type: 'MsgHeartbeat', from: 'c', to: 'a', term: 9, commit: 0, commitTerm: 0, readRound: 0, leaseTick: 0 } }, FRAME_MAX)],
    end: false,
  },
  {
    name: 'a MsgSnap on a messages stream',
    bytes: () => [
      hello(),
      encodeFrame({ t: 'msg', m: { type: 'MsgSnap', from: 'c', to: 'b', term: 9, snapshot: { meta: { index: 1, term: 1, confState: { voters: ['a'], learners: [] } }, data: new Uint8Array(0) } } }, FRAME_MAX),
    ],
    end: false,
  },
  { name: 'a snapshot stream that skips snap-begin', bytes: () => [hello({ stream: 'snapshot' }), encodeFrame({ t: 'snap-chunk', d: new Uint8Array(10) }, FRAME_MAX)], end: false },
];

describe('TcpTransport: bad frames close the connection and nothing else', () => {
  for (const c of badFrames) {
    it(c.name, () =>
      withPair(async (a, b) => {
        const before = b.transport.stats();
        const reply = await rawExchange(b.port, c.bytes(), { end: c.end });
        expect(reply.byteLength).toBe(0); // no answer to a bad frame: just the close
        const after = b.transport.stats();
        expect(after.framesRejected).toBe(before.framesRejected + 1);
        expect(after.handshakesRejected).toBe(before.handshakesRejected);
        const warnings = b.logger.warnings(TransportLog.frameRejected);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]!.fields).toMatchObject({ code: ErrorCode.FRAME_INVALID });
        expect(typeof warnings[0]!.fields['remote']).toBe('string');
        expect(b.recorder.messages.filter((m) => m.from !== a.transport.id)).toEqual([]);
      }),
    );
  }
});

interface BadHelloCase {
  readonly name: string;
  readonly frame: () => Buffer;
  readonly reason: string;
}

const badHellos: BadHelloCase[] = [
  { name: 'another cluster id', frame: () => hello({ clusterId: 'other-cluster' }), reason: 'cluster-mismatch' },
  { name: 'an unknown node', frame: () => hello({ from: 'mallory' }), reason: 'unknown-peer' },
  { name: 'a handshake meant for another node', frame: () => hello({ to: 'a' }), reason: 'wrong-node' },
  { name: 'an unsupported protocol version', frame: () => hello({ v: 2 }), reason: 'version-unsupported' },
  { name: 'a message instead of a handshake', frame: () => encodeFrame({ t: 'msg', m: { type: 'MsgTimeoutNow', from: 'c', to: 'b', term: 1 } }, FRAME_MAX), reason: 'malformed-handshake' },
  { name: 'an unknown stream kind', frame: () => hello({ stream: 'video' }), reason: 'malformed-handshake' },
];

describe('TcpTransport: refused handshakes get a reject frame, then the close', () => {
  for (const c of badHellos) {
    it(c.name, () =>
      withPair(async (_a, b) => {
        const before = b.transport.stats();
        // More frames right behind the handshake, as a real dialer pipelines them: still refused cleanly.
        const reply = await rawExchange(b.port, [c.frame(), hello()], { end: false });
        expect(reply.readUInt32BE(0)).toBe(reply.byteLength - 4);
        expect(decode(reply.subarray(4))).toEqual({ t: 'reject', code: ErrorCode.PEER_REJECTED, reason: c.reason });
        const after = b.transport.stats();
        expect(after.handshakesRejected).toBe(before.handshakesRejected + 1);
        expect(after.framesRejected).toBe(before.framesRejected);
        const warnings = b.logger.warnings(TransportLog.handshakeRejected);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]!.fields).toMatchObject({ reason: c.reason, code: ErrorCode.PEER_REJECTED });
      }),
    );
  }

  it('a connection that never sends its handshake is closed after handshakeTimeoutMs', () =>
    withPair(
      async (_a, b) => {
        const reply = await rawExchange(b.port, [], { end: false });
        expect(reply.byteLength).toBe(0);
        expect(b.transport.stats().handshakesRejected).toBe(1);
        expect(b.logger.warnings(TransportLog.handshakeTimeout)).toHaveLength(1);
      },
      { handshakeTimeoutMs: 30 },
    ));

  it('a dialer of another cluster is refused by a real transport, logs it, and retries quietly', async () => {
    const [x] = await startTcpNodes(['x'], { clusterId: 'cluster-1' });
    const [y] = await startTcpNodes(['y'], { clusterId: 'cluster-2' });
    try {
      x!.transport.setPeers(new Map([['y', `${LOCALHOST}:${y!.port}`]]));
      y!.transport.setPeers(new Map([['x', `${LOCALHOST}:${x!.port}`]]));
      await x!.recorder.until(() => x!.logger.warnings(TransportLog.refusedByPeer).length >= 2 && x!.recorder.unreachable.length >= 2);
      expect(x!.logger.warnings(TransportLog.refusedByPeer)[0]!.fields).toMatchObject({ peer: 'y', reason: 'cluster-mismatch' });
      expect(y!.transport.stats().handshakesRejected).toBeGreaterThanOrEqual(2);
      expect(x!.transport.stats().peers.get('y')?.refused).toBeGreaterThanOrEqual(2);
      expect(y!.recorder.messages).toEqual([]);
    } finally {
      await closeAll([x!, y!]);
    }
  });
});
