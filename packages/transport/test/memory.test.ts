import { describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError, type Message, type MsgSnap } from '@raftkv/raft';
import { MemoryNetwork, type MemoryTransport } from '../src/index.js';
import { heartbeat, Recorder, Streams } from './helpers.js';

interface Node {
  readonly transport: MemoryTransport;
  readonly recorder: Recorder;
  readonly streams: Streams;
}

async function cluster(network: MemoryNetwork, ids: readonly string[]): Promise<Node[]> {
  const nodes = ids.map((id) => ({ transport: network.transport(id), recorder: new Recorder(), streams: new Streams() }));
  await Promise.all(nodes.map((n) => n.transport.start(n.recorder, n.streams)));
  return nodes;
}

async function closeAll(nodes: readonly Node[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.transport.close()));
}

/** Sends `count` heartbeats from -> to, then a final marker the other way round trip cannot overtake on a FIFO link. */
function burst(from: Node, to: Node, count: number, round0 = 0): void {
  for (let k = 0; k < count; k++) from.transport.send(heartbeat(from.transport.id, to.transport.id, round0 + k));
}

/** Waits until every scheduled message has arrived or been lost (the link's in-flight count is 0). */
async function settled(...nodes: Node[]): Promise<void> {
  const busy = (): boolean => nodes.some((n) => [...n.transport.stats().peers.values()].some((p) => p.queued > 0));
  while (busy()) await new Promise<void>((resolve) => setImmediate(resolve));
}

function rounds(messages: readonly Message[]): number[] {
  return messages.map((m) => (m.type === 'MsgHeartbeat' ? m.readRound : -1));
}

function msgSnap(from: string, to: string): MsgSnap {
  return { type: 'MsgSnap', from, to, term: 2, snapshot: { meta: { index: 10, term: 2, confState: { voters: [from, to], learners: [] } }, data: new Uint8Array(0) } };
}

describe('MemoryNetwork fault injection', () => {
  it('drop(p): loses about p of the messages, reproducibly from the seed', async () => {
    const run = async (seed: number): Promise<number[]> => {
      const network = new MemoryNetwork({ seed });
      const [a, b] = await cluster(network, ['a', 'b']);
      try {
        network.drop('a', 'b', 0.5);
        burst(a!, b!, 1000);
        await settled(a!);
        expect(a!.transport.stats().peers.get('b')!.dropped + b!.recorder.messages.length).toBe(1000);
        return rounds(b!.recorder.messages);
      } finally {
        await closeAll([a!, b!]);
      }
    };
    const first = await run(42);
    expect(first.length).toBeGreaterThan(400);
    expect(first.length).toBeLessThan(600);
    expect(await run(42)).toEqual(first);
    expect(await run(43)).not.toEqual(first);
  });

  it('drop(1) loses everything on that link only', async () => {
    const network = new MemoryNetwork();
    const [a, b] = await cluster(network, ['a', 'b']);
    try {
      network.drop('a', 'b', 1);
      burst(a!, b!, 10);
      burst(b!, a!, 10);
      await a!.recorder.until(() => a!.recorder.messages.length === 10);
      await settled(a!);
      expect(b!.recorder.messages).toEqual([]);
    } finally {
      await closeAll([a!, b!]);
    }
  });

  it('delay with jitter reorders; without jitter the link stays FIFO', async () => {
    const network = new MemoryNetwork({ seed: 5 });
    const [a, b, c] = await cluster(network, ['a', 'b', 'c']);
    try {
      network.delay('a', 'b', 1, 20);
      network.delay('a', 'c', 5);
      burst(a!, b!, 200);
      burst(a!, c!, 200);
      await b!.recorder.until(() => b!.recorder.messages.length === 200);
      await c!.recorder.until(() => c!.recorder.messages.length === 200);
      const atB = rounds(b!.recorder.messages);
      expect([...atB].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, k) => k));
      expect(atB).not.toEqual([...atB].sort((x, y) => x - y));
      expect(rounds(c!.recorder.messages)).toEqual(Array.from({ length: 200 }, (_, k) => k));
    } finally {
      await closeAll([a!, b!, c!]);
    }
  });

  it('duplicate(1) delivers every message twice; heal() stops it', async () => {
    const network = new MemoryNetwork();
    const [a, b] = await cluster(network, ['a', 'b']);
    try {
      network.duplicate(1);
      burst(a!, b!, 50);
      await b!.recorder.until(() => b!.recorder.messages.length === 100);
      const counts = new Map<number, number>();
      for (const r of rounds(b!.recorder.messages)) counts.set(r, (counts.get(r) ?? 0) + 1);
      expect([...counts.values()].every((n) => n === 2)).toBe(true);
      // Copies are distinct objects (each decoded from the wire form).
      expect(b!.recorder.messages[0]).not.toBe(b!.recorder.messages[1]);
      network.heal();
      burst(a!, b!, 10, 1000);
      await b!.recorder.until(() => b!.recorder.messages.length === 110);
      await settled(a!);
      expect(b!.recorder.messages).toHaveLength(110);
    } finally {
      await closeAll([a!, b!]);
    }
  });

  it('partition cuts both ways between the groups; cut is one way; heal restores all', async () => {
    const network = new MemoryNetwork();
    const [a, b, c] = await cluster(network, ['a', 'b', 'c']);
    try {
      network.partition(['a'], ['b', 'c']);
      network.cut('b', 'c');
      burst(a!, b!, 1);
      burst(b!, a!, 1);
      burst(c!, a!, 1);
      burst(b!, c!, 1);
      burst(c!, b!, 1, 7);
      await b!.recorder.until(() => b!.recorder.messages.length === 1);
      await a!.recorder.until(() => a!.recorder.unreachable.length > 0);
      await settled(a!, b!, c!);
      expect(a!.recorder.messages).toEqual([]);
      expect(c!.recorder.messages).toEqual([]);
      expect(rounds(b!.recorder.messages)).toEqual([7]);
      expect(a!.transport.stats().peers.get('b')).toMatchObject({ connected: false, dropped: 1 });
      network.heal();
      expect(a!.transport.stats().peers.get('b')?.connected).toBe(true);
      burst(a!, b!, 1, 100);
      burst(b!, c!, 1, 100);
      await b!.recorder.until(() => b!.recorder.messages.length === 2);
      await c!.recorder.until(() => c!.recorder.messages.length === 1);
    } finally {
      await closeAll([a!, b!, c!]);
    }
  });

  it('a partition also loses what was in flight', async () => {
    const network = new MemoryNetwork();
    const [a, b] = await cluster(network, ['a', 'b']);
    try {
      network.delay('a', 'b', 5);
      burst(a!, b!, 10);
      network.partition(['a'], ['b']);
      await settled(a!);
      expect(b!.recorder.messages).toEqual([]);
    } finally {
      await closeAll([a!, b!]);
    }
  });

  it('a snapshot stream breaks when the link is cut mid-stream: receive() fails, no MsgSnap, status false', async () => {
    const network = new MemoryNetwork();
    const [a, b] = await cluster(network, ['a', 'b']);
    try {
      a!.streams.openImpl = async function* () {
        for (let k = 0; k < 10; k++) {
          if (k === 3) network.cut('a', 'b');
          yield new Uint8Array(1000).fill(k);
        }
      };
      let failure: unknown = null;
      b!.streams.receiveImpl = async (_message, chunks) => {
        try {
          for await (const _chunk of chunks);
        } catch (error) {
          failure = error;
          throw error;
        }
      };
      a!.transport.send(msgSnap('a', 'b'));
      await a!.recorder.until(() => a!.recorder.snapshotStatus.length > 0);
      expect(a!.recorder.snapshotStatus).toEqual([{ to: 'b', ok: false }]);
      expect(isRaftKvError(failure, ErrorCode.SNAPSHOT_TRANSFER_FAILED)).toBe(true);
      expect(b!.recorder.messages).toEqual([]);
      expect(b!.transport.stats().snapshotsRejected).toBe(1);
    } finally {
      await closeAll([a!, b!]);
    }
  });

  it('closing a transport cancels its delayed deliveries (no timer outlives it)', async () => {
    const network = new MemoryNetwork();
    const [a, b] = await cluster(network, ['a', 'b']);
    network.delay('a', 'b', 60_000);
    burst(a!, b!, 5);
    expect(a!.transport.stats().peers.get('b')?.queued).toBe(5);
    await b!.transport.close();
    expect(a!.transport.stats().peers.has('b')).toBe(false);
    await a!.transport.close();
    expect(b!.recorder.messages).toEqual([]);
    // A closed id can be opened again.
    const again = network.transport('b');
    await again.close();
  });

  it('refuses bad fault parameters and a second open transport for one id', () => {
    const network = new MemoryNetwork();
    const code = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (error) {
        return isRaftKvError(error) ? error.code : error;
      }
      return null;
    };
    expect(code(() => network.drop('a', 'b', 1.5))).toBe(ErrorCode.INVALID_CONFIG);
    expect(code(() => network.delay('a', 'b', -1))).toBe(ErrorCode.INVALID_CONFIG);
    expect(code(() => network.duplicate(Number.NaN))).toBe(ErrorCode.INVALID_CONFIG);
    const t = network.transport('a');
    expect(code(() => network.transport('a'))).toBe(ErrorCode.INVALID_CONFIG);
    void t.close();
  });
});
