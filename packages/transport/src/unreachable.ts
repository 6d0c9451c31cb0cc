import type { NodeId } from '@raftkv/raft';

/**
 * Collects "peer unreachable" reports and delivers them on the next event-loop turn, each peer
 * once per turn: a burst of failed sends becomes one report, and the report never runs inside
 * `send()` (which the node calls while it is handling a Ready).
 */
export class UnreachableReports {
  readonly #report: (id: NodeId) => void;
  #ids = new Set<NodeId>();

  constructor(report: (id: NodeId) => void) {
    this.#report = report;
  }

  add(id: NodeId): void {
    if (this.#ids.size === 0) {
      setImmediate(() => {
        const ids = this.#ids;
        this.#ids = new Set();
        for (const peer of ids) this.#report(peer);
      });
    }
    this.#ids.add(id);
  }
}
