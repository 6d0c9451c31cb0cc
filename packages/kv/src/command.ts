/**
 * The commands the replicated state machine executes, and their encoding in a log entry.
 *
 * Two checks with different purposes:
 * - `decodeCommand` checks structure only (known operation, field types, a non-empty well-formed
 *   key, a bounded client id). It runs at apply time on every replica, so it depends on nothing a
 *   node may configure differently.
 * - `validateCommand` adds the per-node admission limits (key and value sizes) and is called
 *   before proposing, so an oversized request is refused without touching the log.
 */
import { decode, encode } from '@raftkv/codec';
import { ErrorCode, RaftKvError } from '@raftkv/raft';
import type { LogIndex } from '@raftkv/raft';
import { CLIENT_ID_BYTES_MAX, KV_LIMITS_DEFAULT } from './limits.js';
import type { KvLimits } from './limits.js';

/**
 * A client session makes retries exactly-once (Raft thesis section 6.3). A client issues at most
 * one outstanding command per `clientId`, numbering them 1, 2, 3, ...; a retry reuses the number.
 */
export interface ClientSession {
  readonly clientId: string;
  readonly seq: number;
}

export interface PutCommand {
  readonly type: 'put';
  readonly key: string;
  readonly value: Uint8Array;
  readonly session?: ClientSession;
}

export interface DeleteCommand {
  readonly type: 'delete';
  readonly key: string;
  readonly session?: ClientSession;
}

/**
 * What a compare-and-set expects: the key's modification index (the log index of the command
 * that last wrote it; always >= 1, so `{ modIndex: 0 }` never matches), or that the key is absent.
 */
export type CasExpect = { readonly modIndex: LogIndex } | { readonly absent: true };

export interface CasCommand {
  readonly type: 'cas';
  readonly key: string;
  readonly value: Uint8Array;
  readonly expect: CasExpect;
  readonly session?: ClientSession;
}

export type Command = PutCommand | DeleteCommand | CasCommand;
export type CommandType = Command['type'];

export function encodeCommand(command: Command): Uint8Array {
  // Re-check the structure so that what we propose is exactly what decodeCommand accepts.
  const checked = checkCommand(command);
  return encode(checked);
}

/** Decodes and checks the structure of command bytes; anything else is RaftKvError COMMAND_INVALID. */
export function decodeCommand(bytes: Uint8Array): Command {
  let raw: unknown;
  try {
    raw = decode(bytes);
  } catch (cause) {
    throw invalid('command bytes do not decode', cause);
  }
  return checkCommand(raw);
}

/**
 * Checks a command against the admission limits before it is proposed. Throws RaftKvError with
 * KEY_INVALID, KEY_TOO_LARGE, VALUE_TOO_LARGE, or COMMAND_INVALID for a malformed session or
 * expectation.
 */
export function validateCommand(command: Command, limits: Pick<KvLimits, 'keyBytesMax' | 'valueBytesMax'> = KV_LIMITS_DEFAULT): void {
  validateKey(command.key, limits.keyBytesMax);
  if (command.type !== 'delete' && command.value.byteLength > limits.valueBytesMax) {
    throw new RaftKvError(
      ErrorCode.VALUE_TOO_LARGE,
      `value of ${command.value.byteLength} bytes is larger than the limit of ${limits.valueBytesMax} bytes`,
    );
  }
  checkCommand(command);
}

/** Throws KEY_INVALID (empty, or not valid UTF-8 text) or KEY_TOO_LARGE. */
export function validateKey(key: string, keyBytesMax: number = KV_LIMITS_DEFAULT.keyBytesMax): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new RaftKvError(ErrorCode.KEY_INVALID, 'key must be a non-empty string');
  }
  if (!isWellFormedText(key)) {
    throw new RaftKvError(ErrorCode.KEY_INVALID, 'key is not valid UTF-8 text (it holds a lone surrogate)');
  }
  const keyBytes = Buffer.byteLength(key, 'utf8');
  if (keyBytes > keyBytesMax) {
    throw new RaftKvError(ErrorCode.KEY_TOO_LARGE, `key of ${keyBytes} bytes is larger than the limit of ${keyBytesMax} bytes`);
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A JS string encodes to valid UTF-8 exactly when it holds no lone surrogate. */
export function isWellFormedText(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

const FIELDS: Readonly<Record<CommandType, readonly string[]>> = {
  put: ['type', 'key', 'value', 'session'],
  delete: ['type', 'key', 'session'],
  cas: ['type', 'key', 'value', 'expect', 'session'],
};

/** Builds a fresh, exactly-shaped Command from untrusted input, or throws COMMAND_INVALID. */
function checkCommand(raw: unknown): Command {
  const record = plainRecord(raw, 'command');
  const type = record['type'];
  if (type !== 'put' && type !== 'delete' && type !== 'cas') throw invalid('unknown command type');
  onlyFields(record, FIELDS[type], 'command');
  const key = checkKeyShape(record['key']);
  const session = record['session'] === undefined ? undefined : checkSession(record['session']);
  const withSession = session === undefined ? {} : { session };
  switch (type) {
    case 'put':
      return { type, key, value: checkValue(record['value']), ...withSession };
    case 'delete':
      return { type, key, ...withSession };
    case 'cas':
      return { type, key, value: checkValue(record['value']), expect: checkExpect(record['expect']), ...withSession };
  }
}

function checkKeyShape(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || !isWellFormedText(key)) {
    throw invalid('key must be a non-empty, well-formed string');
  }
  return key;
}

function checkValue(value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid('value must be bytes');
  return value;
}

function checkSession(raw: unknown): ClientSession {
  const record = plainRecord(raw, 'session');
  onlyFields(record, ['clientId', 'seq'], 'session');
  const clientId = record['clientId'];
  const seq = record['seq'];
  if (typeof clientId !== 'string' || clientId.length === 0 || !isWellFormedText(clientId)) {
    throw invalid('session clientId must be a non-empty, well-formed string');
  }
  if (Buffer.byteLength(clientId, 'utf8') > CLIENT_ID_BYTES_MAX) {
    throw invalid(`session clientId is longer than ${CLIENT_ID_BYTES_MAX} bytes`);
  }
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw invalid('session seq must be a non-negative integer');
  }
  return { clientId, seq };
}

function checkExpect(raw: unknown): CasExpect {
  const record = plainRecord(raw, 'cas expectation');
  if (Object.hasOwn(record, 'absent')) {
    onlyFields(record, ['absent'], 'cas expectation');
    if (record['absent'] !== true) throw invalid('cas expectation absent must be true');
    return { absent: true };
  }
  onlyFields(record, ['modIndex'], 'cas expectation');
  const modIndex = record['modIndex'];
  if (typeof modIndex !== 'number' || !Number.isSafeInteger(modIndex) || modIndex < 0) {
    throw invalid('cas expectation must be { modIndex: integer >= 0 } or { absent: true }');
  }
  return { modIndex };
}

function plainRecord(raw: unknown, what: string): Readonly<Record<string, unknown>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw invalid(`${what} must be a map`);
  }
  return raw as Record<string, unknown>;
}

function onlyFields(record: Readonly<Record<string, unknown>>, allowed: readonly string[], what: string): void {
  for (const name of Object.keys(record)) {
    if (!allowed.includes(name)) throw invalid(`${what} has an unknown field`);
  }
}

function invalid(message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.COMMAND_INVALID, message, cause === undefined ? {} : { cause });
}
