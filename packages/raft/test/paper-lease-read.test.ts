/**
 * Lease-based reads, thesis section 6.4.1: the leader answers from its commit index without a
 * heartbeat round, relying on check-quorum and the followers' leader lease. The lease runs on
 * the leader's ticks from the sending of a heartbeat a majority acknowledged; with the defaults
 * (electionTimeoutTicks 10, clockDriftMax 0.1) it lasts floor(9 * 0.9 / 1.1) = 7 ticks.
 */
import { describe, expect, it } from 'vitest';
import { Role, type Message, type NodeId } from '../src/index.js';
import { msg, Network } from './harness.js';

const ET = 10;
const LEASE_TICKS = 7;

/** Ticks every node in lockstep until a node other than `old` leads a later term. Returns it. */
function tickUntilNewLeader(net: Network, old: NodeId): NodeId {
  for (let round = 0; round < 5 * ET; round++) {
    const lead = net.leader();
    if (lead !== null && lead !== old) return lead;
    net.tickLockstep(1);
  }
  throw new Error('no new leader');
}

/** Elects `lead` of the next term (after a transfer or an election) and has it commit `data`. */
function commitOnNewLeader(net: Network, lead: NodeId, data: string): void {
  net.heartbeat(lead);
  net.stabilize();
  net.propose(lead, data);
  net.stabilize();
}

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

describe('6.4.1 the lease is anchored to when an acknowledged heartbeat was sent', () => {
  it('6.4.1: a leader cut off from the others serves no lease read once they elected a new leader and committed', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const stale = net.status('n1').commit;
    net.isolate('n1');
    // Every clock runs at the same rate. n2 and n3 elect a leader after one election timeout;
    // n1's check-quorum would only depose it at the end of its second one.
    const lead = tickUntilNewLeader(net, 'n1');
    commitOnNewLeader(net, lead, 'b');
    expect(net.status(lead).commit).toBeGreaterThan(stale);
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term: 1, commit: stale });

    net.node('n1').readIndex('stale?', 'lease');
    net.stabilize();
    // It must not answer from its stale commit index; it falls back to ReadIndex, which no
    // quorum confirms.
    expect(net.readStates('n1')).toEqual([]);
  });

  for (const { clockDriftMax, leaseTicks } of [
    { clockDriftMax: 0, leaseTicks: ET - 1 },
    { clockDriftMax: 0.1, leaseTicks: LEASE_TICKS },
    { clockDriftMax: 0.5, leaseTicks: 3 },
  ]) {
    it(`6.4.1: with clockDriftMax ${clockDriftMax} the lease lasts floor((ET - 1) * (1 - d) / (1 + d)) = ${leaseTicks} ticks after the last acknowledged heartbeat left`, () => {
      const net = new Network({ config: { clockDriftMax } });
      net.elect('n1');
      net.propose('n1', 'a');
      net.stabilize();
      net.heartbeat('n1'); // sent at n1's tick 2, acknowledged by both
      net.stabilize();
      net.isolate('n1'); // later heartbeats are lost
      for (let k = 1; k < leaseTicks; k++) {
        net.tick('n1');
        net.node('n1').readIndex(`r${k}`, 'lease');
        net.stabilize();
        expect(net.readStates('n1').map((r) => r.context)).toContain(`r${k}`);
      }
      net.tick('n1');
      net.clearLog();
      net.node('n1').readIndex('expired', 'lease');
      net.stabilize();
      expect(net.readStates('n1').map((r) => r.context)).not.toContain('expired');
      // It fell back to a ReadIndex round instead.
      expect(net.log.filter((l) => l.includes('MsgHeartbeat') && l.includes('Round:1'))).toHaveLength(2);
    });
  }

  it('6.4.1: acknowledgements of a later heartbeat, including a ReadIndex round, renew the lease', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.tick('n1', LEASE_TICKS); // heartbeats lost: the lease from the election ran out
    const lost = net.drop((m) => m.type === 'MsgHeartbeat');
    net.stabilize();
    lost();
    net.node('n1').readIndex('r1', 'lease'); // a ReadIndex round: its heartbeats are acknowledged
    net.stabilize();
    expect(net.readStates('n1').map((r) => r.context)).toEqual(['r1']);
    net.node('n1').readIndex('r2', 'lease');
    const rd = net.handleReady('n1');
    expect(rd?.messages).toEqual([]); // answered from the lease, no round
    expect(net.readStates('n1').map((r) => r.context)).toEqual(['r1', 'r2']);
  });

  it('6.4.1: when the election timeout leaves no lease tick (leaseTicks 0), every lease read takes a heartbeat round', () => {
    const net = new Network({ config: { electionTimeoutTicks: 2 } }); // floor(1 * 0.9 / 1.1) = 0
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.node('n1').readIndex('r', 'lease');
    const rd = net.handleReady('n1');
    expect(rd?.messages.filter((m) => m.type === 'MsgHeartbeat')).toHaveLength(2);
    expect(net.readStates('n1')).toEqual([]);
    net.stabilize();
    expect(net.readStates('n1').map((r) => r.context)).toEqual(['r']);
  });
});

describe('6.4.1 + 3.10 no lease read once leadership is being handed over', () => {
  it('6.4.1: after sending MsgTimeoutNow, the old leader answers no lease read while the new leader commits', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const stale = net.status('n1').commit;
    net.node('n1').transferLeadership('n2');
    net.handleReady('n1');
    net.deliverAll(); // n2 receives MsgTimeoutNow and campaigns with `transfer`
    net.isolate('n1'); // n1 learns nothing of it
    net.stabilize();
    expect(net.status('n2')).toMatchObject({ role: Role.Leader, term: 2 });
    commitOnNewLeader(net, 'n2', 'b');
    expect(net.status('n2').commit).toBeGreaterThan(stale);
    // n1 ticked not once since its last acknowledged heartbeat: by its clock the lease holds.
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term: 1, commit: stale });

    net.node('n1').readIndex('stale?', 'lease');
    net.stabilize();
    expect(net.readStates('n1')).toEqual([]);
  });

  it('6.4.1: a MsgTimeoutNow delivered late, after the transfer was abandoned, finds the old leader serving no lease read', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const held = net.drop((m) => m.type === 'MsgTimeoutNow');
    net.node('n1').transferLeadership('n2');
    net.stabilize();
    const timeoutNow: Message = net.sentWhere({ type: 'MsgTimeoutNow' })[0]!;
    // The transfer is abandoned after an election timeout; n1 leads on, its lease renewed.
    net.tickLockstep(ET);
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term: 1, leadTransferee: null });
    net.propose('n1', 'b');
    net.stabilize();
    const stale = net.status('n1').commit;

    held();
    net.deliver(timeoutNow); // the network finally delivers it
    net.isolate('n1');
    net.stabilize();
    expect(net.status('n2')).toMatchObject({ role: Role.Leader, term: 2 });
    commitOnNewLeader(net, 'n2', 'c');
    expect(net.status('n2').commit).toBeGreaterThan(stale);
    expect(net.status('n1')).toMatchObject({ role: Role.Leader, term: 1, commit: stale });

    net.node('n1').readIndex('stale?', 'lease');
    net.stabilize();
    expect(net.readStates('n1')).toEqual([]);
  });
});

describe('6.4.1 a restarted follower keeps the lease it may have acknowledged', () => {
  /** n1 leads term 1; n3 acknowledged its heartbeat, then crashed and restarted. */
  function restartedFollower(): { net: Network; term: number; last: { index: number; term: number } } {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.heartbeat('n1');
    net.stabilize();
    net.crash('n3');
    net.restart('n3');
    net.stabilize(); // n3 applies its committed log again
    const { term, lastIndex } = net.status('n3');
    return { net, term, last: { index: lastIndex, term } };
  }

  it('6.4.1: for an election timeout after it restarts, a follower refuses higher-term votes and pre-votes', () => {
    const { net, term, last } = restartedFollower();
    const n3 = net.node('n3');
    n3.step(msg.vote('n2', 'n3', term + 1, last));
    n3.step(msg.vote('n2', 'n3', term + 1, last, { pre: true }));
    expect(net.status('n3')).toMatchObject({ term, vote: 'n1' });
    expect(n3.hasReady()).toBe(false); // not even an answer
    net.tick('n3', ET - 1);
    n3.step(msg.vote('n2', 'n3', term + 1, last, { pre: true }));
    n3.step(msg.vote('n2', 'n3', term + 1, last));
    expect(net.status('n3')).toMatchObject({ term, vote: 'n1' });
    net.tick('n3');
    n3.step(msg.vote('n2', 'n3', term + 1, last));
    expect(net.status('n3')).toMatchObject({ term: term + 1, vote: 'n2' });
  });

  it('6.4.1: a restarted follower grants a vote with transfer=true at once (the leader asked for it)', () => {
    const { net, term, last } = restartedFollower();
    net.node('n3').step(msg.vote('n2', 'n3', term + 1, last, { transfer: true }));
    expect(net.status('n3')).toMatchObject({ term: term + 1, vote: 'n2' });
  });

  it('6.4.1: a brand-new node (term 0, empty log) acknowledged nothing and votes at once', () => {
    const net = new Network();
    net.node('n2').step(msg.vote('n1', 'n2', 1, { index: 0, term: 0 }));
    expect(net.status('n2')).toMatchObject({ term: 1, vote: 'n1' });
  });
});

describe('6.4.1 a follower keeps the lease when a stray message raises its term', () => {
  it('6.4.1: a higher term learned from a node that is not a leader does not cut the lease short: no vote in it until an election timeout after the heartbeat', () => {
    // n3 heard n1's heartbeat, then gets a late answer from n2 carrying a higher term (n2 is no
    // leader: say, a MsgAppResp to an append n3 sent when it led an old term). n3 moves to that
    // term and forgets its leader, but n1's lease still counts on n3: a vote request of that
    // term, or of the next, must wait.
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    net.heartbeat('n1');
    net.stabilize();
    const { term, lastIndex } = net.status('n3');
    const last = { index: lastIndex, term };
    const n3 = net.node('n3');
    n3.step({ type: 'MsgAppResp', from: 'n2', to: 'n3', term: term + 1, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
    expect(net.status('n3')).toMatchObject({ term: term + 1, lead: null, vote: null });
    n3.step(msg.vote('n2', 'n3', term + 1, last));
    n3.step(msg.vote('n2', 'n3', term + 2, last, { pre: true }));
    n3.step(msg.vote('n2', 'n3', term + 2, last));
    expect(net.status('n3')).toMatchObject({ term: term + 1, vote: null });
    net.tick('n3', ET);
    n3.step(msg.vote('n2', 'n3', term + 1, last));
    expect(net.status('n3')).toMatchObject({ term: term + 1, vote: 'n2' });
  });
});
