/**
 * A follower that lost its disk. Outside Raft's fault model (the paper assumes persistent state
 * survives), but an operator who wipes a node's data directory must not crash it or strand it.
 */
import { describe, expect, it } from 'vitest';
import { describeMessage } from '../src/index.js';
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
