/**
 * A follower that lost its disk. Outside Raft's fault model (the paper assumes persistent state
 * survives), but an operator who wipes a node's data directory must not crash it or strand it.
 */
import { describe, expect, it } from 'vitest';
import { describeMessage, type Message, type NodeId } from '../src/index.js';
import { Network } from './harness.js';

describe('a follower whose disk was wiped', () => {
  it('tells the leader (MsgLogLost) instead of committing what it does not hold, and is brought back from the log', () => {
    const net = new Network();
    net.elect('n1');
    for (let k = 0; k < 5; k++) net.propose('n1', `v${k}`);
    net.stabilize();
    expect(net.status('n1').progress?.get('n3')?.match).toBe(6);

    net.crash('n3');
    net.wipe('n3');
    net.restart('n3');
    expect(net.status('n3').lastIndex).toBe(0);
    net.heartbeat('n1');
    const sent: string[] = [];
    const rd = net.handleReady('n1');
    for (const m of rd?.messages ?? []) sent.push(describeMessage(m));
    net.deliverAll();
    const answer = net.handleReady('n3');
    // It did not commit beyond its (empty) log, and it said why.
    expect(net.status('n3').commit).toBe(0);
    expect(answer?.messagesAfterPersist.map(describeMessage)).toContain('n3->n1 MsgLogLost Term:1 LastIndex:0');
    net.stabilize();
    // The leader forgot its view of n3's log and replicated everything again.
    expect(net.status('n1').progress?.get('n3')?.match).toBe(6);
    expect(net.applied('n3')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
  });

  it('is brought back with a snapshot when the leader compacted its log', () => {
    const net = new Network();
    net.elect('n1');
    for (let k = 0; k < 5; k++) net.propose('n1', `v${k}`);
    net.stabilize();
    net.compact('n1');
    net.crash('n3');
    net.wipe('n3');
    net.restart('n3');
    net.heartbeat('n1');
    net.stabilize();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.status('n3').commit).toBe(6);
    expect(net.status('n3').firstIndex).toBe(7); // it started from the snapshot
  });

  it('5.3: does not commit the entries a deposed leader wrote onto its new disk: it commits only if it holds the heartbeat’s (commit, commitTerm)', () => {
    const net = new Network();
    net.elect('n3');
    net.propose('n3', 'a');
    net.stabilize(); // 1/1 no-op, 1/2 a: committed everywhere
    // n3 is paused (SIGSTOP). It still appends, for nobody.
    const resume = net.isolate('n3');
    for (const v of ['x', 'y', 'z']) net.propose('n3', v);
    net.stabilize();
    // n1 and n2 elect a leader of term 2, which commits other entries at the same indexes.
    let lead: NodeId | null = 'n3';
    while (lead === 'n3') {
      net.tickLockstep(1, ['n1', 'n2']);
      lead = net.leader();
    }
    const follower: NodeId = lead === 'n1' ? 'n2' : 'n1';
    net.heartbeat(lead!);
    net.propose(lead!, 'p');
    net.propose(lead!, 'q');
    net.stabilize();
    expect(net.status(lead!).progress?.get(follower)?.match).toBe(5);
    expect(net.status(follower).commit).toBe(5);

    // The follower's disk is replaced. Before the leader reaches it, n3 resumes and fills it
    // with its own log (n3 never learns that it did: it would commit x, y, z).
    net.cut(lead!, follower);
    net.crash(follower);
    net.wipe(follower);
    net.restart(follower);
    resume();
    net.cut('n3', lead!);
    net.drop((m: Message) => m.from === follower && m.to === 'n3' && m.type === 'MsgAppResp' && !m.reject);
    net.heartbeat('n3');
    net.stabilize();
    expect(net.node(follower).entries(1, 6).map((e) => e.term)).toEqual([1, 1, 1, 1, 1]);
    expect(net.status(follower)).toMatchObject({ term: 1, lastIndex: 5, commit: 2 });

    // n3 pauses again; the leader's heartbeat arrives: Commit:5 with term 2, which the follower
    // does not hold at 5.
    net.heal();
    net.isolate('n3');
    net.heartbeat(lead!);
    net.handleReady(lead!);
    net.deliverAll();
    expect(net.status(follower).commit).toBe(2);
    const answer = net.handleReady(follower);
    expect(answer?.messagesAfterPersist.map(describeMessage)).toContain(`${follower}->${lead} MsgLogLost Term:2 LastIndex:2`);
    net.stabilize();
    // The leader re-probed from the follower's commit index and replaced n3's entries.
    expect(net.node(follower).entries(1, 6).map((e) => e.term)).toEqual([1, 1, 2, 2, 2]);
    expect(net.status(follower).commit).toBe(5);
    expect(net.applied(follower)).toEqual(['a', 'p', 'q']);
  });

  it('5.3: a heartbeat to a follower whose acknowledged index the leader compacted carries commit 0 and commitTerm 0', () => {
    const net = new Network();
    net.elect('n1');
    net.isolate('n3');
    for (let k = 0; k < 5; k++) net.propose('n1', `v${k}`);
    net.stabilize();
    net.compact('n1');
    expect(net.status('n1').progress?.get('n3')?.match).toBeLessThan(net.status('n1').firstIndex - 1);
    net.clearLog();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.log.filter((l) => l.includes('MsgHeartbeat '))).toEqual([
      'n1->n2 MsgHeartbeat Term:1 Commit:1/6 Round:0 LeaseTick:2',
      'DROP n1->n3 MsgHeartbeat Term:1 Commit:0/0 Round:0 LeaseTick:2',
    ]);
  });

  it('an ordinary heartbeat commit within the log is applied as before', () => {
    const net = new Network();
    net.elect('n1');
    net.propose('n1', 'x');
    net.stabilize();
    net.heartbeat('n1');
    net.stabilize();
    expect(net.status('n2').commit).toBe(2);
  });
});
