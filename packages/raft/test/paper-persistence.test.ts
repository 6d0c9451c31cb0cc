/**
 * The persistence contract written on `Ready` (types.ts): paper figure 2, thesis sections 3.8
 * and 10.2.1. What a message promises must be durable before it leaves; what is not durable
 * is lost in a crash, and nothing else is.
 */
import { describe, expect, it } from 'vitest';
import { describeEntry, describeMessage, RaftAssertionError, Role, SeededRandom, type MessageType } from '../src/index.js';
import { msg, Network, runChaos } from './harness.js';

const AFTER_PERSIST_ONLY: readonly MessageType[] = ['MsgVote', 'MsgVoteResp', 'MsgAppResp'];
const LEADER_EARLY: readonly MessageType[] = ['MsgApp', 'MsgHeartbeat'];

describe('Ready: messages vs messagesAfterPersist', () => {
  it('3.8: MsgVote, MsgVoteResp and MsgAppResp are never in `messages`; a leader’s MsgApp and MsgHeartbeat always are', () => {
    let checked = 0;
    for (let seed = 1; seed <= 10; seed++) {
      const net = new Network({ size: 5, seed, config: { electionTimeoutTicks: 5, preVote: seed % 2 === 0 }, reportSnapshots: true });
      runChaos(net, new SeededRandom(seed), { steps: 1_500, dropRate: 0.05, partitions: true, crashes: true, compaction: true });
      net.settle();
      const misplaced: string[] = [];
      for (const { ready } of net.readies) {
        for (const m of ready.messages) if (AFTER_PERSIST_ONLY.includes(m.type)) misplaced.push(`messages: ${describeMessage(m)}`);
        for (const m of ready.messagesAfterPersist) if (LEADER_EARLY.includes(m.type)) misplaced.push(`messagesAfterPersist: ${describeMessage(m)}`);
        checked += ready.messages.length + ready.messagesAfterPersist.length;
      }
      expect(misplaced).toEqual([]);
      const types = new Set(net.sent.map((m) => m.type));
      for (const t of [...AFTER_PERSIST_ONLY, ...LEADER_EARLY]) expect(types).toContain(t);
    }
    expect(checked).toBeGreaterThan(1_000);
  });

  it('3.8: committedEntries handed out in a Ready are durable once that Ready is persisted', () => {
    let applied = 0;
    for (let seed = 1; seed <= 10; seed++) {
      const net = new Network({ size: 3, seed, config: { electionTimeoutTicks: 5 } });
      // The network checks, for every entry applied, that it is in the node's storage.
      runChaos(net, new SeededRandom(seed), { steps: 1_500, dropRate: 0.05, partitions: true, crashes: true });
      net.settle();
      applied += net.appliedEntries('n1').length;
    }
    expect(applied).toBeGreaterThan(50);
  });

  it('3.8: a follower’s append acknowledgement and a voter’s grant are in messagesAfterPersist, next to what they promise', () => {
    const net = new Network({ config: { preVote: false } });
    net.node('n2').step(msg.vote('n1', 'n2', 1, { index: 0, term: 0 }));
    let rd = net.node('n2').ready();
    expect(rd.hardState).toMatchObject({ term: 1, vote: 'n1' });
    expect(rd.messages).toEqual([]);
    expect(rd.messagesAfterPersist.map(describeMessage)).toEqual(['n2->n1 MsgVoteResp Term:1 Granted']);
    net.persist('n2', rd);
    net.node('n2').advance();

    net.node('n2').step(msg.app('n1', 'n2', 1, { index: 0, term: 0 }, [{ term: 1, index: 1, type: 'normal', data: new Uint8Array(0) }]));
    rd = net.node('n2').ready();
    expect(rd.entries.map(describeEntry)).toEqual(['1/1 noop']);
    expect(rd.mustSync).toBe(true);
    expect(rd.messages).toEqual([]);
    expect(rd.messagesAfterPersist.map(describeMessage)).toEqual(['n2->n1 MsgAppResp Term:1 Index:1']);
  });

  it('3.8: a Ready in which only the commit index changed need not be synced', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'x');
    net.handleReady('n1'); // MsgApp to followers
    net.deliverAll();
    net.handleReady('n2'); // n2 persists x and acks
    net.deliverAll(); // n1 commits and tells the followers
    net.handleReady('n1');
    net.deliverAll();
    const rd = net.handleReady('n2');
    expect(rd?.entries).toEqual([]);
    expect(rd?.hardState).toMatchObject({ commit: 2 });
    expect(rd?.mustSync).toBe(false);
  });
});

describe('crash and restart', () => {
  it('3.8: a follower that crashes before persisting loses the entries, and its acknowledgement never left', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'x');
    net.handleReady('n1');
    net.deliverAll();
    const rd = net.node('n2').ready();
    expect(rd.entries.map(describeEntry)).toEqual(['1/2']);
    net.send(rd.messages); // nothing: the ack waits for the write
    expect(rd.messages).toEqual([]);
    net.crash('n2');
    net.stabilize(); // n3 persists and acks; with n1 that is a quorum
    expect(net.status('n1').commit).toBe(2);
    expect(net.status('n1').progress?.get('n2')?.match).toBe(1);

    net.restart('n2');
    expect(net.status('n2')).toMatchObject({ term: 1, vote: 'n1', lastIndex: 1, commit: 1 });
    net.heartbeat('n1');
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['x']);
  });

  it('3.8: a vote lost in a crash before it was persisted was never sent, so voting again in that term is safe', () => {
    const net = new Network({ config: { preVote: false } });
    net.campaign('n1');
    net.handleReady('n1');
    net.queue = net.queue.filter((m) => m.to === 'n3');
    net.deliverAll();
    const rd = net.node('n3').ready();
    expect(rd.hardState).toMatchObject({ term: 1, vote: 'n1' });
    net.crash('n3'); // before persisting: the grant in messagesAfterPersist never left
    net.restart('n3');
    expect(net.status('n3')).toMatchObject({ term: 0, vote: null });
    net.node('n3').step(msg.vote('n2', 'n3', 1, { index: 0, term: 0 }));
    expect(net.handleReady('n3')?.messagesAfterPersist.map(describeMessage)).toEqual(['n3->n2 MsgVoteResp Term:1 Granted']);
    expect(net.status('n1').role).toBe(Role.Candidate); // n1 never heard from n3
  });

  it('3.8: what was persisted survives a crash: term, vote, log and commit', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'a');
    net.stabilize();
    const before = net.status('n3');
    net.crash('n3');
    net.restart('n3');
    expect(net.status('n3')).toMatchObject({ term: before.term, vote: before.vote, lastIndex: before.lastIndex, commit: before.commit });
    net.stabilize();
    expect(net.applied('n3')).toEqual(['a']); // replayed from its own log
  });

  it('10.2.1: a leader that crashes after sending an entry but before persisting it loses its own copy; the followers’ copies survive', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'x');
    const rd = net.node('n1').ready();
    net.send(rd.messages); // the appends leave before the leader's own write...
    net.crash('n1'); // ...which never happens
    net.stabilize();
    expect(net.status('n2').lastIndex).toBe(2);
    expect(net.status('n2').commit).toBe(1);

    net.restart('n1');
    expect(net.status('n1')).toMatchObject({ lastIndex: 1, term: 1 });
    let ticks = 0;
    while (net.leader() === null && ticks++ < 100) {
      for (const id of net.ids) net.tick(id);
      net.stabilize();
    }
    const lead = net.leader();
    expect(lead === 'n2' || lead === 'n3').toBe(true); // n1's log is behind theirs
    net.heartbeat(lead!);
    net.stabilize();
    for (const id of net.ids) expect(net.applied(id)).toEqual(['x']);
  });
});

describe('Ready / advance protocol', () => {
  it('ready() twice without advance() throws RaftAssertionError', () => {
    const net = new Network();
    net.campaign('n1');
    net.node('n1').ready();
    expect(() => net.node('n1').ready()).toThrow(RaftAssertionError);
  });

  it('advance() without a Ready in flight throws RaftAssertionError', () => {
    const net = new Network();
    expect(() => net.node('n1').advance()).toThrow(RaftAssertionError);
  });

  it('hasReady() is false while a Ready is in flight, even as new work arrives; true again after advance()', () => {
    const net = new Network();
    net.elect('n1');
    const n1 = net.node('n1');
    net.propose('n1', 'a');
    expect(n1.hasReady()).toBe(true);
    const rd = n1.ready();
    expect(n1.hasReady()).toBe(false);
    net.propose('n1', 'b'); // inputs are allowed while the Ready is in flight
    n1.tick();
    expect(n1.hasReady()).toBe(false);
    net.persist('n1', rd);
    n1.advance();
    expect(n1.hasReady()).toBe(true);
    expect(n1.ready().entries.map(describeEntry)).toEqual(['1/3']);
  });
});
