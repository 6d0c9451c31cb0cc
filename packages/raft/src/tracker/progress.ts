import { assert } from '../assert.js';
import type { LogIndex, PeerProgress } from '../types.js';
import { Inflights } from './inflights.js';

/**
 * How the leader replicates to one follower. All transitions of `state` happen in the three
 * `become*` methods and nowhere else:
 *
 *   probe      one MsgApp at a time, then wait for its answer; used after a rejection, a restart
 *              of the leader, or a failed snapshot, while the leader searches for the match point.
 *   replicate  the match point is known: stream entries optimistically, up to `inflights.countMax`
 *              messages ahead of the acknowledgements (pipelining).
 *   snapshot   the entries the follower needs are compacted: a snapshot is on its way; send
 *              nothing until it is acknowledged or reported failed.
 *
 * Invariants: 0 <= match < next; in snapshot state pendingSnapshot > 0.
 */
export class Progress {
  match: LogIndex;
  next: LogIndex;
  state: 'probe' | 'replicate' | 'snapshot' = 'probe';
  /** Index of the snapshot in flight (snapshot state only). */
  pendingSnapshot: LogIndex = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In probe state, a MsgApp is outstanding: wait for its answer or a heartbeat response. */
  probeSent = false;
  readonly inflights: Inflights;
  /** Receives the log but never counts towards a quorum; a promotion clears it. */
  isLearner: boolean;

  constructor(next: LogIndex, inflightCountMax: number, isLearner: boolean) {
    assert(next >= 1, `progress next ${next} < 1`);
    this.match = 0;
    this.next = next;
    this.inflights = new Inflights(inflightCountMax);
    this.isLearner = isLearner;
  }

  #resetState(state: Progress['state']): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, resume right after it (or after match, if that is further on).
    const next = this.state === 'snapshot' ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1;
    this.#resetState('probe');
    this.next = next;
  }

  becomeReplicate(): void {
    this.#resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: LogIndex): void {
    assert(snapshotIndex > 0, 'becomeSnapshot with index 0');
    this.#resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /**
   * The follower reported that its log now ends at `lastIndex`, before `match`: its disk was
   * lost. The one place match goes back; probing restarts from the follower's actual end.
   */
  becomeProbeAfterLoss(lastIndex: LogIndex): void {
    assert(lastIndex < this.match, `becomeProbeAfterLoss(${lastIndex}) with match ${this.match}`);
    this.#resetState('probe');
    this.match = 0;
    this.next = lastIndex + 1;
  }

  /** An acknowledgement of `index`: returns false when it is stale (not above match). */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the MsgApp sent after `rejected`, with the follower's hint that its log may
   * match up to `matchHint`. Returns false when the rejection is stale.
   */
  maybeDecrTo(rejected: LogIndex, matchHint: LogIndex): boolean {
    if (this.state === 'replicate') {
      // A rejection of an index at or below match comes from an old, reordered message.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the rejection of the last probe counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Bookkeeping after sending a MsgApp with `count` entries, the last of which is `lastIndex`. */
  sentEntries(count: number, lastIndex: LogIndex): void {
    switch (this.state) {
      case 'replicate':
        if (count > 0) {
          assert(lastIndex >= this.next, `sent entries up to ${lastIndex} below next ${this.next}`);
          this.next = lastIndex + 1;
          this.inflights.add(lastIndex);
        }
        break;
      case 'probe':
        this.probeSent = true;
        break;
      case 'snapshot':
        assert(false, 'sent entries in snapshot state');
    }
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  view(): PeerProgress {
    return {
      match: this.match,
      next: this.next,
      state: this.state,
      inflightCount: this.inflights.count,
      recentActive: this.recentActive,
      pendingSnapshot: this.pendingSnapshot,
    };
  }
}
