/**
 * The Ready loop (`Replica`) driven step by step over the in-memory log and state machine: each
 * test decides when every I/O operation completes, so the interleavings that used to break a
 * node are reproduced exactly.
 */
import { describe, expect, it } from 'vitest';
import { MemoryKvStateMachine, encodeCommand } from '@raftkv/kv';
import { EntryType, ErrorCode, isRaftKvError, type Entry, type MsgSnap, type NodeId, type Term } from '@raftkv/raft';
import { Requests, settle, type WriteRequest } from '../src/replica/requests.js';
import { electWithFakeVotes, TestNode } from './replica-harness.js';

const VOTERS = ['n1', 'n2', 'n3'];

/** An image of a state machine that applied puts k1..k`count` at indexes 1..count in `term`. */
function image(count: number, term: Term) {
  const kv = new MemoryKvStateMachine();
  const entries: Entry[] = [];
  for (let index = 1; index <= count; index++) {
    entries.push({ index, term, type: EntryType.Normal, data: encodeCommand({ type: 'put', key: `k${index}`, value: new TextEncoder().encode(`v${index}`) }) });
  }
  kv.apply(entries);
  return kv.exportImage();
}

function snap(from: NodeId, to: NodeId, term: Term, index: number, indexTerm: Term): MsgSnap {
  return { type: 'MsgSnap', from, to, term, snapshot: { meta: { index, term: indexTerm, confState: { voters: VOTERS, learners: [] } }, data: new Uint8Array(0) } };
}

function outcome(): { done: (error: Error | null) => void; error: () => Error | null | undefined } {
  let result: Error | null | undefined;
  return { done: (error) => (result = error), error: () => result };
}

describe('Replica: incoming snapshots', () => {
  it('a second snapshot stream while the first waits to be installed is refused, and the first installs (a receiver used to crash here)', () => {
    // The old loop dropped the staged image when a new stream began, although the core already
    // held the first MsgSnap; the next Ready then failed "snapshot ... to install, but none is staged".
    const f = new TestNode('n2', VOTERS);
    f.start();
    const first = outcome();
    f.r.receiveSnapshot(snap('n1', 'n2', 1, 8, 1), image(10, 1), first.done);
    f.completeNext('stage'); // staged and stepped: the core holds the snapshot; the loop starts installing it
    expect(first.error()).toBeNull();
    expect(f.pending.map((c) => c.operation)).toEqual(['install']);
    const second = outcome();
    f.r.receiveSnapshot(snap('n3', 'n2', 2, 9, 1), image(9, 1), second.done);
    expect(isRaftKvError(second.error(), ErrorCode.SNAPSHOT_TRANSFER_FAILED)).toBe(true);
    f.drain();
    expect(f.fatal).toBeNull();
    expect(f.sm.appliedIndex).toBe(10);
    expect(f.value('k10')).toBe('v10');
    expect(f.log.firstIndex()).toBe(9);
    // Once installed, the next stream is taken.
    const third = outcome();
    f.r.receiveSnapshot(snap('n3', 'n2', 2, 12, 2), image(12, 2), third.done);
    f.drain();
    expect(third.error()).toBeNull();
    expect(f.fatal).toBeNull();
    expect(f.sm.appliedIndex).toBe(12);
  });

  it('an image behind the state machine (from another leader) keeps the state machine and records the snapshot in the log', () => {
    // The state machine can run ahead of the core's commit index: a leader streams its state as it
    // is when the stream starts, past its snapshot's index. A later leader's image may be behind
    // that. Installing it used to fail an assertion ("snapshot at 8 is behind the applied index 10").
    const f = new TestNode('n2', VOTERS);
    f.start();
    f.r.receiveSnapshot(snap('n1', 'n2', 1, 5, 1), image(10, 1), () => undefined);
    f.drain();
    expect(f.sm.appliedIndex).toBe(10);
    expect(f.r.basicStatus().commit).toBe(5);
    const behind = outcome();
    f.r.receiveSnapshot(snap('n3', 'n2', 2, 7, 1), image(8, 1), behind.done);
    f.drain();
    expect(behind.error()).toBeNull();
    expect(f.fatal).toBeNull();
    expect(f.sm.appliedIndex).toBe(10);
    expect(f.value('k10')).toBe('v10');
    expect(f.log.firstIndex()).toBe(8);
    expect(f.r.basicStatus().commit).toBe(7);
  });

  it('a snapshot at or below the commit index is not staged, but the core answers the leader with its commit index', () => {
    const f = new TestNode('n2', VOTERS);
    f.start();
    f.r.receiveSnapshot(snap('n1', 'n2', 1, 6, 1), image(6, 1), () => undefined);
    f.drain();
    f.takeSent();
    const again = outcome();
    f.r.receiveSnapshot(snap('n1', 'n2', 1, 6, 1), image(6, 1), again.done);
    f.drain();
    expect(isRaftKvError(again.error(), ErrorCode.SNAPSHOT_TRANSFER_FAILED)).toBe(true);
    expect(f.pending).toEqual([]);
    expect(f.takeSent().filter((m) => m.type === 'MsgAppResp')).toEqual([expect.objectContaining({ to: 'n1', index: 6, reject: false })]);
  });
});

describe('Replica: durability across crashes', () => {
  it('the state machine is synced before the log compacts: a power loss cannot leave it behind the log', () => {
    const n = new TestNode('n1', ['n1'], { snapshotEveryEntries: 5, snapshotCatchupEntries: 0 });
    n.start();
    n.r.campaign();
    n.drain();
    for (let k = 1; k <= 12; k++) {
      n.put(`key${k}`, `value${k}`);
      n.drain();
    }
    expect(n.log.firstIndex()).toBeGreaterThan(5);
    // Power loss: the log keeps what it synced (every write is synced here), the state machine
    // loses every apply it did not sync.
    n.log.crash(n.log.writtenCount);
    n.sm.crash(0);
    expect(n.sm.appliedIndex).toBeGreaterThanOrEqual(n.log.firstIndex() - 1);
    n.start();
    n.r.campaign();
    n.drain();
    expect(n.value('key12')).toBe('value12');
  });

  it('a state machine behind the log’s first index is refused at start with an error that says so', () => {
    const n = new TestNode('n1', ['n1'], { snapshotEveryEntries: 5, snapshotCatchupEntries: 0 });
    n.start();
    n.r.campaign();
    n.drain();
    for (let k = 1; k <= 12; k++) {
      n.put(`key${k}`, `value${k}`);
      n.drain();
    }
    // As if the state machine's directory were lost: a fresh one under a compacted log.
    const fresh = new TestNode('n1', ['n1']);
    Object.defineProperty(fresh, 'log', { value: n.log });
    let error: unknown = null;
    try {
      fresh.start();
    } catch (e) {
      error = e;
    }
    expect(isRaftKvError(error, ErrorCode.STORAGE_CORRUPT)).toBe(true);
    expect((error as Error).message).toMatch(/applied up to index 0, but the log begins after index \d+/);
  });

  it('after a restart the term is the persisted one (it used to read 0 until the hard state changed)', () => {
    const n = new TestNode('n2', VOTERS);
    n.start();
    n.r.step({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 5, commit: 0, readRound: 0, commitTerm: 0, leaseTick: 0 });
    n.drain();
    expect(n.r.term).toBe(5);
    n.log.crash(n.log.writtenCount);
    n.start();
    expect(n.r.term).toBe(5);
    // A heartbeat of the same term changes no hard state; the leader is known, with its term.
    n.r.step({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 5, commit: 0, readRound: 0, commitTerm: 0, leaseTick: 0 });
    n.drain();
    expect(n.r.leader).toBe('n1');
    expect(n.r.term).toBe(5);
  });
});

describe('Replica: requests', () => {
  it('a read asked before a restart cannot be answered by a late response after it: contexts are unique per incarnation', () => {
    const f = new TestNode('n2', VOTERS);
    f.start();
    f.r.step({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 1, commit: 0, readRound: 0, commitTerm: 0, leaseTick: 0 });
    f.drain();
    f.r.read('linearizable', () => undefined);
    f.drain();
    const before = f.takeSent().find((m) => m.type === 'MsgReadIndex');
    expect(before).toBeDefined();
    f.log.crash(f.log.writtenCount);
    f.start();
    f.r.step({ type: 'MsgHeartbeat', from: 'n1', to: 'n2', term: 1, commit: 0, readRound: 0, commitTerm: 0, leaseTick: 0 });
    f.drain();
    const read = outcome();
    f.r.read('linearizable', read.done);
    f.drain();
    const after = f.takeSent().find((m) => m.type === 'MsgReadIndex');
    expect(after?.type === 'MsgReadIndex' && before?.type === 'MsgReadIndex' && after.context !== before.context).toBe(true);
    // The old leader answers the read from before the restart: it must not serve the new one.
    f.r.step({ type: 'MsgReadIndexResp', from: 'n1', to: 'n2', term: 1, index: 0, context: before!.type === 'MsgReadIndex' ? before!.context : '' });
    f.drain();
    expect(read.error()).toBeUndefined();
    f.r.step({ type: 'MsgReadIndexResp', from: 'n1', to: 'n2', term: 1, index: 0, context: after!.type === 'MsgReadIndex' ? after!.context : '' });
    f.drain();
    expect(read.error()).toBeNull();
  });

  it('a write whose index was taken by a later proposal of this node: its timeout removes only itself', () => {
    // n1 leads term 1 and proposes X (2) and A (3); a leader of term 2 truncates n1's log back to
    // index 1; n1 leads term 3 and proposes B, which lands at index 3 again. The old node kept one
    // pending write per index: B replaced A, and A's timeout then deleted B's record, so B, though
    // applied, was answered RAFTKV_TIMEOUT.
    // A long election timeout: the clock moves past the request deadline without check-quorum deposing n1.
    const n = new TestNode('n1', VOTERS, { requestTimeoutMs: 1_000, electionTimeoutTicks: 1_000 });
    n.start();
    electWithFakeVotes(n, 'n2');
    const x = outcome();
    const a = outcome();
    n.put('x', '1', x.done);
    n.put('a', '1', a.done);
    n.drain();
    n.takeSent();
    n.r.step({ type: 'MsgApp', from: 'n3', to: 'n1', term: 2, index: 0, logTerm: 0, entries: [{ index: 1, term: 2, type: 'normal', data: new Uint8Array(0) }], commit: 0 });
    n.drain();
    expect(n.r.basicStatus().lastIndex).toBe(1);
    n.nowMs = 900;
    electWithFakeVotes(n, 'n2');
    const b = outcome();
    n.put('b', '1', b.done);
    n.drain();
    expect(n.r.basicStatus().lastIndex).toBe(3);
    n.nowMs = 1_001;
    n.r.onTimer(); // the deadlines of X and A pass
    expect(isRaftKvError(x.error(), ErrorCode.TIMEOUT)).toBe(true);
    expect(isRaftKvError(a.error(), ErrorCode.TIMEOUT)).toBe(true);
    n.r.step({ type: 'MsgAppResp', from: 'n2', to: 'n1', term: n.r.term, index: 3, reject: false, rejectHint: 0, logTerm: 0 });
    n.drain();
    expect(b.error()).toBeNull();
    expect(n.value('b')).toBe('1');
  });

  it('Requests: writes at one index are kept side by side; expiry removes exactly the expired one', () => {
    const requests = new Requests();
    const results: string[] = [];
    const write = (term: Term, deadlineMs: number): WriteRequest => ({
      kind: 'write',
      index: 7,
      term,
      deadlineMs,
      done: (error) => results.push(`${term}:${error === null ? 'ok' : 'error'}`),
      settled: false,
    });
    requests.addWrite(write(1, 100));
    requests.addWrite(write(3, 200));
    for (const expired of requests.takeExpired(150)) settle(expired, new Error('timeout'));
    expect(results).toEqual(['1:error']);
    const left = requests.takeWrites(7);
    expect(left.map((w) => w.term)).toEqual([3]);
    expect(requests.count).toBe(0);
  });
});
