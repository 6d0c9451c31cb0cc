import type { BasicStatus, Entry, LogIndex, NodeId, Term } from '@raftkv/raft';

/** What the checker reads of a node's log: a RawNode or a Replica. */
export interface LogView {
  termAt(index: LogIndex): Term | undefined;
}

/** A register write a committed entry makes: the key and the value. */
export interface RegisterWrite {
  readonly key: string;
  readonly value: string;
}

/** A broken safety property: the run stops at the step that revealed it. */
export interface Violation {
  readonly property: string;
  readonly detail: string;
}

interface CommittedEntry {
  readonly term: Term;
  readonly dataId: number;
  /** The term in which it was first seen committed (the committing leader's); leaders of later terms must hold it. */
  committedInTerm: Term;
}

/**
 * The Raft safety properties (paper figure 3), checked incrementally as the run goes, so each
 * violation is reported at the step that caused it:
 *
 *   election safety       at most one leader per term
 *   log matching          two logs with an entry of the same index and term hold the same entry
 *                         and agree on the entry before it (which, by induction, is the property)
 *   leader completeness   a new leader's log holds every entry committed in an earlier term
 *                         (a leader of an older term, woken late, owes nothing to later terms)
 *   state machine safety  no two nodes apply different entries at one index; what is applied
 *                         is what was committed
 *   monotonicity          a node's commit and applied indexes never go back within one
 *                         incarnation, and applying is contiguous
 *   snapshot images       an image installed at index A holds, for every key, exactly the last
 *                         committed write at or below A
 */
export class SafetyChecker {
  readonly #leaderOfTerm = new Map<Term, NodeId>();
  /** index -> term -> (data, term of the previous entry) as first seen in any node's log. */
  readonly #entryAt = new Map<LogIndex, Map<Term, { dataId: number; prevTerm: Term }>>();
  readonly #committed: (CommittedEntry | undefined)[] = [];
  readonly #applied: (number | undefined)[] = [];
  readonly #dataIds = new WeakMap<Uint8Array, number>();
  readonly #idsByContent = new Map<string, number>();
  #nextDataId = 1;
  /** Per key, the committed writes in index order. */
  readonly #writes = new Map<string, { index: LogIndex; value: string }[]>();
  readonly #decode: (entry: Entry) => RegisterWrite | null;
  maxCommitted: LogIndex = 0;
  elections = 0;

  constructor(decode: (entry: Entry) => RegisterWrite | null) {
    this.#decode = decode;
  }

  /**
   * Identity of an entry's payload, by content (every client value is unique in a run, and the
   * founding members write byte-identical bootstrap entries). Cached per byte array, since the
   * simulator passes entries by reference.
   */
  dataId(entry: Entry): number {
    if (entry.data.byteLength === 0) return 0; // every no-op; (index, term) tells them apart
    let id = this.#dataIds.get(entry.data);
    if (id === undefined) {
      const content = `${entry.type}:${Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength).toString('latin1')}`;
      id = this.#idsByContent.get(content);
      if (id === undefined) {
        id = this.#nextDataId++;
        this.#idsByContent.set(content, id);
      }
      this.#dataIds.set(entry.data, id);
    }
    return id;
  }

  /** Called when a node is, or has become, leader. */
  onLeader(raw: LogView, status: BasicStatus, newlyElected: boolean): Violation | null {
    const other = this.#leaderOfTerm.get(status.term);
    if (other !== undefined && other !== status.id) {
      return { property: 'election safety', detail: `${status.id} and ${other} are both leaders of term ${status.term}` };
    }
    if (!newlyElected) return null;
    this.#leaderOfTerm.set(status.term, status.id);
    this.elections++;
    for (let i = status.firstIndex; i <= this.maxCommitted; i++) {
      const c = this.#committed[i];
      if (c === undefined || c.committedInTerm >= status.term) continue;
      const t = raw.termAt(i);
      if (t !== c.term) {
        return {
          property: 'leader completeness',
          detail: `${status.id} became leader of term ${status.term} but its entry ${i} has term ${t ?? 'none'}; committed entry ${i} has term ${c.term}`,
        };
      }
    }
    return null;
  }

  /** Entries a node is about to persist; `prevTermOf(i)` is the term it holds at i (undefined: unknown). */
  onEntries(node: NodeId, entries: readonly Entry[], prevTermOf: (index: LogIndex) => Term | undefined): Violation | null {
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      const prevTerm = k > 0 ? entries[k - 1]!.term : prevTermOf(e.index - 1);
      if (prevTerm === undefined) continue; // the previous entry is in a snapshot being installed
      const dataId = this.dataId(e);
      let byTerm = this.#entryAt.get(e.index);
      if (byTerm === undefined) {
        byTerm = new Map();
        this.#entryAt.set(e.index, byTerm);
      }
      const seen = byTerm.get(e.term);
      if (seen === undefined) {
        byTerm.set(e.term, { dataId, prevTerm });
      } else if (seen.dataId !== dataId || seen.prevTerm !== prevTerm) {
        return {
          property: 'log matching',
          detail: `${node} holds entry ${e.term}/${e.index} (previous term ${prevTerm}) that differs from another log's ${e.term}/${e.index} (previous term ${seen.prevTerm})`,
        };
      }
    }
    return null;
  }

  /** A node's commit index moved from `from` to `to`; `entries` are those it holds in (from, to]. */
  onCommit(node: NodeId, from: LogIndex, to: LogIndex, entries: readonly Entry[], nodeTerm: Term): Violation | null {
    if (to < from) return { property: 'monotonic commit', detail: `${node}'s commit index went back from ${from} to ${to}` };
    for (const e of entries) {
      const c = this.#committed[e.index];
      const dataId = this.dataId(e);
      if (c === undefined) {
        this.#committed[e.index] = { term: e.term, dataId, committedInTerm: nodeTerm };
        this.#recordWrite(e);
      } else if (c.term === e.term && c.dataId === dataId) {
        c.committedInTerm = Math.min(c.committedInTerm, nodeTerm);
      } else {
        return {
          property: 'state machine safety',
          detail: `${node} committed ${e.term}/${e.index}, but ${c.term}/${e.index} was committed before`,
        };
      }
    }
    if (to > this.maxCommitted) this.maxCommitted = to;
    return null;
  }

  /** A node applies `entry` right after `appliedBefore`. */
  onApply(node: NodeId, appliedBefore: LogIndex, entry: Entry): Violation | null {
    if (entry.index !== appliedBefore + 1) {
      return { property: 'monotonic apply', detail: `${node} applied ${entry.index} right after ${appliedBefore}` };
    }
    const dataId = this.dataId(entry);
    const seen = this.#applied[entry.index];
    if (seen === undefined) this.#applied[entry.index] = dataId;
    else if (seen !== dataId) {
      return { property: 'state machine safety', detail: `${node} applied a different entry at ${entry.index} than another node` };
    }
    const c = this.#committed[entry.index];
    if (c !== undefined && (c.term !== entry.term || c.dataId !== dataId)) {
      return { property: 'state machine safety', detail: `${node} applied ${entry.term}/${entry.index}, but ${c.term}/${entry.index} is the committed entry` };
    }
    return null;
  }

  /** A node installs a snapshot covering up to `index` with last term `term`. */
  onSnapshot(node: NodeId, index: LogIndex, term: Term): Violation | null {
    const c = this.#committed[index];
    if (c !== undefined && c.term !== term) {
      return { property: 'state machine safety', detail: `${node} installed a snapshot at ${term}/${index}, but ${c.term}/${index} is committed` };
    }
    return null;
  }

  /**
   * A node installed a snapshot image at `index`: for every key, it must hold exactly the last
   * committed write at or below `index` (`image` maps each key it holds to its value and the
   * index that wrote it). Checked only up to the highest commit index seen.
   */
  onImage(node: NodeId, index: LogIndex, image: ReadonlyMap<string, { value: string; modIndex: LogIndex }>): Violation | null {
    if (index > this.maxCommitted) return null;
    const keys = new Set([...image.keys(), ...this.#writes.keys()]);
    for (const key of keys) {
      const writes = this.#writes.get(key) ?? [];
      let expected: { index: LogIndex; value: string } | null = null;
      for (const w of writes) if (w.index <= index) expected = w;
      const held = image.get(key) ?? null;
      const same = expected === null ? held === null : held !== null && held.modIndex === expected.index && held.value === expected.value;
      if (!same) {
        return {
          property: 'snapshot image',
          detail: `${node} installed an image at ${index} whose key ${JSON.stringify(key)} is ${held === null ? 'absent' : `${JSON.stringify(held.value)} from ${held.modIndex}`}; the last committed write at or below ${index} is ${expected === null ? 'none' : `${JSON.stringify(expected.value)} at ${expected.index}`}`,
        };
      }
    }
    return null;
  }

  #recordWrite(entry: Entry): void {
    const write = this.#decode(entry);
    if (write === null) return;
    let list = this.#writes.get(write.key);
    if (list === undefined) {
      list = [];
      this.#writes.set(write.key, list);
    }
    // Usually in index order; a node whose log was compacted past its commit can leave a gap that another fills later.
    const last = list[list.length - 1];
    if (last === undefined || last.index < entry.index) list.push({ index: entry.index, value: write.value });
    else list.splice(list.findIndex((w) => w.index > entry.index), 0, { index: entry.index, value: write.value });
  }
}
