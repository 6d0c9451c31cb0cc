/**
 * A transport that is the rest of the cluster, played by the test: it records what the node
 * sends and lets the test deliver messages and snapshot streams by hand, at exact moments.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { afterEach } from 'vitest';
import { encodeCommand, KvStateMachine, type KvDb } from '@raftkv/kv';
import { EntryType, type Entry, type Message, type MsgSnap, type NodeId, type SnapshotMeta, type Term } from '@raftkv/raft';
import type { SnapshotStreams, Transport, TransportHandlers, TransportStats } from '@raftkv/transport';

export class FakePeers implements Transport {
  readonly id: NodeId;
  readonly sent: Message[] = [];
  handlers: TransportHandlers | null = null;
  streams: SnapshotStreams | null = null;

  constructor(id: NodeId) {
    this.id = id;
  }

  async start(handlers: TransportHandlers, snapshots: SnapshotStreams): Promise<void> {
    this.handlers = handlers;
    this.streams = snapshots;
  }

  send(message: Message): void {
    this.sent.push(message);
  }

  setPeers(): void {}

  stats(): TransportStats {
    return { peers: new Map(), received: 0, framesRejected: 0, handshakesRejected: 0, droppedUnknownPeer: 0, snapshotsReceived: 0, snapshotsRejected: 0 };
  }

  async close(): Promise<void> {
    this.handlers = null;
    this.streams = null;
  }

  deliver(message: Message): void {
    this.handlers!.onMessage(message);
  }

  /** Streams a snapshot image into the node, as the TCP transport would; resolves or rejects as `receive` does. */
  snapshot(message: MsgSnap, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    return this.streams!.receive(message, chunks);
  }
}

/** A leader's state machine image: `count` puts at indexes 1..count in `term`, exported as a stream. */
export async function leaderImage(count: number, term: Term): Promise<{ meta: { index: number; term: Term }; chunks: AsyncIterable<Uint8Array> }> {
  const db: KvDb = new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
  const kv = await KvStateMachine.open(db);
  const entries: Entry[] = [];
  for (let index = 1; index <= count; index++) {
    entries.push({ index, term, type: EntryType.Normal, data: encodeCommand({ type: 'put', key: `k${index}`, value: new TextEncoder().encode(`v${index}`) }) });
  }
  await kv.apply(entries);
  const exported = await kv.exportSnapshot();
  return { meta: exported.meta, chunks: exported.chunks };
}

export function msgSnap(from: NodeId, to: NodeId, term: Term, meta: Omit<SnapshotMeta, 'confState'>, voters: readonly NodeId[]): MsgSnap {
  return { type: 'MsgSnap', from, to, term, snapshot: { meta: { ...meta, confState: { voters: [...voters], learners: [] } }, data: new Uint8Array(0) } };
}

/** A fresh temporary directory per call, removed after the test. */
export function useTempDirs(): () => Promise<string> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  return async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-node-'));
    dirs.push(dir);
    return dir;
  };
}

export async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
