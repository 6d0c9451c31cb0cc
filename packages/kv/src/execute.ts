/**
 * What a command does: the deterministic semantics of put, delete and compare-and-set against
 * the key's current record, free of any I/O (the state machine reads and writes around it).
 */
import { assert, assertNever, EntryType, ErrorCode, isRaftKvError } from '@raftkv/raft';
import type { Entry, LogIndex } from '@raftkv/raft';
import { decodeCommand } from './command.js';
import type { Command } from './command.js';
import { dataKey, encodeValueRecord } from './records.js';
import type { StoredValue } from './records.js';
import { invalidResult, InvalidReason } from './result.js';
import type { CommandResult, InvalidResult } from './result.js';

/** A command, a deterministic refusal, or nothing to execute. */
export type PlannedCommand = Command | InvalidResult | null;
export type BatchOp = { readonly type: 'put'; readonly key: Buffer; readonly value: Buffer } | { readonly type: 'del'; readonly key: Buffer };

/** What an entry asks for: a command, a deterministic refusal, or nothing (no-op, configuration entry). */
export function planCommand(entry: Entry): PlannedCommand {
  if (entry.type !== EntryType.Normal || entry.data.byteLength === 0) return null;
  try {
    return decodeCommand(entry.data);
  } catch (error) {
    if (isRaftKvError(error, ErrorCode.COMMAND_INVALID)) return invalidResult(InvalidReason.Undecodable);
    throw error;
  }
}

/** Executes one command against `current` (updated in place) and appends its writes to `ops`. */
export function executeCommand(command: Command, index: LogIndex, current: Map<string, StoredValue | null>, ops: BatchOp[]): CommandResult {
  const stored = current.get(command.key);
  assert(stored !== undefined, 'executeCommand: the key was prefetched');
  const write = (value: Uint8Array): void => {
    const dbKey = dataKey(command.key);
    ops.push({ type: 'put', key: dbKey, value: encodeValueRecord(dbKey, index, value) });
    current.set(command.key, { value, modIndex: index });
  };
  switch (command.type) {
    case 'put':
      write(command.value);
      return { type: 'put', ok: true, modIndex: index };
    case 'delete':
      if (stored !== null) {
        ops.push({ type: 'del', key: dataKey(command.key) });
        current.set(command.key, null);
      }
      return { type: 'delete', ok: true, modIndex: index, existed: stored !== null };
    case 'cas': {
      const expect = command.expect;
      const holds = 'absent' in expect ? stored === null : stored !== null && stored.modIndex === expect.modIndex;
      if (!holds) return { type: 'cas', ok: false, current: stored === null ? null : { modIndex: stored.modIndex } };
      write(command.value);
      return { type: 'cas', ok: true, modIndex: index };
    }
    default:
      return assertNever(command, 'command');
  }
}
