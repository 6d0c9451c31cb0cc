/**
 * The Transport contract, as a reusable vitest suite: every peer transport of raftkv (the TCP
 * transport, the in-memory one) must pass it. The interfaces are restated here structurally,
 * so that `@raftkv/testing` needs no dependency on `@raftkv/transport`; a `Transport` of that
 * package is a `ContractTransport`.
 */
import { describe, expect, it } from 'vitest';
import type { Entry, Message, MsgApp, MsgSnap, NodeId, SnapshotMeta } from '@raftkv/raft';

export interface ContractHandlers {
  onMessage(message: Message): void;
  onSnapshotStatus(to: NodeId, ok: boolean): void;
  onUnreachable(to: NodeId): void;
}

export interface ContractSnapshotStreams {
  open(meta: SnapshotMeta): AsyncIterable<Uint8Array>;
  receive(message: MsgSnap, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

export interface ContractTransport {
  readonly id: NodeId;
  start(handlers: ContractHandlers, snapshots: ContractSnapshotStreams): Promise<void>;
  send(message: Message): void;
  close(): Promise<void>;
}

/** Two transports that know each other as peers, not started yet; `close` releases everything the pair holds. */
export interface TransportPair {
  readonly a: ContractTransport;
  readonly b: ContractTransport;
  close(): Promise<void>;
}

export type MakeTransportPair = () => Promise<TransportPair>;

const CONF = { voters: ['a', 'b', 'c'], learners: ['d'] } as const;

/** Bytes 0..255 and an empty buffer: binary data must cross unchanged. */
function bytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let k = 0; k < size; k++) out[k] = (seed * 131 + k * 7) & 0xff;
  return out;
}

function entries(from: number, count: number, term: number): Entry[] {
  return Array.from({ length: count }, (_, k) => ({ index: from + k, term, type: 'normal' as const, data: bytes(k * 37, from + k) }));
}

/** One message of every type but MsgSnap (which has a test of its own), from -> to. */
export function sampleMessages(from: NodeId, to: NodeId): Message[] {
  const h = { from, to };
  return [
    { ...h, type: 'MsgApp', term: 3, index: 10, logTerm: 2, entries: [...entries(11, 2, 2), ...entries(13, 3, 3)], commit: 9 },
    { ...h, type: 'MsgApp', term: 3, index: 15, logTerm: 3, entries: [], commit: 15 },
    { ...h, type: 'MsgApp', term: 3, index: 15, logTerm: 3, entries: [{ index: 16, term: 3, type: 'conf-change', data: bytes(256, 1) }], commit: 15 },
    { ...h, type: 'MsgAppResp', term: 3, index: 15, reject: false, rejectHint: 0, logTerm: 0 },
    { ...h, type: 'MsgAppResp', term: 3, index: 15, reject: true, rejectHint: 12, logTerm: 2 },
    { ...h, type: 'MsgVote', term: 4, index: 15, logTerm: 3, transfer: false },
    { ...h, type: 'MsgPreVote', term: 5, index: 15, logTerm: 3, transfer: true },
    { ...h, type: 'MsgVoteResp', term: 4, reject: false },
    { ...h, type: 'MsgPreVoteResp', term: 5, reject: true },
    { ...h, type: 'MsgHeartbeat', term: 4, commit: 15, commitTerm: 3, readRound: 7, leaseTick: 1234 },
    { ...h, type: 'MsgHeartbeatResp', term: 4, readRound: 7, leaseTick: 1234 },
    { ...h, type: 'MsgTimeoutNow', term: 4 },
    { ...h, type: 'MsgReadIndex', term: 4, context: 'read-1 ✓' },
    { ...h, type: 'MsgReadIndexResp', term: 4, index: 15, context: '' },
    { ...h, type: 'MsgTransferLeader', term: 4, transferee: 'c' },
    { ...h, type: 'MsgLogLost', term: 4, lastIndex: 0 },
  ];
}

/** A value with every Uint8Array (Buffer included) turned into a plain array, for deep equality. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/**
 * Records what a transport reports, and lets a test wait for a condition on it (no sleeps).
 * Set `closed` when the transport is closed: a report after that fails the test.
 */
export class TransportRecorder implements ContractHandlers {
  readonly messages: Message[] = [];
  readonly snapshotStatus: { to: NodeId; ok: boolean }[] = [];
  readonly unreachable: NodeId[] = [];
  closed = false;
  #waiters: { ready: () => boolean; resolve: () => void }[] = [];

  onMessage(message: Message): void {
    this.#expectOpen('onMessage');
    this.messages.push(message);
    this.#check();
  }

  onSnapshotStatus(to: NodeId, ok: boolean): void {
    this.#expectOpen('onSnapshotStatus');
    this.snapshotStatus.push({ to, ok });
    this.#check();
  }

  onUnreachable(to: NodeId): void {
    this.#expectOpen('onUnreachable');
    this.unreachable.push(to);
    this.#check();
  }

  /** A report after close() is a contract violation (a plain throw: this is on the hot path). */
  #expectOpen(what: string): void {
    if (this.closed) throw new Error(`${what} called after close()`);
  }

  /** Resolves once `ready()` holds; re-checked after every report. */
  until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ ready, resolve }));
  }

  #check(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.ready()) return true;
      w.resolve();
      return false;
    });
  }
}

/** Snapshot streams whose behaviour each test sets: by default `receive` drains and `open` fails. */
export class ScriptedSnapshotStreams implements ContractSnapshotStreams {
  openImpl: (meta: SnapshotMeta) => AsyncIterable<Uint8Array> = () => {
    throw new Error('no snapshot to open in this test');
  };
  receiveImpl: (message: MsgSnap, chunks: AsyncIterable<Uint8Array>) => Promise<void> = async (_message, chunks) => {
    for await (const _chunk of chunks);
  };

  open(meta: SnapshotMeta): AsyncIterable<Uint8Array> {
    return this.openImpl(meta);
  }

  /** The MsgSnap of every stream whose `receive` resolved, in order. */
  readonly received: MsgSnap[] = [];

  async receive(message: MsgSnap, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await this.receiveImpl(message, chunks);
    this.received.push(message);
  }
}

interface Harness extends TransportPair {
  readonly ra: TransportRecorder;
  readonly rb: TransportRecorder;
  readonly sa: ScriptedSnapshotStreams;
  readonly sb: ScriptedSnapshotStreams;
}

/** The byte at `offset` of the test snapshot: cheap to generate and to check. */
function snapshotByte(offset: number): number {
  return (offset * 2654435761) >>> 24;
}

/** `total` bytes in pieces of `pieceBytes`, generated only when pulled. */
async function* lazySnapshot(total: number, pieceBytes: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < total; offset += pieceBytes) {
    const piece = new Uint8Array(Math.min(pieceBytes, total - offset));
    for (let k = 0; k < piece.length; k++) piece[k] = snapshotByte(offset + k);
    yield piece;
  }
}

function msgSnap(from: NodeId, to: NodeId, index: number): MsgSnap {
  // The core's MsgSnap may carry its own copy of the data: the transport streams open() instead.
  return { type: 'MsgSnap', from, to, term: 6, snapshot: { meta: { index, term: 5, confState: { voters: [...CONF.voters], learners: [...CONF.learners] } }, data: bytes(16, 9) } };
}

/** Defines the contract's tests for one transport implementation. */
export function runTransportContract(name: string, makePair: MakeTransportPair): void {
  const withPair = async (body: (h: Harness) => Promise<void>): Promise<void> => {
    const pair = await makePair();
    const h: Harness = { a: pair.a, b: pair.b, close: () => pair.close(), ra: new TransportRecorder(), rb: new TransportRecorder(), sa: new ScriptedSnapshotStreams(), sb: new ScriptedSnapshotStreams() };
    try {
      await Promise.all([pair.a.start(h.ra, h.sa), pair.b.start(h.rb, h.sb)]);
      await body(h);
    } finally {
      h.ra.closed = true;
      h.rb.closed = true;
      await pair.close();
    }
  };

  describe(`Transport contract: ${name}`, () => {
    it('delivers a message of every type intact and in order, both ways', () =>
      withPair(async ({ a, b, ra, rb }) => {
        const ab = [...sampleMessages(a.id, b.id), ...sampleMessages(a.id, b.id)];
        const ba = sampleMessages(b.id, a.id);
        for (const m of ab) a.send(m);
        for (const m of ba) b.send(m);
        await rb.until(() => rb.messages.length >= ab.length);
        await ra.until(() => ra.messages.length >= ba.length);
        expect(plain(rb.messages)).toEqual(plain(ab));
        expect(plain(ra.messages)).toEqual(plain(ba));
        for (const m of rb.messages) {
          if (m.type !== 'MsgApp') continue;
          for (const e of m.entries) expect(e.data).toBeInstanceOf(Uint8Array);
        }
      }));

    it('delivers 10,000 messages without loss or reordering when the receiver keeps up', () =>
      withPair(async ({ a, b, rb }) => {
        const total = 10_000;
        const window = 500; // like Raft's inflight window: never more than this unacknowledged
        for (let sent = 0; sent < total; ) {
          for (const end = sent + window; sent < end; sent++) {
            const m: MsgApp = { type: 'MsgApp', from: a.id, to: b.id, term: 1, index: sent, logTerm: 1, entries: entries(sent + 1, 1, 1), commit: sent };
            a.send(m);
          }
          await rb.until(() => rb.messages.length >= sent);
        }
        expect(rb.messages.length).toBe(total);
        const outOfPlace = rb.messages.findIndex((m, k) => m.type !== 'MsgApp' || m.index !== k);
        expect(outOfPlace, 'the first message out of place').toBe(-1);
      }));

    it('streams a multi-megabyte snapshot into receive() with its MsgSnap; onMessage never sees a MsgSnap', () =>
      withPair(async ({ a, b, ra, rb, sa, sb }) => {
        const totalBytes = 6 * 1024 * 1024 + 12_345;
        const opened: SnapshotMeta[] = [];
        sa.openImpl = (meta) => {
          opened.push(meta);
          return lazySnapshot(totalBytes, 256 * 1024 + 3);
        };
        let received = 0;
        const receivedMessages: MsgSnap[] = [];
        sb.receiveImpl = async (message, chunks) => {
          receivedMessages.push(message);
          for await (const chunk of chunks) {
            for (let k = 0; k < chunk.length; k++) {
              if (chunk[k] !== snapshotByte(received + k)) throw new Error(`snapshot byte ${received + k} differs`);
            }
            received += chunk.length;
          }
        };
        a.send(msgSnap(a.id, b.id, 42));
        await ra.until(() => ra.snapshotStatus.length > 0);
        expect(ra.snapshotStatus).toEqual([{ to: b.id, ok: true }]);
        expect(received).toBe(totalBytes);
        expect(opened.map((m) => m.index)).toEqual([42]);
        expect(receivedMessages.length).toBe(1);
        const snap = receivedMessages[0]!;
        expect(snap.snapshot.data.byteLength).toBe(0);
        expect(plain(snap)).toEqual(plain({ ...msgSnap(a.id, b.id, 42), snapshot: { ...msgSnap(a.id, b.id, 42).snapshot, data: new Uint8Array(0) } }));
        // The link still carries messages, and none of them is the MsgSnap.
        a.send({ type: 'MsgHeartbeat', from: a.id, to: b.id, term: 6, commit: 0, commitTerm: 0, readRound: 1, leaseTick: 0 });
        await rb.until(() => rb.messages.length > 0);
        expect(rb.messages.map((m) => m.type)).toEqual(['MsgHeartbeat']);
      }));

    it('reports a failed snapshot when receive() rejects, and delivers no MsgSnap', () =>
      withPair(async ({ a, b, ra, rb, sa, sb }) => {
        sa.openImpl = () => lazySnapshot(3 * 1024 * 1024, 64 * 1024);
        sb.receiveImpl = async (_message, chunks) => {
          let count = 0;
          for await (const _chunk of chunks) if (++count === 3) throw new Error('disk full (injected)');
        };
        a.send(msgSnap(a.id, b.id, 7));
        await ra.until(() => ra.snapshotStatus.length > 0);
        expect(ra.snapshotStatus).toEqual([{ to: b.id, ok: false }]);
        // The link still works, and no MsgSnap came through.
        a.send({ type: 'MsgHeartbeat', from: a.id, to: b.id, term: 6, commit: 0, commitTerm: 0, readRound: 1, leaseTick: 0 });
        await rb.until(() => rb.messages.length > 0);
        expect(rb.messages.map((m) => m.type)).toEqual(['MsgHeartbeat']);
      }));

    it('reports a failed snapshot when open() fails mid-stream, and delivers no MsgSnap', () =>
      withPair(async ({ a, b, ra, rb, sa }) => {
        sa.openImpl = async function* () {
          yield bytes(1000, 1);
          throw new Error('snapshot file vanished (injected)');
        };
        a.send(msgSnap(a.id, b.id, 8));
        await ra.until(() => ra.snapshotStatus.length > 0);
        expect(ra.snapshotStatus).toEqual([{ to: b.id, ok: false }]);
        a.send({ type: 'MsgHeartbeat', from: a.id, to: b.id, term: 6, commit: 0, commitTerm: 0, readRound: 2, leaseTick: 0 });
        await rb.until(() => rb.messages.length > 0);
        expect(rb.messages.map((m) => m.type)).toEqual(['MsgHeartbeat']);
      }));

    it('never throws on a send to an unknown or unreachable peer, and reports it unreachable', () =>
      withPair(async ({ a, b, ra, rb }) => {
        const hb = (to: NodeId, readRound: number): Message => ({ type: 'MsgHeartbeat', from: a.id, to, term: 1, commit: 0, commitTerm: 0, readRound, leaseTick: 0 });
        expect(() => a.send(hb('nobody', 1))).not.toThrow();
        expect(() => a.send(msgSnap(a.id, 'nobody', 3))).not.toThrow();
        a.send(hb(b.id, 2));
        await rb.until(() => rb.messages.length > 0);
        await ra.until(() => ra.snapshotStatus.length > 0 && ra.unreachable.includes('nobody'));
        expect(ra.snapshotStatus).toEqual([{ to: 'nobody', ok: false }]);
        expect(plain(rb.messages)).toEqual([plain(hb(b.id, 2))]);
        rb.closed = true;
        await b.close();
        for (let k = 0; k < 1000; k++) expect(() => a.send(hb(b.id, 3 + k))).not.toThrow();
        await ra.until(() => ra.unreachable.includes(b.id));
        a.send(msgSnap(a.id, b.id, 4));
        await ra.until(() => ra.snapshotStatus.some((s) => s.to === b.id));
        expect(ra.snapshotStatus.filter((s) => s.to === b.id)).toEqual([{ to: b.id, ok: false }]);
      }));

    it('closes cleanly: idempotent, quiet afterwards, and sending after close does not throw', () =>
      withPair(async ({ a, b, ra, rb }) => {
        a.send({ type: 'MsgHeartbeat', from: a.id, to: b.id, term: 1, commit: 0, commitTerm: 0, readRound: 1, leaseTick: 0 });
        await rb.until(() => rb.messages.length > 0);
        ra.closed = true;
        rb.closed = true;
        await Promise.all([a.close(), b.close()]);
        await a.close();
        expect(() => a.send({ type: 'MsgHeartbeat', from: a.id, to: b.id, term: 1, commit: 0, commitTerm: 0, readRound: 2, leaseTick: 0 })).not.toThrow();
        expect(() => b.send({ type: 'MsgTimeoutNow', from: b.id, to: a.id, term: 1 })).not.toThrow();
        // A turn of the event loop for anything that would still report (TransportRecorder fails the test if so).
        await new Promise<void>((resolve) => setImmediate(resolve));
      }));
  });
}
