/**
 * Messages from peers are input, not proof: a confused or hostile peer can send anything the
 * wire format allows. Before the core acts on a message it is screened; one that cannot be
 * what it claims is dropped and counted (`Raft.dropped`), never turned into an assertion
 * failure. Assertions stay for the core's own bugs.
 *
 * This file holds the checks a message fails on its own, whatever the node's state; the checks
 * against the node's state (a second leader in its term, an acknowledgement past its log) are in
 * `Raft.#refusal`.
 */
import { applyConfChange, confChangeRefusal, decodeConfChange, type ConfChange } from './membership.js';
import { EntryType, type ConfState, type Entry, type Message, type MsgApp, type MsgSnap } from './types.js';

export const DropReason = {
  /** Addressed to another node, or claiming to come from this one. */
  Misaddressed: 'misaddressed',
  /** Entries that are not contiguous after the message's index, or whose terms go back or pass the sender's. */
  MalformedEntries: 'malformed-entries',
  /** A snapshot whose position or configuration cannot be. */
  MalformedSnapshot: 'malformed-snapshot',
  /** An append, heartbeat or snapshot from another node claiming to lead this leader's own term. */
  SecondLeader: 'second-leader',
  /** An acknowledgement of entries past the end of this leader's log. */
  AckBeyondLog: 'ack-beyond-log',
  /** A configuration entry that does not decode or cannot follow the configuration before it. */
  InvalidConfChange: 'invalid-conf-change',
  /** A TimeoutNow or read answer that does not come from this node's leader. */
  NotFromLeader: 'not-from-leader',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

/** Why `m` cannot be what it claims, judged on its own; null when it may be. */
export function malformedMessage(m: Message, self: string): DropReason | null {
  if (m.to !== self || m.from === self) return DropReason.Misaddressed;
  if (m.type === 'MsgApp') return malformedAppend(m);
  if (m.type === 'MsgSnap') return malformedSnapshot(m);
  return null;
}

function malformedAppend(m: MsgApp): DropReason | null {
  if (m.logTerm > m.term) return DropReason.MalformedEntries;
  let prevTerm = m.logTerm;
  for (let k = 0; k < m.entries.length; k++) {
    const e = m.entries[k]!;
    if (e.index !== m.index + 1 + k || e.term < prevTerm || e.term > m.term || e.term < 1) return DropReason.MalformedEntries;
    prevTerm = e.term;
  }
  return null;
}

function malformedSnapshot(m: MsgSnap): DropReason | null {
  const { index, term, confState } = m.snapshot.meta;
  if (index < 1 || term < 1 || term > m.term) return DropReason.MalformedSnapshot;
  const members = [...confState.voters, ...confState.learners];
  if (confState.voters.length === 0 || new Set(members).size !== members.length) return DropReason.MalformedSnapshot;
  return null;
}

/**
 * Whether the configuration entries among `entries` can each follow the configuration before it,
 * starting from `conf` (the configuration in force just before the first entry).
 */
export function confChangesFollow(conf: ConfState, entries: readonly Entry[]): boolean {
  let current = conf;
  for (const e of entries) {
    if (e.type !== EntryType.ConfChange) continue;
    let change: ConfChange;
    try {
      change = decodeConfChange(e.data).change;
    } catch {
      return false;
    }
    if (confChangeRefusal(current, change) !== null) return false;
    current = applyConfChange(current, change);
  }
  return true;
}
