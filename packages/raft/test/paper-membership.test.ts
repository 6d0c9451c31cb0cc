/**
 * Membership changes, one server at a time (thesis chapter 4): learners, promotion, removal
 * (of the leader too), one change at a time, and the 2015 correction.
 */
import { describe, expect, it } from 'vitest';
import { encodeConfChange, ErrorCode, type ConfChange } from '../src/index.js';
import { expectRaftKvError, msg, Network } from './harness.js';

const ET = 10;

function propose(net: Network, leader: string, change: ConfChange): void {
  net.node(leader).proposeConfChange(change);
}

/** n1 leads a cluster of n1..n3; n4 (and n5) are machines outside it, with empty logs. */
function clusterWithSpare(size = 4): Network {
  const net = new Network({ size, voters: ['n1', 'n2', 'n3'], bootstrapEntry: true });
  net.elect('n1');
  net.propose('n1', 'a');
  net.stabilize();
  return net;
}

describe('4.1 one server at a time', () => {
  it('4.2.1: a learner receives the whole log but never counts towards a quorum', () => {
    const net = clusterWithSpare();
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    net.stabilize();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.status('n1').confState).toEqual({ voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
    expect(net.status('n4').confState).toEqual({ voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
    expect(net.applied('n4')).toEqual(net.applied('n1'));
    // With n2 and n3 cut off, n1 and the learner are not a majority of three voters.
    net.isolate('n2');
    net.isolate('n3');
    const before = net.status('n1').commit;
    net.propose('n1', 'b');
    net.stabilize();
    expect(net.status('n1').commit).toBe(before);
  });

  it('4.1: a configuration takes effect when its entry is appended, before it commits', () => {
    const net = clusterWithSpare();
    net.drop((m) => m.type === 'MsgAppResp'); // nothing commits
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    net.stabilize();
    const commit = net.status('n1').commit;
    expect(net.status('n2').confState.learners).toEqual(['n4']);
    expect(net.status('n1').commit).toBe(commit);
  });

  it('4.1: a change truncated by the next leader is undone on the follower that had it', () => {
    // n1 leads; its change reaches n2 only. n3 (with an older log) becomes leader with n1's vote
    // and overwrites n2's entry: n2's configuration goes back.
    const net = clusterWithSpare();
    const onlyN2 = net.drop((m) => m.from === 'n1' && m.to === 'n3');
    const noAcks = net.drop((m) => m.type === 'MsgAppResp' && m.to === 'n1');
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    net.stabilize();
    onlyN2();
    noAcks();
    expect(net.status('n2').confState.learners).toEqual(['n4']);
    expect(net.status('n1').confState.learners).toEqual(['n4']);
    const { term, lastIndex } = net.status('n3');
    const lastTerm = net.node('n3').termAt(lastIndex)!;
    // A leader of a later term (n3, say, elected while n2 was away) overwrites the change's index.
    const changeIndex = net.status('n2').lastIndex;
    net.node('n2').step(msg.app('n3', 'n2', term + 5, { index: lastIndex, term: lastTerm }, [{ term: term + 5, index: changeIndex, type: 'normal', data: new Uint8Array(0) }], 0));
    expect(net.status('n2').confState.learners).toEqual([]);
    expect(net.status('n2').lastIndex).toBe(changeIndex);
  });

  it('4.1: a second change while one is not committed is refused (RAFTKV_CONF_CHANGE_PENDING)', () => {
    const net = clusterWithSpare(5);
    net.drop((m) => m.type === 'MsgAppResp');
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    expectRaftKvError(() => propose(net, 'n1', { type: 'add-learner', id: 'n5' }), ErrorCode.CONF_CHANGE_PENDING);
    net.heal();
    net.heartbeat('n1');
    net.stabilize();
    propose(net, 'n1', { type: 'add-learner', id: 'n5' });
    net.stabilize();
    expect(net.status('n1').confState.learners).toEqual(['n4', 'n5']);
  });

  it('4.1 (2015 correction): a new leader proposes no change until an entry of its term is committed', () => {
    const net = new Network({ size: 4, voters: ['n1', 'n2', 'n3'] });
    const noAppends = net.drop((m) => m.type === 'MsgApp');
    net.campaign('n1');
    net.stabilize();
    expect(net.status('n1').role).toBe('leader');
    const error = expectRaftKvError(() => propose(net, 'n1', { type: 'add-learner', id: 'n4' }), ErrorCode.CONF_CHANGE_PENDING);
    expect(error.message).toMatch(/has not committed an entry of term/);
    noAppends();
    net.heartbeat('n1');
    net.stabilize();
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
  });

  it('4.1: changes that cannot follow are refused (RAFTKV_CONF_CHANGE_INVALID)', () => {
    const net = clusterWithSpare();
    expectRaftKvError(() => propose(net, 'n1', { type: 'add-learner', id: 'n2' }), ErrorCode.CONF_CHANGE_INVALID);
    expectRaftKvError(() => propose(net, 'n1', { type: 'remove', id: 'n9' }), ErrorCode.CONF_CHANGE_INVALID);
    expectRaftKvError(() => propose(net, 'n1', { type: 'promote', id: 'n2' }), ErrorCode.CONF_CHANGE_INVALID);
    expectRaftKvError(() => propose(net, 'n1', { type: 'promote', id: 'n4' }), ErrorCode.CONF_CHANGE_INVALID);
    expectRaftKvError(() => propose(net, 'n1', { type: 'bootstrap', voters: ['n1'] }), ErrorCode.CONF_CHANGE_INVALID);
    expectRaftKvError(() => propose(net, 'n2', { type: 'add-learner', id: 'n4' }), ErrorCode.NOT_LEADER);
  });

  it('4.2.1: a learner is promoted only when it is caught up; then it counts', () => {
    const net = clusterWithSpare();
    const toN4 = net.drop((m) => m.to === 'n4');
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    net.stabilize();
    const refused = expectRaftKvError(() => propose(net, 'n1', { type: 'promote', id: 'n4' }), ErrorCode.CONF_CHANGE_INVALID);
    expect(refused.message).toMatch(/not caught up/);
    toN4();
    net.heartbeat('n1');
    net.stabilize();
    propose(net, 'n1', { type: 'promote', id: 'n4' });
    net.stabilize();
    expect(net.status('n1').confState).toEqual({ voters: ['n1', 'n2', 'n3', 'n4'], learners: [] });
    // Four voters: n1 and n4 alone are not a majority, n1, n2 and n4 are.
    net.isolate('n3');
    net.isolate('n2');
    const before = net.status('n1').commit;
    net.propose('n1', 'b');
    net.stabilize();
    expect(net.status('n1').commit).toBe(before);
    net.heal();
    net.isolate('n3');
    net.heartbeat('n1');
    net.stabilize();
    expect(net.status('n1').commit).toBeGreaterThan(before);
  });
});

describe('4.2.2 removing members', () => {
  it('4.2.2: a removed follower no longer counts; the rest commit without it', () => {
    const net = clusterWithSpare(3);
    propose(net, 'n1', { type: 'remove', id: 'n3' });
    net.stabilize();
    expect(net.status('n1').confState).toEqual({ voters: ['n1', 'n2'], learners: [] });
    net.isolate('n3');
    net.propose('n1', 'b');
    net.stabilize();
    expect(net.applied('n2')).toContain('b');
  });

  it('4.2.2: the leader removes itself, leads until that change commits without counting itself, then hands over at once', () => {
    const net = clusterWithSpare(3);
    propose(net, 'n1', { type: 'remove', id: 'n1' });
    net.stabilize();
    // Committed by n2 and n3 (the new configuration's majority); n1 stepped down and sent
    // MsgTimeoutNow: a new leader without any election timeout passing.
    expect(net.status('n1').role).toBe('follower');
    expect(net.sentWhere({ type: 'MsgTimeoutNow', from: 'n1' })).toHaveLength(1);
    const lead = net.leader();
    expect(lead === 'n2' || lead === 'n3').toBe(true);
    net.propose(lead!, 'after');
    net.stabilize();
    expect(net.applied('n2')).toContain('after');
    expect(net.applied('n3')).toContain('after');
    // n1 is out: it does not campaign.
    net.tick('n1', 5 * ET);
    net.stabilize();
    expect(net.status('n1').role).toBe('follower');
    expect(net.leader()).toBe(lead);
  });

  it('4.2.2: a leader deposed before its own removal committed may campaign again, and hands over once it commits (else: deadlock)', () => {
    // Two voters. n1 removes itself; the change reaches nobody, and n1 loses leadership. n2 uses
    // the old configuration and needs n1's vote, which n1 refuses (its log is longer). Only n1
    // can break the tie: it campaigns though its latest configuration excludes it, wins n2's vote
    // (the new configuration's majority), commits the change, and steps down in n2's favour.
    const net = new Network({ size: 2, bootstrapEntry: true });
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const cut = net.isolate('n1');
    propose(net, 'n1', { type: 'remove', id: 'n1' });
    net.stabilize();
    net.tick('n1', 2 * ET); // check-quorum: n1 steps down
    expect(net.status('n1').role).toBe('follower');
    cut();
    for (let round = 0; round < 10 && !(net.leader() === 'n2' && net.status('n2').confState.voters.length === 1); round++) {
      net.tickLockstep(3 * ET);
      net.stabilize();
    }
    expect(net.leader()).toBe('n2');
    expect(net.status('n2').confState).toEqual({ voters: ['n2'], learners: [] });
    expect(net.status('n2').commit).toBeGreaterThanOrEqual(net.status('n1').lastIndex);
  });

  it('4.2.3: a removed node that never learned of its removal cannot disrupt the cluster', () => {
    const net = clusterWithSpare(3);
    net.isolate('n3');
    propose(net, 'n1', { type: 'remove', id: 'n3' });
    net.stabilize();
    net.propose('n1', 'b');
    net.stabilize();
    net.heal();
    const term = net.status('n1').term;
    // n3 times out again and again; its (pre-)vote requests win nothing.
    for (let k = 0; k < 6; k++) {
      net.tick('n3', 2 * ET);
      net.heartbeat('n1');
      net.stabilize();
    }
    expect(net.status('n1').role).toBe('leader');
    expect(net.status('n1').term).toBe(term);
  });
});

describe('4.1 configurations in snapshots and across restarts', () => {
  it('a snapshot records the configuration in force at its index, not the current one', () => {
    const net = clusterWithSpare();
    const before = net.status('n1').applied;
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    net.stabilize();
    net.heartbeat('n1');
    net.stabilize();
    const meta = net.node('n1').snapshotMeta(before);
    expect(meta.confState).toEqual({ voters: ['n1', 'n2', 'n3'], learners: [] });
    expect(net.node('n1').snapshotMeta(net.status('n1').applied).confState.learners).toEqual(['n4']);
  });

  it('a node that restarts reads its configuration from its log, uncommitted changes included', () => {
    const net = clusterWithSpare();
    net.drop((m) => m.type === 'MsgAppResp');
    propose(net, 'n1', { type: 'add-learner', id: 'n4' });
    net.stabilize();
    net.crash('n2');
    net.restart('n2');
    expect(net.status('n2').confState.learners).toEqual(['n4']);
  });

  it('a configuration entry holds the change, a NUL byte, then the caller\'s context bytes', () => {
    const data = encodeConfChange({ type: 'add-learner', id: 'n4' }, new Uint8Array([1, 2, 3]));
    expect(Array.from(data.subarray(data.indexOf(0) + 1))).toEqual([1, 2, 3]);
  });
});
