/**
 * Quorum arithmetic against a deliberately naive model (in the spirit of etcd-io/raft's
 * quorum/quick_test.go): the optimised code sorts once; the model counts, value by value.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { majorityValue, voteResult, type NodeId } from '../src/index.js';

/** The largest v such that at least floor(n/2)+1 voters have a value >= v (absent voters count as 0). */
function naiveMajorityValue(voters: readonly NodeId[], valueOf: (id: NodeId) => number): number {
  const quorum = Math.floor(voters.length / 2) + 1;
  const values = voters.map(valueOf);
  let best = -Infinity;
  // The answer is one of the voters' values: try each, keep the largest that a quorum reached.
  for (const candidate of values) {
    const reached = values.filter((v) => v >= candidate).length;
    if (reached >= quorum && candidate > best) best = candidate;
  }
  return best;
}

function naiveVoteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): 'won' | 'lost' | 'pending' {
  const quorum = Math.floor(voters.length / 2) + 1;
  const granted = voters.filter((id) => votes.get(id) === true).length;
  const undecided = voters.filter((id) => !votes.has(id)).length;
  if (granted >= quorum) return 'won';
  // Even if every undecided voter granted, there would be no majority.
  if (granted + undecided < quorum) return 'lost';
  return 'pending';
}

const ALL_IDS = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'x1', 'x2'];
/** 1..7 distinct voters drawn from n1..n7 (x1, x2 are never voters: they model stray entries). */
const votersArb = fc.uniqueArray(fc.constantFrom(...ALL_IDS.slice(0, 7)), { minLength: 1, maxLength: 7 });

describe('majorityValue', () => {
  it('equals the naive quorum definition for random voters and partial value maps', () => {
    fc.assert(
      fc.property(
        votersArb,
        // A value for some of the ids (voters and non-voters); small range so ties are common.
        fc.dictionary(fc.constantFrom(...ALL_IDS), fc.nat({ max: 20 }), { maxKeys: ALL_IDS.length }),
        (voters, dict) => {
          const values = new Map(Object.entries(dict));
          const valueOf = (id: NodeId): number => values.get(id) ?? 0;
          expect(majorityValue(voters, valueOf)).toBe(naiveMajorityValue(voters, valueOf));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('does not depend on the order of the voters', () => {
    const votersAndPermutation = votersArb.chain((voters) =>
      fc.tuple(fc.constant(voters), fc.shuffledSubarray(voters, { minLength: voters.length, maxLength: voters.length })),
    );
    fc.assert(
      fc.property(votersAndPermutation, fc.array(fc.nat({ max: 1000 }), { minLength: 7, maxLength: 7 }), ([voters, permuted], raw) => {
        const valueOf = (id: NodeId): number => raw[ALL_IDS.indexOf(id)]!;
        expect(majorityValue(permuted, valueOf)).toBe(majorityValue(voters, valueOf));
      }),
      { numRuns: 500 },
    );
  });

  it('treats an empty configuration as agreeing to anything', () => {
    expect(majorityValue([], () => 0)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('voteResult', () => {
  it('equals a naive count for random voters and partial vote maps (stray votes ignored)', () => {
    fc.assert(
      fc.property(votersArb, fc.dictionary(fc.constantFrom(...ALL_IDS), fc.boolean(), { maxKeys: ALL_IDS.length }), (voters, dict) => {
        const votes = new Map(Object.entries(dict));
        expect(voteResult(voters, votes)).toBe(naiveVoteResult(voters, votes));
      }),
      { numRuns: 2000 },
    );
  });

  it('is monotone: adding a grant never turns won into something else', () => {
    fc.assert(
      fc.property(votersArb, fc.dictionary(fc.constantFrom(...ALL_IDS), fc.boolean()), fc.nat(), (voters, dict, pick) => {
        const votes = new Map(Object.entries(dict));
        const undecided = voters.filter((id) => !votes.has(id));
        fc.pre(undecided.length > 0);
        const before = voteResult(voters, votes);
        votes.set(undecided[pick % undecided.length]!, true);
        const after = voteResult(voters, votes);
        if (before === 'won') expect(after).toBe('won');
        if (before === 'lost') expect(after).toBe('lost');
      }),
      { numRuns: 1000 },
    );
  });

  it('treats an empty configuration as won', () => {
    expect(voteResult([], new Map())).toBe('won');
  });
});
