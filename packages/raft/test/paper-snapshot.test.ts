/**
 * Log compaction and InstallSnapshot: Raft paper section 7.
 */
import { describe, expect, it } from 'vitest';
import { describeMessage, ErrorCode, MemoryStorage, type Message, type MsgSnap, type Snapshot } from '../src/index.js';
import { bytes, entry, expectRaftKvError, Network, type Applied } from './harness.js';

const VOTERS = { voters: ['n1', 'n2', 'n3'], learners: [] };

/** n1 leads; n3 missed v0..v9 (indexes 2..11), and n1 compacted its log through index 11. */
function laggingFollowerBehindSnapshot(): Network {
  const net = new Network();
  net.elect('n1');
  const rejoin = net.isolate('n3');
  for (let k = 0; k < 10; k++) net.propose('n1', `v${k}`);
  net.stabilize();
  const snap = net.compact('n1');
  expect(snap.meta).toMatchObject({ index: 11, term: 1 });
  expect(net.status('n1').firstIndex).toBe(12);
  rejoin();
  net.clearLog();
  return net;
}

describe('7 log compaction', () => {
  it('7: snapshotMeta(applied) + MemoryStorage.compact drop the covered entries, and the node keeps working', () => {
    const net = new Network();
    net.elect('n1');
    for (let k = 0; k < 10; k++) net.propose('n1', `v${k}`);
    net.stabilize();
    const { applied } = net.status('n1');
    expect(applied).toBe(11);
    expectRaftKvError(() => net.node('n1').snapshotMeta(applied + 1), ErrorCode.LOG_UNAVAILABLE);

    const snap = net.compact('n1', 8);
    expect(snap.meta).toEqual({ index: 8, term: 1, confState: VOTERS });
    expect(net.storage('n1').firstIndex()).toBe(9);
    expect(net.storage('n1').snapshot().meta.index).toBe(8);
    expect(net.status('n1')).toMatchObject({ firstIndex: 9, lastIndex: 11 });
    expect(net.node('n1').termAt(8)).toBe(1); // the snapshot's own index keeps its term
    expect(net.node('n1').termAt(7)).toBeUndefined();
    expectRaftKvError(() => net.node('n1').snapshotMeta(5), ErrorCode.LOG_COMPACTED);

    net.propose('n1', 'after');
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual([...Array.from({ length: 10 }, (_, k) => `v${k}`), 'after']);
  });
});

describe('7 InstallSnapshot', () => {
  it('7: a follower whose next entries are compacted receives MsgSnap, and the leader sends nothing more while it waits', () => {
    const net = laggingFollowerBehindSnapshot();
    const lost = net.drop((m) => m.type === 'MsgSnap');
    net.heartbeat('n1');
    net.stabilize();
    const snaps = net.sentWhere({ type: 'MsgSnap', from: 'n1', to: 'n3' }) as MsgSnap[];
    expect(snaps.map(describeMessage)).toEqual(['n1->n3 MsgSnap Term:1 Snapshot:1/11 Voters:n1,n2,n3']);
    expect(net.status('n1').progress?.get('n3')).toMatchObject({ state: 'snapshot', pendingSnapshot: 11 });

    // Waiting: heartbeats and new entries do not make it re-send the snapshot or send appends.
    const sentBefore = net.sent.length;
    for (let k = 0; k < 5; k++) {
      net.propose('n1', `w${k}`);
      net.heartbeat('n1');
      net.stabilize();
    }
    const toN3 = net.sent.slice(sentBefore).filter((m) => m.from === 'n1' && m.to === 'n3');
    expect(new Set(toN3.map((m) => m.type))).toEqual(new Set(['MsgHeartbeat']));
    expect(net.status('n1').progress?.get('n3')?.state).toBe('snapshot');

    // The transport reports the failure: the leader probes again and, the entries being compacted, sends a new snapshot.
    net.node('n1').reportSnapshot('n3', false);
    expect(net.status('n1').progress?.get('n3')?.state).toBe('probe');
    lost();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.sentWhere({ type: 'MsgSnap', from: 'n1', to: 'n3' })).toHaveLength(2);
    expect(net.status('n1').progress?.get('n3')).toMatchObject({ state: 'replicate', match: 16 });

    // After installing it, n3's log continues from the snapshot.
    expect(net.storage('n3').snapshot().meta).toMatchObject({ index: 11, term: 1 });
    expect(net.status('n3')).toMatchObject({ firstIndex: 12, lastIndex: 16, commit: 16, applied: 16 });
    expect(net.applied('n3')).toEqual(net.applied('n1'));
    net.propose('n1', 'more');
    net.stabilize();
    expect(net.applied('n3')).toEqual(net.applied('n1'));
    expect(net.node('n3').entries(12, 18).map((e) => e.index)).toEqual([12, 13, 14, 15, 16, 17]);
  });

  it('7: after reportSnapshot(success) the leader probes from just after the snapshot until the follower answers', () => {
    const net = laggingFollowerBehindSnapshot();
    const held: Message[] = []; // the transport holds the snapshot while it streams it
    const release = net.drop((m) => m.type === 'MsgSnap' && held.push(m) > 0);
    net.heartbeat('n1');
    net.stabilize();
    expect(held.map(describeMessage)).toEqual(['n1->n3 MsgSnap Term:1 Snapshot:1/11 Voters:n1,n2,n3']);
    release();
    net.node('n1').reportSnapshot('n3', true);
    expect(net.status('n1').progress?.get('n3')).toMatchObject({ state: 'probe', next: 12 });
    net.deliver(held[0]!);
    net.stabilize();
    expect(net.status('n1').progress?.get('n3')).toMatchObject({ state: 'replicate', match: 11 });
    expect(net.applied('n3')).toEqual(net.applied('n1'));
  });

  it('7: a snapshot whose last entry the follower already has keeps the entries that follow it', () => {
    const net = new Network({ logs: { n2: [1, 1, 1, 1, 1] }, hardStates: { n2: { commit: 2 } } });
    const snapshot: Snapshot = { meta: { index: 3, term: 1, confState: VOTERS }, data: bytes('[]') };
    net.node('n2').step({ type: 'MsgSnap', from: 'n1', to: 'n2', term: 1, snapshot });
    const rd = net.handleReady('n2');
    expect(rd?.snapshot).toBeNull();
    expect(rd?.messagesAfterPersist.map(describeMessage)).toEqual(['n2->n1 MsgAppResp Term:1 Index:3']);
    expect(net.status('n2')).toMatchObject({ firstIndex: 1, lastIndex: 5, commit: 3 });
    expect(net.storage('n2').lastIndex()).toBe(5);
  });

  it('7: a snapshot that conflicts with the follower’s log replaces the whole log', () => {
    const net = new Network({ logs: { n2: [1, 1, 1, 1, 1] } });
    const records: Applied[] = [1, 2, 3, 4].map((i) => ({ index: i, term: i < 4 ? 1 : 2, data: `s${i}` }));
    const snapshot: Snapshot = { meta: { index: 4, term: 2, confState: VOTERS }, data: bytes(JSON.stringify(records)) };
    net.node('n2').step({ type: 'MsgSnap', from: 'n1', to: 'n2', term: 2, snapshot });
    const rd = net.handleReady('n2');
    expect(rd?.snapshot?.meta).toMatchObject({ index: 4, term: 2 });
    expect(rd?.messagesAfterPersist.map(describeMessage)).toEqual(['n2->n1 MsgAppResp Term:2 Index:4']);
    expect(net.status('n2')).toMatchObject({ firstIndex: 5, lastIndex: 4, commit: 4, applied: 4 });
    expect(net.storage('n2').snapshot().meta.index).toBe(4);
    expect(net.storage('n2').lastIndex()).toBe(4);
    expect(net.applied('n2')).toEqual(['s1', 's2', 's3', 's4']);
  });

  it('7: RawNode.pendingSnapshot names a snapshot the core accepted until advance(), and is null for one it did not take', () => {
    const net = new Network({ logs: { n2: [1, 1, 1, 1, 1] }, hardStates: { n2: { commit: 2 } } });
    const n2 = net.node('n2');
    expect(n2.pendingSnapshot()).toBeNull();
    // It holds entry 1/3: it keeps its log and only commits (paper section 7).
    n2.step({ type: 'MsgSnap', from: 'n1', to: 'n2', term: 1, snapshot: { meta: { index: 3, term: 1, confState: VOTERS }, data: bytes('[]') } });
    expect(n2.pendingSnapshot()).toBeNull();
    net.handleReady('n2');
    // A conflicting snapshot replaces the log: pending until the Ready carrying it is acknowledged.
    const meta = { index: 4, term: 2, confState: VOTERS };
    const records: Applied[] = [1, 2, 3, 4].map((i) => ({ index: i, term: i < 4 ? 1 : 2, data: `s${i}` }));
    n2.step({ type: 'MsgSnap', from: 'n1', to: 'n2', term: 2, snapshot: { meta, data: bytes(JSON.stringify(records)) } });
    expect(n2.pendingSnapshot()).toEqual(meta);
    const rd = n2.ready();
    expect(rd.snapshot?.meta).toEqual(meta);
    expect(n2.pendingSnapshot()).toEqual(meta);
    net.persist('n2', rd);
    net.apply('n2', rd);
    n2.advance();
    expect(n2.pendingSnapshot()).toBeNull();
    // An older snapshot is refused.
    n2.step({ type: 'MsgSnap', from: 'n1', to: 'n2', term: 2, snapshot: { meta: { index: 3, term: 1, confState: VOTERS }, data: bytes('[]') } });
    expect(n2.pendingSnapshot()).toBeNull();
  });

  it('7: MemoryStorage.applySnapshot keeps the stored entries after a snapshot whose last entry it holds', () => {
    const storage = new MemoryStorage(VOTERS);
    storage.append([1, 2, 3, 4, 5].map((i) => entry(1, i)));
    storage.applySnapshot({ meta: { index: 3, term: 1, confState: VOTERS }, data: new Uint8Array(0) });
    expect([storage.firstIndex(), storage.lastIndex()]).toEqual([4, 5]);
    storage.applySnapshot({ meta: { index: 6, term: 2, confState: VOTERS }, data: new Uint8Array(0) });
    expect([storage.firstIndex(), storage.lastIndex()]).toEqual([7, 6]);
  });
});

describe('7 restart from a snapshot', () => {
  it('7: a restarted node starts from its snapshot plus the log after it, and replays only that log', () => {
    const net = new Network();
    net.elect('n1');
    for (let k = 0; k < 6; k++) net.propose('n1', `v${k}`);
    net.stabilize();
    net.compact('n2', 5);
    net.propose('n1', 'v6');
    net.stabilize();

    net.crash('n2');
    net.restart('n2');
    // The state machine is back to the snapshot; the entries after it are committed but not yet applied.
    expect(net.applied('n2')).toEqual(['v0', 'v1', 'v2', 'v3']);
    expect(net.status('n2')).toMatchObject({ firstIndex: 6, lastIndex: 8, applied: 5, commit: 8 });
    net.stabilize();
    expect(net.applied('n2')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6']);
    expect(net.status('n2').applied).toBe(8);
  });

  it('7: a follower that installed a leader snapshot restarts from it too', () => {
    const net = laggingFollowerBehindSnapshot();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.storage('n3').snapshot().meta.index).toBe(11);
    net.crash('n3');
    net.restart('n3');
    expect(net.status('n3')).toMatchObject({ firstIndex: 12, applied: 11 });
    expect(net.applied('n3')).toEqual(net.applied('n1'));
    net.propose('n1', 'x');
    net.stabilize();
    expect(net.applied('n3')).toEqual(net.applied('n1'));
  });
});
