import type { NodeId } from './types.js';

/**
 * Majority quorum arithmetic over a set of voters (paper section 5.2 and 5.3).
 */

/**
 * The largest value that a majority of voters have reached: the commit index when `valueOf`
 * gives each voter's match index, the confirmed ReadIndex round when it gives acknowledged
 * rounds. Voters without a value count as 0.
 */
export function majorityValue(voters: readonly NodeId[], valueOf: (id: NodeId) => number): number {
  if (voters.length === 0) return Number.MAX_SAFE_INTEGER; // an empty configuration agrees to anything
  const values = voters.map(valueOf).sort((a, b) => b - a);
  // With n voters, the value at position floor(n/2) (descending) is held by floor(n/2)+1 voters.
  return values[Math.floor(values.length / 2)]!;
}

export type VoteResult = 'won' | 'lost' | 'pending';

/** The outcome of an election given the votes received so far (true = granted). */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return 'won';
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const quorum = Math.floor(voters.length / 2) + 1;
  if (granted >= quorum) return 'won';
  if (voters.length - rejected < quorum) return 'lost';
  return 'pending';
}
