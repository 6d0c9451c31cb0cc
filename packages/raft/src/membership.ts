/**
 * Membership changes, one server at a time (thesis section 4.1, "Cluster membership changes"):
 * a change adds a learner, promotes a learner to voter, or removes a member. Any two
 * configurations one such change apart have overlapping majorities, so no joint configuration
 * is needed, as long as a leader never has two changes in flight (`Raft.proposeConfChange`).
 *
 * As the thesis prescribes, a node uses the latest configuration in its log, whether or not
 * that entry is committed: a change takes effect on each node when its entry is appended, and
 * is undone if a new leader truncates it away. A leader starts a change only once the previous
 * one is committed and once an entry of its own term is committed (the 2015 correction to the
 * single-server algorithm).
 *
 * The first configuration of a cluster is an entry too (`bootstrap`, at index 1), so that a
 * node that joins later learns every configuration from the log or from a snapshot.
 */
import { assert } from './assert.js';
import { ErrorCode, RaftKvError } from './errors.js';
import type { ConfState, LogIndex, NodeId } from './types.js';
import { utf8Decode, utf8Encode } from './utf8.js';

export type ConfChange =
  /** The cluster's first configuration: only ever the entry at index 1, written at bootstrap. */
  | { readonly type: 'bootstrap'; readonly voters: readonly NodeId[] }
  /** A node that receives the log but does not vote (thesis section 4.2.1). */
  | { readonly type: 'add-learner'; readonly id: NodeId }
  /** A learner becomes a voter. */
  | { readonly type: 'promote'; readonly id: NodeId }
  /** A voter or a learner leaves. */
  | { readonly type: 'remove'; readonly id: NodeId };

export type ConfChangeType = ConfChange['type'];

const SEPARATOR = 0;

/**
 * The data of a configuration entry: the change as JSON, a NUL byte, then `context`, bytes the
 * core does not read (the node puts the new member's addresses and identity there). JSON never
 * holds a raw NUL, so the first one ends the change.
 */
export function encodeConfChange(change: ConfChange, context: Uint8Array = new Uint8Array(0)): Uint8Array {
  const head = utf8Encode(JSON.stringify(change));
  const data = new Uint8Array(head.byteLength + 1 + context.byteLength);
  data.set(head, 0);
  data[head.byteLength] = SEPARATOR;
  data.set(context, head.byteLength + 1);
  return data;
}

/** The change and the context of a configuration entry. Throws COMMAND_INVALID on anything else. */
export function decodeConfChange(data: Uint8Array): { change: ConfChange; context: Uint8Array } {
  const end = data.indexOf(SEPARATOR);
  const invalid = (why: string): never => {
    throw new RaftKvError(ErrorCode.COMMAND_INVALID, `configuration entry: ${why}`);
  };
  if (end < 0) invalid('no separator');
  const text = utf8Decode(data.subarray(0, end));
  if (text === null) return invalid('not UTF-8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    invalid('not JSON');
  }
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const isId = (v: unknown): v is NodeId => typeof v === 'string' && v !== '';
  let change: ConfChange | null = null;
  if (r['type'] === 'bootstrap' && Array.isArray(r['voters']) && r['voters'].every(isId) && r['voters'].length > 0) {
    change = { type: 'bootstrap', voters: [...(r['voters'] as NodeId[])] };
  } else if ((r['type'] === 'add-learner' || r['type'] === 'promote' || r['type'] === 'remove') && isId(r['id'])) {
    change = { type: r['type'], id: r['id'] };
  }
  if (change === null) return invalid(`unknown change ${JSON.stringify(raw)}`);
  return { change, context: data.subarray(end + 1) };
}

/** Why `change` cannot follow `conf`, or null when it can. */
export function confChangeRefusal(conf: ConfState, change: ConfChange): string | null {
  const isVoter = conf.voters.includes((change as { id?: NodeId }).id ?? '');
  const isLearner = conf.learners.includes((change as { id?: NodeId }).id ?? '');
  switch (change.type) {
    case 'bootstrap':
      return conf.voters.length === 0 && conf.learners.length === 0 ? null : 'the cluster already has a configuration';
    case 'add-learner':
      return isVoter || isLearner ? `${change.id} is already a member` : null;
    case 'promote':
      return isLearner ? null : isVoter ? `${change.id} is already a voter` : `${change.id} is not a learner`;
    case 'remove':
      if (!isVoter && !isLearner) return `${change.id} is not a member`;
      return isVoter && conf.voters.length === 1 ? `${change.id} is the last voter` : null;
  }
}

/** The configuration after `change`, which must be allowed (`confChangeRefusal`). */
export function applyConfChange(conf: ConfState, change: ConfChange): ConfState {
  const refusal = confChangeRefusal(conf, change);
  assert(refusal === null, `applying a configuration change that cannot follow: ${refusal}`);
  switch (change.type) {
    case 'bootstrap':
      return { voters: [...change.voters], learners: [] };
    case 'add-learner':
      return { voters: [...conf.voters], learners: [...conf.learners, change.id] };
    case 'promote':
      return { voters: [...conf.voters, change.id], learners: conf.learners.filter((id) => id !== change.id) };
    case 'remove':
      return { voters: conf.voters.filter((id) => id !== change.id), learners: conf.learners.filter((id) => id !== change.id) };
  }
}

/**
 * The configurations in a node's log, by the index of the entry that made each: the current one
 * (the latest), and the one in force at any index a snapshot may be taken at.
 *
 * Invariant: indexes ascend; the first element is at or below the log's snapshot index.
 */
export class ConfHistory {
  #entries: { readonly index: LogIndex; readonly conf: ConfState }[];

  constructor(index: LogIndex, conf: ConfState) {
    this.#entries = [{ index, conf }];
  }

  get current(): ConfState {
    return this.#entries[this.#entries.length - 1]!.conf;
  }

  /** The index of the entry that made the current configuration. */
  get currentIndex(): LogIndex {
    return this.#entries[this.#entries.length - 1]!.index;
  }

  record(index: LogIndex, conf: ConfState): void {
    const last = this.#entries[this.#entries.length - 1]!;
    assert(index > last.index, `configuration at ${index} recorded after one at ${last.index}`);
    this.#entries.push({ index, conf });
  }

  /** Entries from `index` on were truncated away: their configurations are undone. */
  truncateFrom(index: LogIndex): void {
    assert(index > this.#entries[0]!.index, `truncating configurations from ${index}, at or below the base ${this.#entries[0]!.index}`);
    while (this.#entries[this.#entries.length - 1]!.index >= index) this.#entries.pop();
  }

  /** The configuration in force at `index` (made by the last change at or before it). */
  at(index: LogIndex): ConfState {
    let found = this.#entries[0]!;
    assert(index >= found.index, `configuration at ${index} asked, history starts at ${found.index}`);
    for (const e of this.#entries) {
      if (e.index > index) break;
      found = e;
    }
    return found.conf;
  }

  /** Everything was replaced by a snapshot at `index`. */
  reset(index: LogIndex, conf: ConfState): void {
    this.#entries = [{ index, conf }];
  }

  /** Forgets what no snapshot can ask for any more: everything before the one in force at `index`. */
  prune(index: LogIndex): void {
    let keep = 0;
    while (keep + 1 < this.#entries.length && this.#entries[keep + 1]!.index <= index) keep++;
    if (keep > 0) this.#entries = this.#entries.slice(keep);
  }
}
