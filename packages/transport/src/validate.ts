import {
  assertNever,
  EntryType,
  ErrorCode,
  RaftKvError,
  type ConfState,
  type Entry,
  type Message,
  type MessageType,
  type NodeId,
  type Snapshot,
} from '@raftkv/raft';

/**
 * Checks, field by field, that a decoded value is a `Message` and rebuilds it from the known
 * fields only (unknown fields are dropped). Bytes from the network are untrusted: nothing reaches
 * the core that the core's types do not describe, so a bad peer can cause a closed connection
 * but never an assertion failure inside Raft.
 */

/** Longest node id accepted from the network (ids are chosen by the operator: `n1`, `db-3`). */
export const NODE_ID_LENGTH_MAX = 256;

const MESSAGE_TYPES: ReadonlySet<string> = new Set<MessageType>([
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgPreVote',
  'MsgVoteResp',
  'MsgPreVoteResp',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgSnap',
  'MsgTimeoutNow',
  'MsgReadIndex',
  'MsgReadIndexResp',
  'MsgTransferLeader',
  'MsgLogLost',
]);
const ENTRY_TYPES: ReadonlySet<string> = new Set<string>(Object.values(EntryType));

type Fields = Readonly<Record<string, unknown>>;

export function invalid(path: string, expected: string): never {
  throw new RaftKvError(ErrorCode.FRAME_INVALID, `${path}: expected ${expected}`);
}

export function expectRecord(value: unknown, path: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    invalid(path, 'a map');
  }
  return value as Fields;
}

/** A non-negative safe integer (terms, indexes, counts). */
export function expectCount(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) invalid(path, 'a non-negative integer');
  return value;
}

export function expectBoolean(value: unknown, path: string): boolean {
  if (typeof value !== 'boolean') invalid(path, 'a boolean');
  return value;
}

export function expectString(value: unknown, path: string): string {
  if (typeof value !== 'string') invalid(path, 'a string');
  return value;
}

export function expectNodeId(value: unknown, path: string): NodeId {
  if (typeof value !== 'string' || value.length === 0 || value.length > NODE_ID_LENGTH_MAX) {
    invalid(path, `a node id of 1 to ${NODE_ID_LENGTH_MAX} characters`);
  }
  return value;
}

export function expectBytes(value: unknown, path: string): Uint8Array {
  if (!(value instanceof Uint8Array)) invalid(path, 'bytes');
  return value;
}

function expectNodeIds(value: unknown, path: string): NodeId[] {
  if (!Array.isArray(value)) invalid(path, 'an array of node ids');
  return value.map((id: unknown, i) => expectNodeId(id, `${path}[${i}]`));
}

/** Entry `i` of `path`; the field's path is only spelled out when it is wrong. */
function expectEntry(value: unknown, path: string, i: number): Entry {
  const at = (field: string): string => `${path}[${i}]${field}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) invalid(at(''), 'a map');
  const f = value as Fields;
  const { term, index, type, data } = f;
  if (typeof type !== 'string' || !ENTRY_TYPES.has(type)) invalid(at('.type'), 'an entry type');
  if (typeof term !== 'number' || !Number.isSafeInteger(term) || term < 0) invalid(at('.term'), 'a non-negative integer');
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) invalid(at('.index'), 'a non-negative integer');
  if (!(data instanceof Uint8Array)) invalid(at('.data'), 'bytes');
  return { term, index, type: type as EntryType, data };
}

/**
 * The entries of a MsgApp follow `index` contiguously, with terms that never decrease, start at
 * or after `logTerm` and never exceed the sender's term (Log Matching, paper section 5.3). A
 * leader's log always looks like this; anything else is corruption.
 */
function expectEntries(value: unknown, index: number, logTerm: number, term: number, path: string): Entry[] {
  if (!Array.isArray(value)) invalid(path, 'an array of entries');
  const entries: Entry[] = new Array<Entry>(value.length);
  let previousTerm = logTerm;
  for (let i = 0; i < value.length; i++) {
    const entry = expectEntry(value[i], path, i);
    if (entry.index !== index + 1 + i) invalid(`${path}[${i}].index`, `${index + 1 + i} (entries are contiguous)`);
    if (entry.term < previousTerm || entry.term > term) invalid(`${path}[${i}].term`, `a term in [${previousTerm}, ${term}]`);
    previousTerm = entry.term;
    entries[i] = entry;
  }
  return entries;
}

function expectConfState(value: unknown, path: string): ConfState {
  const f = expectRecord(value, path);
  return { voters: expectNodeIds(f['voters'], `${path}.voters`), learners: expectNodeIds(f['learners'], `${path}.learners`) };
}

function expectSnapshot(value: unknown, path: string): Snapshot {
  const f = expectRecord(value, path);
  const meta = expectRecord(f['meta'], `${path}.meta`);
  return {
    meta: {
      index: expectCount(meta['index'], `${path}.meta.index`),
      term: expectCount(meta['term'], `${path}.meta.term`),
      confState: expectConfState(meta['confState'], `${path}.meta.confState`),
    },
    data: expectBytes(f['data'], `${path}.data`),
  };
}

/** Validates an untrusted value as a Message; throws a `FRAME_INVALID` RaftKvError naming the first bad field. */
export function validateMessage(value: unknown): Message {
  const f = expectRecord(value, 'message');
  const type = f['type'];
  if (typeof type !== 'string' || !MESSAGE_TYPES.has(type)) invalid('message.type', 'a message type');
  const from = expectNodeId(f['from'], 'message.from');
  const to = expectNodeId(f['to'], 'message.to');
  const term = expectCount(f['term'], 'message.term');
  // Paths are literals and fields are spelled out: this runs for every message received.
  const t = type as MessageType;
  switch (t) {
    case 'MsgApp': {
      const index = expectCount(f['index'], 'message.index');
      const logTerm = expectCount(f['logTerm'], 'message.logTerm');
      const entries = expectEntries(f['entries'], index, logTerm, term, 'message.entries');
      return { type: t, from, to, term, index, logTerm, entries, commit: expectCount(f['commit'], 'message.commit') };
    }
    case 'MsgAppResp':
      return {
        type: t,
        from,
        to,
        term,
        index: expectCount(f['index'], 'message.index'),
        reject: expectBoolean(f['reject'], 'message.reject'),
        rejectHint: expectCount(f['rejectHint'], 'message.rejectHint'),
        logTerm: expectCount(f['logTerm'], 'message.logTerm'),
      };
    case 'MsgVote':
    case 'MsgPreVote':
      return {
        type: t,
        from,
        to,
        term,
        index: expectCount(f['index'], 'message.index'),
        logTerm: expectCount(f['logTerm'], 'message.logTerm'),
        transfer: expectBoolean(f['transfer'], 'message.transfer'),
      };
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      return { type: t, from, to, term, reject: expectBoolean(f['reject'], 'message.reject') };
    case 'MsgHeartbeat':
      return {
        type: t,
        from,
        to,
        term,
        commit: expectCount(f['commit'], 'message.commit'),
        commitTerm: expectCount(f['commitTerm'], 'message.commitTerm'),
        readRound: expectCount(f['readRound'], 'message.readRound'),
        leaseTick: expectCount(f['leaseTick'], 'message.leaseTick'),
      };
    case 'MsgHeartbeatResp':
      return { type: t, from, to, term, readRound: expectCount(f['readRound'], 'message.readRound'), leaseTick: expectCount(f['leaseTick'], 'message.leaseTick') };
    case 'MsgSnap':
      return { type: t, from, to, term, snapshot: expectSnapshot(f['snapshot'], 'message.snapshot') };
    case 'MsgTimeoutNow':
      return { type: t, from, to, term };
    case 'MsgReadIndex':
      return { type: t, from, to, term, context: expectString(f['context'], 'message.context') };
    case 'MsgReadIndexResp':
      return { type: t, from, to, term, index: expectCount(f['index'], 'message.index'), context: expectString(f['context'], 'message.context') };
    case 'MsgTransferLeader':
      return { type: t, from, to, term, transferee: expectNodeId(f['transferee'], 'message.transferee') };
    case 'MsgLogLost':
      return { type: t, from, to, term, lastIndex: expectCount(f['lastIndex'], 'message.lastIndex') };
    default:
      return assertNever(t, 'message type');
  }
}
