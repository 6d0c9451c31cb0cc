/**
 * Safety: Raft paper section 5.4 (figure 8, leader completeness, state machine safety).
 */
import { describe, expect, it } from 'vitest';
import { Role, SeededRandom } from '../src/index.js';
import { Network, runChaos } from './harness.js';

const termAt = (net: Network, id: string, index: number): number | undefined => net.node(id).termAt(index);

/**
 * Figure 8 up to (c), with 5 servers n1..n5 (S1..S5) in plain Raft (no pre-vote, no
 * check-quorum, as in the paper) and one entry per MsgApp. Every leader also appends its
 * no-op, so indexes are shifted by the no-op of term 1 at index 1.
 */
function figure8c(): Network {
  const net = new Network({ size: 5, config: { preVote: false, checkQuorum: false, msgBytesMax: 1 } });
  net.elect('n1'); // term 1; the no-op 1/1 is committed everywhere

  // (a) n1 replicates "x" at index 2 to n2 only.
  const onlyToN2 = net.drop((m) => m.from === 'n1' && m.to !== 'n2');
  net.propose('n1', 'x');
  net.stabilize();
  onlyToN2();
  expect([termAt(net, 'n1', 2), termAt(net, 'n2', 2), termAt(net, 'n3', 2)]).toEqual([1, 1, undefined]);
  expect(net.status('n1').commit).toBe(1);

  // (b) n1 crashes; n5 wins term 2 with n3 and n4 (n2 refuses: n5's log is behind) and
  //     appends "y" at index 3, which nobody receives.
  net.crash('n1');
  const n5Silent = net.drop((m) => m.from === 'n5' && (m.type === 'MsgApp' || m.type === 'MsgHeartbeat'));
  net.campaign('n5');
  net.stabilize();
  expect(net.status('n5')).toMatchObject({ role: Role.Leader, term: 2 });
  net.propose('n5', 'y');
  net.stabilize();
  net.crash('n5');
  n5Silent();

  // (c) n1 restarts. Its first campaign (term 2) fails: n3 and n4 voted for n5. It wins term 3.
  //     It brings n3 and n4 up to "x" (index 2), but no entry of term 3 reaches anyone (the
  //     filter is in place before the election, since a new leader broadcasts at once).
  net.drop((m) => m.type === 'MsgApp' && m.entries.some((e) => e.term === 3) && net.node(m.to).termAt(m.index) === m.logTerm);
  net.restart('n1');
  net.campaign('n1');
  net.stabilize();
  expect(net.status('n1')).toMatchObject({ role: Role.Candidate, term: 2 });
  net.campaign('n1');
  net.stabilize();
  expect(net.status('n1')).toMatchObject({ role: Role.Leader, term: 3 });
  net.heartbeat('n1');
  net.stabilize();
  return net;
}

describe('5.4.2 figure 8: committing entries from previous terms', () => {
  it('5.4.2: an entry of an earlier term stored on a majority is not committed by counting replicas', () => {
    const net = figure8c();
    // "x" (term 1) is on n1, n2, n3, n4, and the leader knows n3 and n4 hold it: a majority with itself.
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(termAt(net, id, 2)).toBe(1);
    const progress = net.status('n1').progress!;
    expect([progress.get('n3')?.match, progress.get('n4')?.match]).toEqual([2, 2]);
    expect(net.status('n1').commit).toBe(1);
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(net.applied(id)).toEqual([]);
  });

  it('5.4.2: figure 8 (d): had "x" been committed, it would now be lost: n5 can still win and overwrite it', () => {
    const net = figure8c();
    net.crash('n1');
    net.restart('n5');
    net.heal();
    net.campaign('n5'); // term 3: n2, n3, n4 already voted for n1
    net.stabilize();
    expect(net.status('n5').role).not.toBe(Role.Leader);
    net.campaign('n5'); // term 4: its last entry 2/3 is newer than their 1/2
    net.stabilize();
    expect(net.status('n5')).toMatchObject({ role: Role.Leader, term: 4 });
    net.heartbeat('n5');
    net.stabilize();
    for (const id of ['n2', 'n3', 'n4', 'n5']) {
      expect(termAt(net, id, 2)).toBe(2);
      expect(net.applied(id)).toEqual(['y']);
    }
  });

  it('5.4.2: figure 8 (e): once an entry of the current term is replicated on a majority, both commit, and n5 can no longer win', () => {
    const net = figure8c();
    net.heal();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.status('n1').commit).toBe(3);
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(net.applied(id)).toEqual(['x']);

    net.crash('n1');
    net.restart('n5');
    for (let k = 0; k < 3; k++) {
      net.campaign('n5');
      net.stabilize();
      expect(net.status('n5').role).not.toBe(Role.Leader);
    }
    net.campaign('n2');
    net.stabilize();
    expect(net.status('n2').role).toBe(Role.Leader);
    net.heartbeat('n2');
    net.stabilize();
    for (const id of ['n2', 'n3', 'n4', 'n5']) expect(net.applied(id)).toEqual(['x']);
  });
});

describe('5.4.3 leader completeness', () => {
  it('5.4.3: a committed entry is in the log of every later leader; a node lacking it cannot be elected', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const net = new Network({ seed });
      net.elect('n1');
      const rejoin = net.isolate('n3');
      net.propose('n1', 'a');
      net.stabilize();
      expect(net.status('n1').commit).toBe(2); // committed by n1 and n2; n3 does not have it
      expect(net.status('n3').lastIndex).toBe(1);
      net.crash('n1');
      rejoin();
      let ticks = 0;
      while (net.leader() === null) {
        net.tick('n2');
        net.tick('n3');
        net.stabilize();
        if (++ticks > 100) throw new Error(`seed ${seed}: no leader`);
      }
      expect(net.leader()).toBe('n2');
      expect([...net.leaders.values()]).not.toContain('n3');
      net.heartbeat('n2');
      net.stabilize();
      expect(net.applied('n3')).toEqual(['a']);
    }
  });
});

describe('5.4.3 state machine safety', () => {
  it('5.4.3: all nodes apply the same entries in the same order through crashes, restarts, compaction, loss and partitions', () => {
    const seeds = 30;
    let applied = 0;
    let snapshots = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const net = new Network({ size: 5, seed, config: { electionTimeoutTicks: 5 }, reportSnapshots: true });
      // The network's monitor throws if two nodes ever apply different entries at one index.
      runChaos(net, new SeededRandom(seed), { steps: 2_000, dropRate: 0.1, partitions: true, crashes: true, compaction: true });
      // Then everyone recovers and converges on one history.
      net.settle();
      const reference = net.appliedEntries('n1');
      for (const id of net.ids) expect(net.appliedEntries(id)).toEqual(reference);
      applied += reference.length;
      snapshots += net.sentWhere({ type: 'MsgSnap' }).length;
    }
    // Not vacuous: much was applied, and some followers were caught up by snapshot.
    expect(applied).toBeGreaterThan(5 * seeds);
    expect(snapshots).toBeGreaterThan(0);
  });
});
