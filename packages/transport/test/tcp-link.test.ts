import { describe, expect, it } from 'vitest';
import { formatAddress, TcpTransport, TransportLog } from '../src/index.js';
import { CaptureLogger, closeAll, deadPort, expectLinkWorks, heartbeat, LOCALHOST, Recorder, startTcpNodes, Streams, type TcpNode } from './helpers.js';

describe('TcpTransport: reconnect', () => {
  it('after a peer stops and restarts on the same port, messages flow again both ways', async () => {
    const [a, b1] = await startTcpNodes(['a', 'b']);
    let b2: TcpNode | null = null;
    try {
      await expectLinkWorks(a!, b1!, 1);
      await b1!.transport.close();
      await a!.recorder.until(() => a!.recorder.unreachable.includes('b'));
      expect(a!.transport.stats().peers.get('b')?.connected).toBe(false);

      const logger = new CaptureLogger();
      const transport = new TcpTransport({
        id: 'b',
        clusterId: 'test',
        listen: { host: LOCALHOST, port: b1!.port },
        peers: new Map([['a', formatAddress(LOCALHOST, a!.port)]]),
        reconnectBackoffMinMs: 5,
        reconnectBackoffMaxMs: 50,
        logger,
      });
      b2 = { transport, logger, recorder: new Recorder(), streams: new Streams(), port: b1!.port };
      await transport.start(b2.recorder, b2.streams);
      await expectLinkWorks(a!, b2, 2);
      const peer = a!.transport.stats().peers.get('b');
      expect(peer?.connected).toBe(true);
      expect(peer?.reconnects).toBeGreaterThanOrEqual(1);
      expect(a!.logger.lines.some((l) => l.message === TransportLog.connectionLost)).toBe(true);
    } finally {
      await closeAll([a!, ...(b2 === null ? [] : [b2])]);
    }
  });

  it('a peer whose address changes is redialled at the new address', async () => {
    const [a, b] = await startTcpNodes(['a', 'b']);
    try {
      a!.transport.setPeers(new Map([['b', `${LOCALHOST}:${await deadPort()}`]]));
      a!.transport.send(heartbeat('a', 'b', 1));
      await a!.recorder.until(() => a!.recorder.unreachable.includes('b'));
      a!.transport.setPeers(new Map([['b', `${LOCALHOST}:${b!.port}`]]));
      await expectLinkWorks(a!, b!, 2);
    } finally {
      await closeAll([a!, b!]);
    }
  });
});

describe('TcpTransport: bounded send queue', () => {
  it('100,000 messages to a dead peer: the queue never exceeds its bound and every drop is counted', async () => {
    const sendQueueMax = 1000;
    const dead = `${LOCALHOST}:${await deadPort()}`;
    const [a] = await startTcpNodes(['a'], { sendQueueMax }, new Map([['b', dead]]));
    try {
      const total = 100_000;
      let maxQueued = 0;
      for (let sent = 0; sent < total; ) {
        for (const end = sent + 2000; sent < end; sent++) a!.transport.send(heartbeat('a', 'b', sent));
        const peer = a!.transport.stats().peers.get('b')!;
        maxQueued = Math.max(maxQueued, peer.queued);
        // Let dial attempts fail in between (they discard what was queued before them).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const peer = a!.transport.stats().peers.get('b')!;
      expect(maxQueued).toBeLessThanOrEqual(sendQueueMax);
      expect(maxQueued).toBe(sendQueueMax);
      expect(peer.sent).toBe(0);
      expect(peer.queued + peer.dropped).toBe(total);
      expect(a!.logger.warnings(TransportLog.queueFull).length).toBeGreaterThanOrEqual(1);
      await a!.recorder.until(() => a!.recorder.unreachable.includes('b'));
    } finally {
      await closeAll([a!]);
    }
  });

  it('the byte bound holds too: large messages are dropped once sendQueueBytesMax is reached', async () => {
    const dead = `${LOCALHOST}:${await deadPort()}`;
    const [a] = await startTcpNodes(['a'], { frameBytesMax: 64 * 1024, sendQueueBytesMax: 256 * 1024 }, new Map([['b', dead]]));
    try {
      const data = new Uint8Array(10_000);
      for (let k = 0; k < 100; k++) {
        a!.transport.send({ type: 'MsgApp', from: 'a', to: 'b', term: 1, index: k, logTerm: 1, entries: [{ index: k + 1, term: 1, type: 'normal', data }], commit: 0 });
      }
      const peer = a!.transport.stats().peers.get('b')!;
      const messageBytes = peer.queuedBytes / peer.queued;
      expect(peer.queuedBytes).toBeLessThanOrEqual(256 * 1024);
      expect(peer.queuedBytes + messageBytes).toBeGreaterThan(256 * 1024); // full by bytes, far below the count bound
      expect(peer.queued + peer.dropped).toBe(100);
      // A message that can never fit one frame is dropped and logged, not thrown.
      a!.transport.send({ type: 'MsgApp', from: 'a', to: 'b', term: 1, index: 0, logTerm: 1, entries: [{ index: 1, term: 1, type: 'normal', data: new Uint8Array(100_000) }], commit: 0 });
      expect(a!.logger.warnings(TransportLog.messageTooLarge)).toHaveLength(1);
    } finally {
      await closeAll([a!]);
    }
  });

  it('writes a burst in batches and respects back-pressure: 50,000 messages of 1 KiB arrive in order', async () => {
    const [a, b] = await startTcpNodes(['a', 'b'], { sendQueueMax: 50_000, writeBatchBytesMax: 64 * 1024 });
    try {
      const data = new Uint8Array(1024).fill(7);
      const total = 50_000;
      for (let k = 0; k < total; k++) {
        a!.transport.send({ type: 'MsgApp', from: 'a', to: 'b', term: 1, index: k, logTerm: 1, entries: [{ index: k + 1, term: 1, type: 'normal', data }], commit: 0 });
      }
      await b!.recorder.until(() => b!.recorder.messages.length === total);
      const indexes = b!.recorder.messages.map((m) => (m.type === 'MsgApp' ? m.index : -1));
      expect(indexes.every((index, k) => index === k)).toBe(true);
      expect(a!.transport.stats().peers.get('b')).toMatchObject({ sent: total, dropped: 0, queued: 0 });
    } finally {
      await closeAll([a!, b!]);
    }
  });
});

describe('TcpTransport: close', () => {
  it('close() leaves no socket, server or timer behind, even mid-snapshot and mid-reconnect', async () => {
    const handles = (): string[] => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap' || r === 'Timeout').sort();
    const before = handles();
    const dead = `${LOCALHOST}:${await deadPort()}`;
    const nodes = await startTcpNodes(['a', 'b'], { reconnectBackoffMinMs: 10_000, reconnectBackoffMaxMs: 20_000 }, new Map([['d', dead]]));
    const [a, b] = nodes;
    await expectLinkWorks(a!, b!, 1);
    // A reconnect timer is pending for d; a snapshot to b is stuck in its producer.
    await a!.recorder.until(() => a!.recorder.unreachable.includes('d'));
    let opened = (): void => {};
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    a!.streams.openImpl = async function* () {
      yield new Uint8Array(100);
      opened();
      await new Promise(() => {});
    };
    a!.transport.send({ type: 'MsgSnap', from: 'a', to: 'b', term: 1, snapshot: { meta: { index: 3, term: 1, confState: { voters: ['a', 'b'], learners: [] } }, data: new Uint8Array(0) } });
    await isOpen;
    expect(handles().length).toBeGreaterThan(before.length);
    await closeAll(nodes);
    expect(handles()).toEqual(before);
    // Nothing is reported after close.
    const reported = a!.recorder.snapshotStatus.length + a!.recorder.unreachable.length;
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(a!.recorder.snapshotStatus.length + a!.recorder.unreachable.length).toBe(reported);
  });
});
