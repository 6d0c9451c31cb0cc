/**
 * A peer's message is input: whatever it says, the core drops what cannot be true and counts it
 * (screen.ts), and never fails an assertion on it. Each case below used to crash a node, or let
 * a forged message take effect.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeConfChange, type Entry, type Message, type NodeId } from '../src/index.js';
import { entry, msg, Network } from './harness.js';

/** n1 leads term 2 of n1..n3 (bootstrap entry, then its no-op), with one more entry committed. */
function cluster(): Network {
  const net = new Network({ bootstrapEntry: true });
  net.elect('n1');
  net.propose('n1', 'a');
  net.stabilize();
  return net;
}

const dropped = (net: Network, id: NodeId): Record<string, number> => Object.fromEntries(net.node(id).droppedMessages());

describe('forged or confused peer messages are dropped and counted, never trusted', () => {
  it('a heartbeat "from a second leader" in the leader\'s own term: dropped (it used to fail an assertion and kill the leader)', () => {
    const net = cluster();
    const { term } = net.status('n1');
    net.node('n1').step({ type: 'MsgHeartbeat', from: 'n2', to: 'n1', term, commit: 0, commitTerm: 0, readRound: 0, leaseTick: 0 });
    net.node('n1').step(msg.app('n3', 'n1', term, { index: 0, term: 0 }, []));
    expect(dropped(net, 'n1')).toEqual({ 'second-leader': 2 });
    expect(net.status('n1').role).toBe('leader');
  });

  it('an acknowledgement past the end of the leader\'s log: dropped (it used to set match to 10^12)', () => {
    const net = cluster();
    const { term, lastIndex } = net.status('n1');
    net.node('n1').step({ type: 'MsgAppResp', from: 'n2', to: 'n1', term, index: 1e12, reject: false, rejectHint: 0, logTerm: 0 });
    expect(dropped(net, 'n1')).toEqual({ 'ack-beyond-log': 1 });
    expect(net.status('n1').progress?.get('n2')?.match).toBeLessThanOrEqual(lastIndex);
  });

  it('a TimeoutNow or a read answer from a node that is not the leader: dropped', () => {
    const net = cluster();
    const { term } = net.status('n2');
    net.node('n2').step({ type: 'MsgTimeoutNow', from: 'n3', to: 'n2', term });
    net.node('n2').step({ type: 'MsgReadIndexResp', from: 'n3', to: 'n2', term, index: 99, context: 'x' });
    expect(dropped(net, 'n2')).toEqual({ 'not-from-leader': 2 });
    expect(net.status('n2').role).toBe('follower');
    expect(net.node('n2').hasReady()).toBe(false);
  });

  it('entries that would rewrite the committed prefix are never appended: the follower answers with its commit index', () => {
    const net = cluster();
    const { term, commit } = net.status('n2');
    expect(commit).toBeGreaterThanOrEqual(2);
    net.node('n2').step(msg.app('n1', 'n2', term, { index: 1, term: 1 }, [entry(term, 2, 'forged')]));
    expect(net.node('n2').termAt(2)).toBe(term);
    expect(net.applied('n2')).not.toContain('forged');
  });

  it('a configuration change that cannot follow, or does not decode: dropped (it used to fail an assertion on append)', () => {
    const net = cluster();
    const { term, lastIndex } = net.status('n2');
    const bad = (data: Uint8Array): Entry => ({ term, index: lastIndex + 1, type: 'conf-change', data });
    net.node('n2').step(msg.app('n1', 'n2', term, { index: lastIndex, term }, [bad(encodeConfChange({ type: 'remove', id: 'n9' }))]));
    net.node('n2').step(msg.app('n1', 'n2', term, { index: lastIndex, term }, [bad(new Uint8Array([1, 2, 3]))]));
    expect(dropped(net, 'n2')).toEqual({ 'invalid-conf-change': 2 });
    expect(net.status('n2').lastIndex).toBe(lastIndex);
  });

  it('malformed appends and snapshots: dropped', () => {
    const net = cluster();
    const { term } = net.status('n2');
    net.node('n2').step(msg.app('n1', 'n2', term, { index: 5, term }, [entry(term, 7)])); // not contiguous
    net.node('n2').step(msg.app('n1', 'n2', term, { index: 1, term: term + 4 }, [])); // log term past the sender's
    net.node('n2').step({ type: 'MsgSnap', from: 'n1', to: 'n2', term, snapshot: { meta: { index: 9, term, confState: { voters: ['n1', 'n1'], learners: [] } }, data: new Uint8Array(0) } });
    net.node('n2').step({ type: 'MsgHeartbeat', from: 'n2', to: 'n2', term, commit: 0, commitTerm: 0, readRound: 0, leaseTick: 0 });
    expect(dropped(net, 'n2')).toEqual({ 'malformed-entries': 2, 'malformed-snapshot': 1, misaddressed: 1 });
  });
});

/** Any message the wire format allows (the transport has already checked types and shapes). */
function messageArb(ids: readonly NodeId[], termMax: number, indexMax: number): fc.Arbitrary<Message> {
  const id = fc.constantFrom(...ids, 'n9');
  const term = fc.integer({ min: 0, max: termMax });
  const index = fc.integer({ min: 0, max: indexMax });
  const data = fc.oneof(fc.uint8Array({ maxLength: 4 }), fc.constant(encodeConfChange({ type: 'add-learner', id: 'n9' })), fc.constant(encodeConfChange({ type: 'remove', id: 'n2' })));
  const entryArb = fc.record({ term: fc.integer({ min: 0, max: termMax }), index, type: fc.constantFrom('normal' as const, 'conf-change' as const), data });
  const confState = fc.record({ voters: fc.array(id, { maxLength: 4 }), learners: fc.array(id, { maxLength: 2 }) });
  const head = fc.record({ from: id, to: id, term });
  return fc.oneof(
    fc.tuple(head, index, term, fc.array(entryArb, { maxLength: 4 }), index).map(([h, i, lt, entries, commit]) => ({ ...h, type: 'MsgApp' as const, index: i, logTerm: lt, entries, commit })),
    fc.tuple(head, index, fc.boolean(), index, term).map(([h, i, reject, hint, lt]) => ({ ...h, type: 'MsgAppResp' as const, index: i, reject, rejectHint: hint, logTerm: lt })),
    fc.tuple(head, index, term, fc.boolean(), fc.boolean()).map(([h, i, lt, transfer, pre]) => ({ ...h, type: pre ? ('MsgPreVote' as const) : ('MsgVote' as const), index: i, logTerm: lt, transfer })),
    fc.tuple(head, fc.boolean(), fc.boolean()).map(([h, reject, pre]) => ({ ...h, type: pre ? ('MsgPreVoteResp' as const) : ('MsgVoteResp' as const), reject })),
    fc.tuple(head, index, term, fc.nat(20), fc.nat(1000)).map(([h, commit, commitTerm, readRound, leaseTick]) => ({ ...h, type: 'MsgHeartbeat' as const, commit, commitTerm, readRound, leaseTick })),
    fc.tuple(head, fc.nat(20), fc.nat(1000)).map(([h, readRound, leaseTick]) => ({ ...h, type: 'MsgHeartbeatResp' as const, readRound, leaseTick })),
    fc.tuple(head, index, term, confState).map(([h, i, t, c]) => ({ ...h, type: 'MsgSnap' as const, snapshot: { meta: { index: i, term: t, confState: c }, data: new Uint8Array(0) } })),
    head.map((h) => ({ ...h, type: 'MsgTimeoutNow' as const })),
    fc.tuple(head, fc.string({ maxLength: 8 })).map(([h, context]) => ({ ...h, type: 'MsgReadIndex' as const, context })),
    fc.tuple(head, index, fc.string({ maxLength: 8 })).map(([h, i, context]) => ({ ...h, type: 'MsgReadIndexResp' as const, index: i, context })),
    fc.tuple(head, id).map(([h, transferee]) => ({ ...h, type: 'MsgTransferLeader' as const, transferee })),
    fc.tuple(head, index).map(([h, lastIndex]) => ({ ...h, type: 'MsgLogLost' as const, lastIndex })),
  );
}

/**
 * What a forged message may legitimately cause: a peer that impersonates a leader of a higher
 * term can make followers accept its entries (the harness's safety monitors then object). Only
 * authentication (mutual TLS on the peer port) stops that. What it must never cause is an
 * assertion failure or any other exception inside the core.
 */
function isMonitorObjection(error: unknown): boolean {
  return error instanceof Error && error.name === 'Error' && /violated|did not (stabilize|settle)|applies .* which is not in its storage|applied \d+ right after \d+/.test(error.message);
}

describe('fuzzing the core with hostile messages', () => {
  it('random well-formed messages stepped into nodes in every role never make the core throw', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('n1', 'n2', 'n3'), messageArb(['n1', 'n2', 'n3'], 6, 12), fc.boolean()), { minLength: 1, maxLength: 10 }),
        fc.nat(3),
        (forged, ticks) => {
          const net = cluster();
          try {
            // A mix of states: some ticks, so that some nodes are candidates or have timed out.
            for (let k = 0; k < ticks; k++) net.tickLockstep(5);
            for (const [target, m, addressed] of forged) {
              net.node(target).step(addressed ? { ...m, to: target } : m);
              net.stabilize(1_000);
            }
            net.settle(500);
          } catch (error) {
            if (!isMonitorObjection(error)) throw error;
          }
        },
      ),
      { numRuns: Number(process.env['RAFTKV_FUZZ_RUNS'] ?? 2_000) },
    );
  });
});
