/**
 * Linearizable reads without writing to the log: ReadIndex, thesis section 6.4.
 */
import { describe, expect, it } from 'vitest';
import { describeMessage, ErrorCode, Role } from '../src/index.js';
import { expectRaftKvError, Network } from './harness.js';

const ET = 10;

describe('6.4 ReadIndex on the leader', () => {
  it('6.4: a read is answered only after a quorum acknowledges a heartbeat round that began after it arrived', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const commit = net.status('n1').commit;

    net.node('n1').readIndex('r1');
    const rd = net.handleReady('n1');
    expect(rd?.messages.map(describeMessage)).toEqual([
      `n1->n2 MsgHeartbeat Term:1 Commit:1/${commit} Round:1 LeaseTick:1`,
      `n1->n3 MsgHeartbeat Term:1 Commit:1/${commit} Round:1 LeaseTick:1`,
    ]);
    expect(rd?.readStates).toEqual([]);
    net.queue = net.queue.filter((m) => m.to === 'n2'); // the heartbeat to n3 is lost
    net.deliverAll(); // n2 receives it
    net.handleReadies(); // and answers
    expect(net.readStates('n1')).toEqual([]);
    net.deliverAll(); // n1 receives the answer: with its own, a quorum
    net.handleReadies();
    expect(net.readStates('n1')).toEqual([{ index: commit, context: 'r1' }]);
  });

  it('6.4: the read index is the commit index when the read arrived, even if more commits before it is confirmed', () => {
    const net = new Network();
    net.elect('n1');
    const atArrival = net.status('n1').commit;
    const heartbeatsLost = net.drop((m) => m.type === 'MsgHeartbeat');
    net.node('n1').readIndex('r1');
    net.propose('n1', 'later');
    net.stabilize();
    expect(net.status('n1').commit).toBe(atArrival + 1);
    heartbeatsLost();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.readStates('n1')).toEqual([{ index: atArrival, context: 'r1' }]);
  });

  it('6.4: many reads arriving together are confirmed by one heartbeat round (one broadcast serves them all)', () => {
    const net = new Network();
    net.elect('n1');
    net.clearLog();
    for (let k = 0; k < 50; k++) net.node('n1').readIndex(`r${k}`);
    net.stabilize();
    expect(net.readStates('n1').map((s) => s.context)).toEqual(Array.from({ length: 50 }, (_, k) => `r${k}`));
    expect(net.sentWhere({ type: 'MsgHeartbeat', from: 'n1' })).toHaveLength(2); // one broadcast to 2 followers
  });

  it('6.4: reads arriving while a round is in flight all wait for the next round, and one broadcast serves them all', () => {
    const net = new Network();
    net.elect('n1');
    net.clearLog();
    net.node('n1').readIndex('first');
    net.handleReady('n1'); // round 1 heartbeats are on their way
    for (let k = 0; k < 50; k++) net.node('n1').readIndex(`r${k}`);
    net.stabilize();
    expect(net.readStates('n1')).toHaveLength(51);
    expect(net.sentWhere({ type: 'MsgHeartbeat', from: 'n1' })).toHaveLength(4); // rounds 1 and 2
  });

  it('6.4: a new leader answers no read before the no-op of its term is committed', () => {
    const net = new Network();
    net.elect('n1');
    const noAppendsFromN2 = net.drop((m) => m.from === 'n2' && m.type === 'MsgApp');
    net.node('n1').transferLeadership('n2');
    net.stabilize();
    expect(net.status('n2')).toMatchObject({ role: Role.Leader, term: 2, commit: 1, lastIndex: 2 });
    net.node('n2').readIndex('early');
    for (let k = 0; k < 3; k++) {
      net.heartbeat('n2'); // heartbeats are acknowledged, but its commit index may be stale
      net.stabilize();
    }
    expect(net.readStates('n2')).toEqual([]);
    noAppendsFromN2();
    net.heartbeat('n2');
    net.stabilize();
    expect(net.status('n2').commit).toBe(2);
    expect(net.readStates('n2')).toEqual([{ index: 2, context: 'early' }]);
  });

  it('6.4: a leader partitioned from the quorum never answers reads (with or without check-quorum)', () => {
    for (const checkQuorum of [true, false]) {
      const net = new Network({ config: { checkQuorum } });
      net.elect('n1');
      net.isolate('n1');
      net.node('n1').readIndex('p');
      for (let k = 0; k < 5 * ET; k++) {
        net.tick('n1');
        net.stabilize();
      }
      expect(net.readStates('n1')).toEqual([]);
      // With check-quorum it stepped down (and now campaigns in vain); without, it still thinks it leads.
      expect(net.status('n1').role === Role.Leader).toBe(!checkQuorum);
    }
  });
});

describe('6.4 ReadIndex from a follower', () => {
  it('6.4: a read on a follower is forwarded as MsgReadIndex and comes back as a ReadState on the follower', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.clearLog();
    net.node('n2').readIndex('f1');
    net.stabilize();
    expect(net.log).toContain('n2->n1 MsgReadIndex Term:1 Ctx:f1');
    expect(net.log).toContain('n1->n2 MsgReadIndexResp Term:1 Index:2 Ctx:f1');
    expect(net.readStates('n2')).toEqual([{ index: 2, context: 'f1' }]);
    expect(net.readStates('n1')).toEqual([]);
  });

  it('6.4: a read on a node that knows no leader throws RAFTKV_NOT_LEADER', () => {
    const net = new Network();
    expect(expectRaftKvError(() => net.node('n2').readIndex('x'), ErrorCode.NOT_LEADER).leaderHint).toBeNull();
  });
});
