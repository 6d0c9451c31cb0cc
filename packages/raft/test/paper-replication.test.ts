/**
 * Log replication: Raft paper section 5.3 (and the no-op of section 8), thesis sections 3.5
 * and 10.2.1 (pipelining, batching, writing to disk in parallel).
 */
import { describe, expect, it } from 'vitest';
import { describeEntry, describeMessage, entryBytes, ErrorCode, Role, type Message, type MsgApp, type MsgAppResp, type Ready } from '../src/index.js';
import { entry, expectRaftKvError, msg, Network } from './harness.js';

const appendsTo = (net: Network, to: string): MsgApp[] => net.sentWhere({ type: 'MsgApp', from: net.leader() ?? 'n1', to }) as MsgApp[];
const described = (ms: readonly Message[]): string[] => ms.map(describeMessage);
const terms = (net: Network, id: string): number[] => net.node(id).entries(net.status(id).firstIndex, net.status(id).lastIndex + 1).map((e) => e.term);

describe('5.3 replication basics', () => {
  it('8: a new leader appends a no-op entry of its own term, and committing it commits everything before it', () => {
    const net = new Network({ logs: { n1: [1, 1], n2: [1, 1], n3: [1] }, hardStates: { n1: { term: 1 }, n2: { term: 1 }, n3: { term: 1 } } });
    net.tickPastBootLease();
    net.elect('n1');
    const term = net.status('n1').term;
    const [noop] = net.node('n1').entries(3, 4);
    expect(noop).toMatchObject({ term, index: 3 });
    expect(noop?.data.byteLength).toBe(0);
    for (const id of net.ids) {
      expect(net.status(id).commit).toBe(3);
      expect(net.appliedEntries(id).map((a) => `${a.term}/${a.index}`)).toEqual(['1/1', '1/2', `${term}/3`]);
    }
  });

  it('5.3: commands proposed to the leader are applied by every node in log order', () => {
    const net = new Network({ size: 5 });
    net.elect('n1');
    expect(net.propose('n1', 'a')).toEqual({ index: 2, term: 1 });
    expect(net.propose('n1', 'b')).toEqual({ index: 3, term: 1 });
    expect(net.propose('n1', 'c')).toEqual({ index: 4, term: 1 });
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['a', 'b', 'c']);
  });

  it('5.1: propose on a follower throws RaftKvError RAFTKV_NOT_LEADER with the known leader as hint', () => {
    const net = new Network();
    expect(expectRaftKvError(() => net.propose('n2', 'x'), ErrorCode.NOT_LEADER).leaderHint).toBeNull();
    net.elect('n1');
    const error = expectRaftKvError(() => net.propose('n2', 'x'), ErrorCode.NOT_LEADER);
    expect(error.code).toBe('RAFTKV_NOT_LEADER');
    expect(error.leaderHint).toBe('n1');
  });
});

describe('5.3 AppendEntries consistency check', () => {
  // n2's log: 1/1 1/2 2/3, in term 2. The leader n1 is of term 2 too.
  const follower = (): Network => new Network({ logs: { n2: [1, 1, 2] } });
  const reply = (net: Network, m: MsgApp): string[] => {
    net.node('n2').step(m);
    return described(net.handleReady('n2')?.messagesAfterPersist ?? []);
  };

  it('5.3: a follower refuses entries whose predecessor it does not have, and says where its log may match', () => {
    const net = follower();
    expect(reply(net, msg.app('n1', 'n2', 2, { index: 4, term: 2 }, [entry(2, 5)]))).toEqual(['n2->n1 MsgAppResp Term:2 Rejected:4 Hint:2/3']);
    expect(net.status('n2').lastIndex).toBe(3);
  });

  it('5.3: a follower refuses entries whose predecessor has another term', () => {
    const net = follower();
    // (A leader of term 3 holding 3/3, where the follower holds 2/3.)
    expect(reply(net, msg.app('n1', 'n2', 3, { index: 3, term: 3 }, [entry(3, 4)]))).toEqual(['n2->n1 MsgAppResp Term:3 Rejected:3 Hint:2/3']);
    expect(reply(net, msg.app('n1', 'n2', 3, { index: 2, term: 2 }, [entry(2, 3)]))).toEqual(['n2->n1 MsgAppResp Term:3 Rejected:2 Hint:1/2']);
    expect(terms(net, 'n2')).toEqual([1, 1, 2]);
  });

  it('5.3: a follower accepts entries whose predecessor matches and acknowledges only after persisting them', () => {
    const net = follower();
    net.node('n2').step(msg.app('n1', 'n2', 2, { index: 3, term: 2 }, [entry(2, 4, 'x')], 4));
    const rd = net.node('n2').ready();
    expect(rd.entries.map(describeEntry)).toEqual(['2/4']);
    expect(rd.messages).toEqual([]);
    expect(described(rd.messagesAfterPersist)).toEqual(['n2->n1 MsgAppResp Term:2 Index:4']);
    expect(rd.committedEntries.map(describeEntry)).toEqual(['1/1', '1/2', '2/3', '2/4']);
  });

  it('5.3: an empty MsgApp whose predecessor matches does not truncate the entries after it', () => {
    const net = follower();
    expect(reply(net, msg.app('n1', 'n2', 2, { index: 2, term: 1 }, []))).toEqual(['n2->n1 MsgAppResp Term:2 Index:2']);
    expect(terms(net, 'n2')).toEqual([1, 1, 2]);
  });
});

describe('5.3 truncation only on conflict', () => {
  it('5.3: a duplicated or reordered MsgApp whose entries match changes nothing; a conflict truncates from the first conflicting entry only', () => {
    const net = new Network();
    const n2 = net.node('n2');
    const first = msg.app('n1', 'n2', 1, { index: 0, term: 0 }, [entry(1, 1), entry(1, 2, 'a'), entry(1, 3, 'b')]);
    n2.step(first);
    expect(net.handleReady('n2')?.entries.length).toBe(3);

    // An older MsgApp carrying only a prefix arrives late, then the first one again.
    n2.step(msg.app('n1', 'n2', 1, { index: 0, term: 0 }, [entry(1, 1)]));
    n2.step(first);
    const rd = net.handleReady('n2');
    expect(rd?.entries).toEqual([]);
    expect(described(rd?.messagesAfterPersist ?? [])).toEqual(['n2->n1 MsgAppResp Term:1 Index:1', 'n2->n1 MsgAppResp Term:1 Index:3']);
    expect(net.storage('n2').lastIndex()).toBe(3);
    expect(terms(net, 'n2')).toEqual([1, 1, 1]);

    // A leader of term 2 whose log has 1/2 but 2/3: only index 3 is replaced.
    n2.step(msg.app('n3', 'n2', 2, { index: 1, term: 1 }, [entry(1, 2, 'a'), entry(2, 3, 'c'), entry(2, 4, 'd')]));
    const rd2 = net.handleReady('n2');
    expect(rd2?.entries.map(describeEntry)).toEqual(['2/3', '2/4']);
    expect(terms(net, 'n2')).toEqual([1, 1, 2, 2]);
    expect(net.storage('n2').entries(1, 5, Infinity).map(describeEntry)).toEqual(['1/1 noop', '1/2', '2/3', '2/4']);
  });
});

describe('5.3 fast back-off (thesis 5.3)', () => {
  const rep = (n: number, term: number): number[] => Array<number>(n).fill(term);
  const cases = [
    { name: 'a long divergent log of several old terms', follower: [1, 1, 1, ...rep(4, 2), ...rep(5, 3), ...rep(8, 4)], leader: [1, 1, 1, ...rep(12, 5)] },
    { name: 'a divergent log longer than the leader’s, of one old term', follower: [1, ...rep(60, 2)], leader: [1, ...rep(10, 3)] },
    { name: 'a log far behind the leader’s', follower: [1], leader: [1, ...rep(20, 2), ...rep(20, 3), ...rep(20, 4)] },
    { name: 'a divergent log with many short terms', follower: [1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6], leader: [1, 2, 7, 7, 7, 7, 7, 7, 7, 7] },
  ];
  for (const c of cases) {
    it(`5.3: a follower with ${c.name} converges in a few rejections (at most its divergent terms + 2)`, () => {
      const net = new Network({ logs: { n1: c.leader, n2: c.leader, n3: c.follower } });
      net.tickPastBootLease();
      net.elect('n1');
      net.stabilize();
      expect(terms(net, 'n3')).toEqual(terms(net, 'n1'));
      expect(net.status('n3').commit).toBe(net.status('n1').commit);
      let common = 0;
      while (common < c.follower.length && c.follower[common] === c.leader[common]) common++;
      const divergentTerms = new Set(c.follower.slice(common)).size;
      const rejections = (net.sentWhere({ type: 'MsgAppResp', from: 'n3' }) as MsgAppResp[]).filter((m) => m.reject);
      expect(rejections.length).toBeGreaterThan(0);
      expect(rejections.length).toBeLessThanOrEqual(divergentTerms + 2);
    });
  }
});

describe('5.3 pipelining and batching (thesis 10.2.1)', () => {
  it('5.3: with inflightCountMax 4, at most 4 MsgApp with entries are outstanding to a follower that does not answer', () => {
    const net = new Network({ config: { inflightCountMax: 4 } });
    net.elect('n1');
    expect(net.status('n1').progress?.get('n3')?.state).toBe('replicate');
    net.clearLog();
    const silence = net.drop((m) => m.from === 'n3');
    for (let k = 0; k < 20; k++) {
      net.propose('n1', `v${k}`);
      net.stabilize();
      expect(net.status('n1').progress?.get('n3')?.inflightCount).toBeLessThanOrEqual(4);
    }
    expect(appendsTo(net, 'n3').filter((m) => m.entries.length > 0)).toHaveLength(4);
    expect(net.status('n1').progress?.get('n3')).toMatchObject({ state: 'replicate', inflightCount: 4 });
    // n2 kept up: everything committed without n3.
    expect(net.applied('n2')).toHaveLength(20);

    silence();
    net.heartbeat('n1'); // n3's answer to the heartbeat unblocks the window
    net.stabilize();
    expect(net.applied('n3')).toEqual(net.applied('n1'));
    expect(terms(net, 'n3')).toEqual(terms(net, 'n1'));
  });

  it('5.3: MsgApp batches entries up to msgBytesMax; only a single entry may exceed it', () => {
    const msgBytesMax = 200; // two 50-byte entries (74 bytes each with overhead) fit, three do not
    const net = new Network({ config: { msgBytesMax } });
    net.elect('n1');
    const heal = net.isolate('n3');
    for (let k = 0; k < 20; k++) net.propose('n1', `${String(k).padStart(2, '0')}${'.'.repeat(48)}`);
    net.propose('n1', 'L'.repeat(300));
    net.propose('n1', 'tail');
    net.stabilize();
    heal();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.applied('n3')).toEqual(net.applied('n1'));
    expect(net.applied('n3')).toHaveLength(22);
    const catchUp = appendsTo(net, 'n3').filter((m) => m.entries.length > 0);
    for (const m of catchUp) {
      const size = m.entries.reduce((sum, e) => sum + entryBytes(e), 0);
      if (m.entries.length > 1) expect(size).toBeLessThanOrEqual(msgBytesMax);
    }
    expect(Math.max(...catchUp.map((m) => m.entries.length))).toBe(2);
    expect(catchUp.some((m) => m.entries.length === 1 && entryBytes(m.entries[0]!) > msgBytesMax)).toBe(true);
  });
});

describe('5.3 commit needs a quorum of durable copies (thesis 10.2.1)', () => {
  const setup = (): { net: Network; rd: Ready } => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'x');
    const rd = net.node('n1').ready();
    // The leader's appends may leave before its own write: they are in `messages`.
    expect(rd.entries.map(describeEntry)).toEqual(['1/2']);
    expect(described(rd.messages)).toEqual([
      'n1->n2 MsgApp Term:1 Log:1/1 Commit:1 Entries:[1/2]',
      'n1->n3 MsgApp Term:1 Log:1/1 Commit:1 Entries:[1/2]',
    ]);
    expect(rd.messagesAfterPersist).toEqual([]);
    net.send(rd.messages);
    return { net, rd };
  };

  it('5.3: one follower’s ack is not enough while the leader’s own copy is not durable; the leader’s advance() completes the quorum', () => {
    const { net, rd } = setup();
    net.drop((m) => m.to === 'n3');
    net.stabilize(); // n2 persists and acks; n1's Ready is still in flight
    expect(net.status('n2').lastIndex).toBe(2);
    expect(net.status('n1').commit).toBe(1);
    net.persist('n1', rd);
    net.apply('n1', rd);
    net.node('n1').advance();
    expect(net.status('n1').commit).toBe(2);
    net.stabilize();
    expect(net.applied('n1')).toEqual(['x']);
    expect(net.applied('n2')).toEqual(['x']);
  });

  it('5.3: two followers’ acks commit the entry before the leader’s own write completes', () => {
    const { net, rd } = setup();
    net.stabilize();
    expect(net.status('n1').commit).toBe(2);
    net.persist('n1', rd);
    net.apply('n1', rd);
    net.node('n1').advance();
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['x']);
  });

  it('5.3: the leader’s own durable copy alone does not commit in a 3-node cluster', () => {
    const { net, rd } = setup();
    net.queue = []; // every append is lost
    net.persist('n1', rd);
    net.apply('n1', rd);
    net.node('n1').advance();
    net.stabilize();
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, commit: 1, lastIndex: 2 });
  });
});
