/**
 * Lease-based reads, thesis section 6.4.1: the leader answers from its commit index without a
 * heartbeat round, relying on check-quorum and the followers' leader lease.
 */
import { describe, expect, it } from 'vitest';
import { Network } from './harness.js';

describe('6.4.1 lease reads', () => {
  it('6.4.1: a leader with a committed entry of its term answers a lease read at once, with no heartbeat round', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const commit = net.status('n1').commit;
    net.node('n1').readIndex('lease-1', 'lease');
    const rd = net.handleReady('n1');
    expect(rd?.messages.filter((m) => m.type === 'MsgHeartbeat')).toEqual([]);
    expect(net.readStates('n1')).toEqual([{ index: commit, context: 'lease-1' }]);
  });

  it('6.4.1: before the no-op of its term commits, a lease read waits like a ReadIndex read', () => {
    const net = new Network();
    const noAppends = net.drop((m) => m.type === 'MsgApp');
    net.campaign('n1');
    net.stabilize();
    expect(net.status('n1').role).toBe('leader');
    // n1's no-op reached nobody: its commit index may be behind the cluster's.
    net.node('n1').readIndex('lease-2', 'lease');
    net.stabilize();
    expect(net.readStates('n1')).toEqual([]);
    noAppends();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.status('n1').commit).toBe(1);
    expect(net.readStates('n1')).toEqual([{ index: 1, context: 'lease-2' }]);
  });

  it('6.4.1: without check-quorum there is no lease: the read takes a heartbeat round', () => {
    const net = new Network({ config: { checkQuorum: false } });
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.node('n1').readIndex('r', 'lease');
    const rd = net.handleReady('n1');
    expect(rd?.messages.filter((m) => m.type === 'MsgHeartbeat').length).toBe(2);
    expect(net.readStates('n1')).toEqual([]);
  });

  it('6.4.1: on a follower a lease read is forwarded as a ReadIndex read', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.node('n2').readIndex('f', 'lease');
    const rd = net.handleReady('n2');
    expect(rd?.messagesAfterPersist.map((m) => m.type)).toEqual(['MsgReadIndex']);
    net.stabilize();
    expect(net.readStates('n2').map((r) => r.context)).toEqual(['f']);
  });
});
