import { assert } from './assert.js';
import { majorityValue } from './quorum.js';
import type { LogIndex, NodeId, ReadContext } from './types.js';

/** A linearizable read waiting for the leader to confirm it is still the leader. */
export interface PendingRead {
  /** Who asked: the leader itself, or a follower that forwarded its client's read. */
  readonly from: NodeId;
  readonly context: ReadContext;
  /** The leader's commit index when the read arrived: the read may be served once this is applied. */
  readonly index: LogIndex;
  /** The heartbeat round whose acknowledgement by a quorum confirms this read. */
  readonly round: number;
}

/** Upper bound on reads waiting at the leader; beyond it new reads are refused. */
export const PENDING_READS_MAX = 65_536;

/**
 * ReadIndex (thesis section 6.4) with batching: a read is confirmed by a quorum acknowledging a
 * heartbeat round that began after the read arrived. Heartbeats always carry the current round,
 * so any heartbeat sent after round r began confirms round r. At most one round is in flight;
 * all reads that arrive meanwhile wait for the next round, which starts as soon as the current
 * one is confirmed. One round of heartbeats thus serves every read waiting on it.
 *
 * Invariants: confirmedRound <= currentRound; pending reads are in arrival order, so their
 * rounds and indexes are non-decreasing.
 */
export class ReadOnly {
  #pending: PendingRead[] = [];
  /** The latest round started. */
  currentRound = 0;
  /** The latest round acknowledged by a quorum. */
  confirmedRound = 0;
  #acked = new Map<NodeId, number>();
  /**
   * The current round's heartbeats have not been handed out in a Ready yet. Every message that
   * carries the round leaves after this moment, so a read arriving now can join the round.
   */
  #roundOpen = false;

  get pendingCount(): number {
    return this.#pending.length;
  }

  /** Adds a read; returns true when a new round must be started (none is open or in flight). */
  add(from: NodeId, context: ReadContext, index: LogIndex): boolean {
    assert(this.#pending.length < PENDING_READS_MAX, 'ReadOnly.add beyond PENDING_READS_MAX');
    const last = this.#pending[this.#pending.length - 1];
    assert(last === undefined || last.index <= index, `read index went back: ${last?.index} -> ${index}`);
    const round = this.#roundOpen ? this.currentRound : this.currentRound + 1;
    this.#pending.push({ from, context, index, round });
    return !this.#roundOpen && this.currentRound === this.confirmedRound;
  }

  startRound(): number {
    this.currentRound++;
    this.#roundOpen = true;
    return this.currentRound;
  }

  /** The messages carrying the current round were handed out: later reads need a later round. */
  closeRound(): void {
    this.#roundOpen = false;
  }

  /**
   * Records that `from` acknowledged a heartbeat of `round` and returns the reads that became
   * safe. `self` counts as having acknowledged the current round.
   */
  recvAck(from: NodeId, round: number, self: NodeId, voters: readonly NodeId[]): PendingRead[] {
    // A round this leader never started can only come from a confused peer: ignore it.
    if (round > this.currentRound) return [];
    if (round > (this.#acked.get(from) ?? 0)) this.#acked.set(from, round);
    this.#acked.set(self, this.currentRound);
    const confirmed = majorityValue(voters, (id) => this.#acked.get(id) ?? 0);
    if (confirmed <= this.confirmedRound) return [];
    this.confirmedRound = Math.min(confirmed, this.currentRound);
    let k = 0;
    while (k < this.#pending.length && this.#pending[k]!.round <= this.confirmedRound) k++;
    return this.#pending.splice(0, k);
  }

  /** Reads waiting for a round that has not started: the caller starts one. */
  needsRound(): boolean {
    return this.currentRound === this.confirmedRound && this.#pending.length > 0;
  }

  /** Drops all waiting reads (leadership lost); their callers time out and retry. */
  reset(): void {
    this.#pending = [];
    this.#acked.clear();
    this.currentRound = 0;
    this.confirmedRound = 0;
    this.#roundOpen = false;
  }
}
