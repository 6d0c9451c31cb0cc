/**
 * Applying a batch of committed entries, without the I/O: which entries are new, which keys they
 * read, and what they write. The LevelDB state machine and the in-memory one both apply through
 * this module, so they give the same answers and write the same records; only how they read the
 * current records and store the writes differs.
 *
 * Two steps, because reading is asynchronous for LevelDB: `planApply` checks the batch and names
 * the keys to read; `executeApply` runs the commands against those records (updated in place as
 * the batch goes) and returns one result per entry plus the database operations, the applied
 * position last among them.
 */
import { assert, decodeConfChange, EntryType } from '@raftkv/raft';
import type { ConfChange, ConfState, Entry, LogIndex } from '@raftkv/raft';
import { executeCommand, planCommand } from './execute.js';
import type { BatchOp, PlannedCommand } from './execute.js';
import {
  CONF_KEY,
  encodeAppliedRecord,
  encodeConfRecord,
  encodeMemberRecord,
  encodeRemovedRecord,
  encodeSessionRecord,
  memberInfoOf,
  memberKey,
  META_APPLIED_KEY,
  removedKey,
  sessionKey,
} from './records.js';
import type { AppliedPosition, SessionRecord, StoredValue } from './records.js';
import { invalidResult, InvalidReason } from './result.js';
import type { ApplyResult, CommandResult } from './result.js';
import type { SessionTable } from './sessions.js';

interface Work {
  readonly entry: Entry;
  readonly planned: PlannedCommand;
  /** A membership change and its context, for configuration entries that decode. */
  readonly conf: { readonly change: ConfChange; readonly context: Uint8Array } | null;
}

export interface ApplyPlan {
  /** Entries at or below the applied index: a replay after a restart or a snapshot, skipped. */
  readonly skipped: readonly Entry[];
  /** Entries to execute, contiguous from the applied index + 1. */
  readonly work: readonly Work[];
  /** Every user key the work reads or writes, once each. */
  readonly keys: readonly string[];
}

export interface ApplyOutcome {
  /** One per entry given to `planApply`, in order. */
  readonly results: readonly ApplyResult[];
  /** The writes, in order; the applied-position record is the last. Empty when nothing was new. */
  readonly ops: readonly BatchOp[];
  /** The position once the ops are written; unchanged when nothing was new. */
  readonly applied: AppliedPosition;
  /** The configuration once the ops are written. */
  readonly conf: ConfState;
}

/**
 * Checks that `entries` are contiguous and follow `applied` (entries at or below it are skipped),
 * and decodes their commands. Throws an assertion failure on a gap or a term going back: the log
 * hands out entries in order, so either is a bug of the caller.
 */
export function planApply(entries: readonly Entry[], applied: AppliedPosition): ApplyPlan {
  const skipped: Entry[] = [];
  const work: Work[] = [];
  let previous: Entry | null = null;
  for (const entry of entries) {
    assert(previous === null || entry.index === previous.index + 1, `apply: entry ${entry.index} does not follow ${String(previous?.index)}`);
    assert(previous === null || entry.term >= previous.term, `apply: entry ${entry.index} has a lower term than its predecessor`);
    previous = entry;
    if (entry.index <= applied.index) {
      skipped.push(entry);
      continue;
    }
    // Contiguity above makes this the only gap check needed: the first entry not yet applied.
    assert(work.length > 0 || entry.index === applied.index + 1, `apply: gap, entry ${entry.index} after applied index ${applied.index}`);
    assert(work.length > 0 || entry.term >= applied.term, `apply: entry ${entry.index} has a term below the applied term`);
    work.push({ entry, planned: planCommand(entry), conf: entry.type === EntryType.ConfChange ? confChangeOf(entry) : null });
  }
  const keys = [...new Set(work.flatMap(({ planned }) => (planned === null || planned.type === 'invalid' ? [] : [planned.key])))];
  return { skipped, work, keys };
}

/**
 * Executes the plan. `current` holds the record of every key in `plan.keys` (null: absent) and is
 * updated in place; `sessions` is updated in place too, so a caller that fails to write the ops
 * must discard both (the state machine then refuses further use until it is reopened).
 */
export function executeApply(
  plan: ApplyPlan,
  applied: AppliedPosition,
  current: Map<string, StoredValue | null>,
  sessions: SessionTable,
  conf: ConfState,
): ApplyOutcome {
  const results: ApplyResult[] = plan.skipped.map((entry) => ({ index: entry.index, result: null }));
  const ops: BatchOp[] = [];
  let newConf = conf;
  for (const { entry, planned, conf: changed } of plan.work) {
    results.push({ index: entry.index, result: executeWithSession(entry.index, planned, current, sessions, ops) });
    if (changed === null) continue;
    newConf = followConf(newConf, changed.change);
    memberOps(entry.index, changed.change, changed.context, ops);
  }
  const last = plan.work[plan.work.length - 1]?.entry;
  if (last === undefined) return { results, ops, applied, conf };
  if (newConf !== conf) ops.push({ type: 'put', key: CONF_KEY, value: encodeConfRecord(newConf) });
  const position = { index: last.index, term: last.term };
  ops.push({ type: 'put', key: META_APPLIED_KEY, value: encodeAppliedRecord(position) });
  assert(results.length === plan.skipped.length + plan.work.length, 'apply: one result per entry');
  return { results, ops, applied: position, conf: newConf };
}

/** The change of a configuration entry, or null when its bytes do not decode (then it changes nothing, on every replica). */
function confChangeOf(entry: Entry): { change: ConfChange; context: Uint8Array } | null {
  try {
    return decodeConfChange(entry.data);
  } catch {
    return null;
  }
}

/** A member added keeps what its change said of it (addresses, identity); a member removed leaves a tombstone. */
function memberOps(index: LogIndex, change: ConfChange, context: Uint8Array, ops: BatchOp[]): void {
  if (change.type === 'add-learner') {
    ops.push({ type: 'put', key: memberKey(change.id), value: encodeMemberRecord(change.id, memberInfoOf(context)) });
  } else if (change.type === 'remove') {
    ops.push({ type: 'del', key: memberKey(change.id) });
    ops.push({ type: 'put', key: removedKey(change.id), value: encodeRemovedRecord(change.id, index) });
  }
}

/**
 * The configuration after a committed change. The core checked the change against its log's
 * configuration; this record only follows it, so it is total (a change that cannot follow, as
 * on a state machine that began before configurations were recorded here, changes what it can)
 * and the same on every replica.
 */
function followConf(conf: ConfState, change: ConfChange): ConfState {
  const without = (ids: readonly string[], id: string): string[] => ids.filter((x) => x !== id);
  switch (change.type) {
    case 'bootstrap':
      return { voters: [...change.voters], learners: [] };
    case 'add-learner':
      return conf.voters.includes(change.id) || conf.learners.includes(change.id) ? conf : { voters: [...conf.voters], learners: [...conf.learners, change.id] };
    case 'promote':
      return { voters: conf.voters.includes(change.id) ? [...conf.voters] : [...conf.voters, change.id], learners: without(conf.learners, change.id) };
    case 'remove':
      return { voters: without(conf.voters, change.id), learners: without(conf.learners, change.id) };
  }
}

/** One entry's effect, with the client session's exactly-once rule (Raft thesis section 6.3). */
function executeWithSession(
  index: LogIndex,
  planned: PlannedCommand,
  current: Map<string, StoredValue | null>,
  sessions: SessionTable,
  ops: BatchOp[],
): CommandResult | null {
  if (planned === null || planned.type === 'invalid') return planned;
  const session = planned.session;
  if (session === undefined) return executeCommand(planned, index, current, ops);
  const prior = sessions.get(session.clientId);
  if (prior !== undefined && session.seq < prior.seq) return invalidResult(InvalidReason.SessionSeqStale);
  // A retry of the last command returns its stored result: the command is not executed twice.
  const result = prior !== undefined && session.seq === prior.seq ? prior.result : executeCommand(planned, index, current, ops);
  const record: SessionRecord = { clientId: session.clientId, seq: session.seq, index, result };
  const evicted = sessions.put(record);
  ops.push({ type: 'put', key: sessionKey(record.clientId), value: encodeSessionRecord(record) });
  for (const gone of evicted) ops.push({ type: 'del', key: sessionKey(gone.clientId) });
  return result;
}
