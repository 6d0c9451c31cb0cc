/**
 * Pre-vote (thesis section 9.6), check-quorum (thesis section 6.2) and the leader lease that
 * protects against disruptive servers (thesis section 4.2.3).
 */
import { describe, expect, it } from 'vitest';
import { describeMessage, ErrorCode, Role } from '../src/index.js';
import { expectRaftKvError, msg, Network } from './harness.js';

const ET = 10;

/** Ticks every live node once and stabilizes, `rounds` times. */
function run(net: Network, rounds: number): void {
  for (let k = 0; k < rounds; k++) {
    for (const id of net.ids) if (net.isUp(id)) net.tick(id);
    net.stabilize();
  }
}

describe('9.6 pre-vote', () => {
  it('9.6: with pre-vote, a partitioned node that rejoins neither raises its term nor disrupts the leader', () => {
    const net = new Network();
    net.elect('n1');
    const term = net.status('n1').term;
    const rejoin = net.isolate('n3');
    run(net, 10 * ET);
    // n3 kept pre-campaigning, never campaigning: its term did not move.
    expect(net.sentWhere({ type: 'MsgPreVote', from: 'n3' }).length).toBeGreaterThan(2);
    expect(net.sentWhere({ type: 'MsgVote', from: 'n3' })).toEqual([]);
    expect(net.status('n3').term).toBe(term);
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term });

    rejoin();
    run(net, 3 * ET);
    for (const id of net.ids) expect(net.status(id)).toMatchObject({ term, lead: 'n1' });
    expect(net.leaders.size).toBe(1);
    net.propose('n1', 'after');
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['after']);
  });

  it('9.6: without pre-vote, the partitioned node raises its term at every timeout and deposes the leader when it rejoins', () => {
    const net = new Network({ config: { preVote: false } });
    net.elect('n1');
    const term = net.status('n1').term;
    const rejoin = net.isolate('n3');
    run(net, 10 * ET);
    expect(net.status('n3').term).toBeGreaterThan(term + 2);
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term });

    rejoin();
    run(net, 3 * ET);
    // The old leader learned the higher term and stepped down; a later term has a leader now.
    expect(net.status('n1').term).toBeGreaterThan(term);
    expect(Math.max(...net.leaders.keys())).toBeGreaterThan(term);
  });

  it('9.6: a pre-vote is granted without recording a vote or changing the voter’s term', () => {
    const net = new Network();
    net.node('n2').step(msg.vote('n1', 'n2', 1, { index: 0, term: 0 }, { pre: true }));
    const rd = net.handleReady('n2');
    expect(rd?.hardState).toBeNull();
    expect(rd?.messagesAfterPersist.map(describeMessage)).toEqual(['n2->n1 MsgPreVoteResp Term:1 Granted']);
    expect(net.status('n2')).toMatchObject({ term: 0, vote: null });
  });
});

describe('6.2 check-quorum', () => {
  it('6.2: a leader that hears from no quorum for an election timeout steps down', () => {
    const net = new Network();
    net.elect('n1');
    net.isolate('n1');
    let ticks = 0;
    while (net.status('n1').role === Role.Leader && ticks < 5 * ET) {
      net.tick('n1');
      net.stabilize();
      ticks++;
    }
    expect(net.status('n1')).toMatchObject({ role: Role.Follower, lead: null });
    // It acted on the first check after it lost contact: within two election timeouts.
    expect(ticks).toBeLessThanOrEqual(2 * ET);
    const error = expectRaftKvError(() => net.propose('n1', 'x'), ErrorCode.NOT_LEADER);
    expect(error.leaderHint).toBeNull();
  });

  it('6.2: a leader that hears from a quorum stays leader even if a minority is unreachable', () => {
    const net = new Network({ size: 5 });
    net.elect('n1');
    net.isolate('n4');
    net.isolate('n5');
    for (let k = 0; k < 10 * ET; k++) {
      net.tick('n1');
      net.stabilize();
    }
    expect(net.status('n1').role).toBe(Role.Leader);
  });

  it('6.2: without check-quorum a partitioned leader keeps believing it leads', () => {
    const net = new Network({ config: { checkQuorum: false } });
    net.elect('n1');
    net.isolate('n1');
    for (let k = 0; k < 10 * ET; k++) {
      net.tick('n1');
      net.stabilize();
    }
    expect(net.status('n1').role).toBe(Role.Leader);
  });
});

describe('4.2.3 leader lease against disruptive servers', () => {
  it('4.2.3: a follower that heard from the leader within the election timeout ignores a higher-term MsgVote and MsgPreVote', () => {
    const net = new Network();
    net.elect('n1');
    const { term, lastIndex } = net.status('n2');
    const n2 = net.node('n2');
    n2.step(msg.vote('n3', 'n2', term + 1, { index: lastIndex, term }));
    n2.step(msg.vote('n3', 'n2', term + 1, { index: lastIndex, term }, { pre: true }));
    expect(n2.hasReady()).toBe(false); // not even an answer
    expect(net.status('n2')).toMatchObject({ term, vote: 'n1', lead: 'n1' });
  });

  it('4.2.3: a vote request with transfer=true overrides the lease (the leader asked for it)', () => {
    const net = new Network();
    net.elect('n1');
    const { term, lastIndex } = net.status('n2');
    net.node('n2').step(msg.vote('n3', 'n2', term + 1, { index: lastIndex, term }, { transfer: true }));
    const rd = net.handleReady('n2');
    expect(rd?.hardState).toMatchObject({ term: term + 1, vote: 'n3' });
    expect(rd?.messagesAfterPersist.map(describeMessage)).toEqual([`n2->n3 MsgVoteResp Term:${term + 1} Granted`]);
  });

  it('4.2.3: once a follower has not heard from the leader for an election timeout, it grants a higher-term vote', () => {
    const net = new Network();
    net.elect('n1');
    const { term, lastIndex } = net.status('n2');
    net.tick('n2', ET);
    net.node('n2').step(msg.vote('n3', 'n2', term + 1, { index: lastIndex, term }));
    expect(net.status('n2')).toMatchObject({ term: term + 1, vote: 'n3' });
  });
});
