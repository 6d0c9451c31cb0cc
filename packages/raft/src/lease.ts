import { majorityValue } from './quorum.js';
import type { NodeId } from './types.js';

/**
 * How many of its own ticks a leader may rely on the lease after it sent a heartbeat that a
 * majority acknowledged (thesis section 6.4.1). 0 means never.
 *
 * A follower that receives a heartbeat resets its election timer and refuses votes until its
 * `electionTimeoutTicks`-th tick after receipt (`Raft.#acceptHigherTerm`), which comes at least
 * (ET - 1) of its tick periods later: its first tick may follow the receipt at once. The
 * heartbeat was created at the leader's tick count T, so at the leader's tick count N less than
 * (N + 1 - T) leader tick periods have passed since it was sent. With every clock's rate within
 * [1 - d, 1 + d] of the nominal rate, the followers' refusal outlasts the leader's lease while
 * (N + 1 - T) / (1 - d) <= (ET - 1) / (1 + d), that is while N - T < the value returned here.
 * A majority that refuses votes means no other leader can be elected in the meantime, so the
 * leader's commit index is the latest.
 */
export function leaseTicks(electionTimeoutTicks: number, clockDriftMax: number): number {
  return Math.floor(((electionTimeoutTicks - 1) * (1 - clockDriftMax)) / (1 + clockDriftMax));
}

/** A voter that has acknowledged no heartbeat of this leader. Below every tick count. */
const NO_ACK = -1;

/**
 * The leader lease of lease-based reads (thesis section 6.4.1), measured on the leader's own
 * logical clock (its tick count) from the moment an acknowledged heartbeat was *sent*, never
 * from when its acknowledgement arrived: a slow acknowledgement must not stretch the lease.
 * Lives for one term of one leader; `reset` on every role change.
 *
 * Invariant: every acknowledged tick is at most the leader's current tick count.
 */
export class LeaderLease {
  readonly #leaseTicks: number;
  /** Per peer, the largest `leaseTick` it echoed in this term. */
  readonly #ackedTicks = new Map<NodeId, number>();
  /**
   * MsgTimeoutNow was sent in this term. Its target campaigns with `transfer`, which overrides
   * the followers' lease (thesis section 3.10), and it may do so at any later time (a delayed
   * message), so no lease read is safe for the rest of the term.
   */
  #revoked = false;

  constructor(leaseTicks: number) {
    this.#leaseTicks = leaseTicks;
  }

  /** `from` acknowledged a heartbeat this leader created at `leaseTick`. */
  recvAck(from: NodeId, leaseTick: number, nowTick: number): void {
    if (leaseTick > nowTick) return; // never sent by this leader: a confused peer
    if (leaseTick > (this.#ackedTicks.get(from) ?? NO_ACK)) this.#ackedTicks.set(from, leaseTick);
  }

  revoke(): void {
    this.#revoked = true;
  }

  reset(): void {
    this.#ackedTicks.clear();
    this.#revoked = false;
  }

  /** Whether a majority of `voters` still refuses to elect anyone else at `nowTick`; `self` counts as acknowledging now. */
  holds(voters: readonly NodeId[], self: NodeId, nowTick: number): boolean {
    if (this.#revoked || this.#leaseTicks < 1) return false;
    const anchor = majorityValue(voters, (id) => (id === self ? nowTick : (this.#ackedTicks.get(id) ?? NO_ACK)));
    return anchor !== NO_ACK && nowTick - anchor < this.#leaseTicks;
  }
}
