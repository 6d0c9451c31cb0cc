/**
 * Leadership transfer: thesis section 3.10.
 */
import { describe, expect, it } from 'vitest';
import { describeMessage, ErrorCode, Role } from '../src/index.js';
import { expectRaftKvError, Network } from './harness.js';

const ET = 10;

describe('3.10 leadership transfer', () => {
  it('3.10: to an up-to-date follower, the leader sends MsgTimeoutNow and the target wins the next term at once', () => {
    const net = new Network();
    net.elect('n1');
    net.clearLog();
    net.node('n1').transferLeadership('n2');
    expect(net.status('n1').leadTransferee).toBe('n2');
    const rd = net.handleReady('n1');
    expect(rd?.messages.map(describeMessage)).toEqual(['n1->n2 MsgTimeoutNow Term:1']);
    net.stabilize();
    expect(net.status('n2')).toMatchObject({ role: Role.Leader, term: 2 });
    // The target skipped pre-vote, and its vote requests override the other followers' lease.
    expect(net.sentWhere({ type: 'MsgPreVote' })).toEqual([]);
    expect(net.log).toContain('n2->n3 MsgVote Term:2 Last:1/1 Transfer');
    expect(net.status('n1')).toMatchObject({ role: Role.Follower, term: 2 });
    net.heartbeat('n2');
    net.stabilize();
    net.propose('n2', 'x');
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['x']);
  });

  it('3.10: to a lagging follower, the leader first brings its log up to date, then sends MsgTimeoutNow', () => {
    const net = new Network();
    net.elect('n1');
    const rejoin = net.isolate('n3');
    for (let k = 0; k < 5; k++) net.propose('n1', `v${k}`);
    net.stabilize();
    rejoin();
    net.clearLog();
    net.node('n1').transferLeadership('n3');
    net.stabilize();
    expect(net.status('n3')).toMatchObject({ role: Role.Leader, term: 2 });
    const timeoutNow = net.log.indexOf('n1->n3 MsgTimeoutNow Term:1');
    const lastAppend = net.log.findLastIndex((l) => l.startsWith('n1->n3 MsgApp') && l.includes('1/6]'));
    expect(lastAppend).toBeGreaterThanOrEqual(0);
    expect(timeoutNow).toBeGreaterThan(lastAppend);
    expect(net.log.findIndex((l) => l === 'n3->n1 MsgAppResp Term:1 Index:6')).toBeLessThan(timeoutNow);
    net.heartbeat('n3');
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
  });

  it('3.10: proposals during a transfer are refused with RAFTKV_PROPOSAL_DROPPED', () => {
    const net = new Network();
    net.elect('n1');
    net.isolate('n3');
    net.propose('n1', 'a');
    net.stabilize();
    net.node('n1').transferLeadership('n3');
    net.stabilize();
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, leadTransferee: 'n3' });
    const error = expectRaftKvError(() => net.propose('n1', 'b'), ErrorCode.PROPOSAL_DROPPED);
    expect(error.code).toBe('RAFTKV_PROPOSAL_DROPPED');
  });

  it('3.10: a transfer that cannot finish is aborted after an election timeout, and the old leader keeps serving', () => {
    const net = new Network();
    net.elect('n1');
    net.isolate('n3');
    net.propose('n1', 'a');
    net.stabilize();
    net.node('n1').transferLeadership('n3');
    const term = net.status('n1').term;
    for (let k = 0; k < ET / 2; k++) {
      net.tick('n1');
      net.stabilize();
    }
    expect(net.status('n1').leadTransferee).toBe('n3');
    for (let k = ET / 2; k < ET; k++) {
      net.tick('n1');
      net.stabilize();
    }
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term, leadTransferee: null });
    net.propose('n1', 'b');
    net.stabilize();
    expect(net.applied('n2')).toEqual(['a', 'b']);
  });

  it('3.10: a transfer request made on a follower is forwarded to the leader', () => {
    const net = new Network();
    net.elect('n1');
    net.clearLog();
    net.node('n2').transferLeadership('n3');
    net.stabilize();
    expect(net.log).toContain('n2->n1 MsgTransferLeader Term:1 To:n3');
    expect(net.log).toContain('n1->n3 MsgTimeoutNow Term:1');
    expect(net.status('n3')).toMatchObject({ role: Role.Leader, term: 2 });
  });

  it('3.10: a transfer to a non-member is rejected with RAFTKV_TRANSFER_REJECTED; to itself it is a no-op', () => {
    const net = new Network();
    net.elect('n1');
    expectRaftKvError(() => net.node('n1').transferLeadership('n9'), ErrorCode.TRANSFER_REJECTED);
    net.node('n1').transferLeadership('n1');
    net.stabilize();
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term: 1, leadTransferee: null });
  });
});
