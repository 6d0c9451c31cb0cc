/**
 * The history format the checker consumes: one record per client operation on a per-key register,
 * with the real-time interval during which it was in flight.
 */

export type RegisterValue = string | null;

export interface Operation {
  /** Unique in the history. */
  readonly id: number;
  readonly clientId: number | string;
  readonly key: string;
  readonly kind: 'read' | 'write' | 'cas';
  /** write: the value written (null deletes); cas: the new value. */
  readonly value?: RegisterValue;
  /** cas only: the value the register must hold for the cas to succeed (null = absent). */
  readonly expected?: RegisterValue;
  /** read: the value read; cas: whether it succeeded; absent when the operation is indeterminate. */
  readonly output?: RegisterValue | boolean;
  /** Time of the call (any monotonic number; ties allowed). */
  readonly invoke: number;
  /** Time of the return; null = indeterminate (may or may not have taken effect). */
  readonly complete: number | null;
}

/** Renders a register value for humans: strings quoted, null bare. */
export function formatValue(value: RegisterValue): string {
  if (value === null) return 'null';
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;
}

function formatClient(clientId: number | string): string {
  return typeof clientId === 'number' ? `c${clientId}` : clientId;
}

function formatInterval(op: Operation): string {
  return `[${op.invoke}..${op.complete === null ? '?' : op.complete}]`;
}

/** One line per operation, e.g. `  c3 [120..130] read k1 -> 'v7'`, for failure reports. */
export function formatHistory(ops: readonly Operation[]): string {
  return ops.map(formatOperation).join('\n');
}

function formatOperation(op: Operation): string {
  const head = `  ${formatClient(op.clientId)} ${formatInterval(op)} ${op.kind} ${op.key}`;
  const indeterminate = op.complete === null ? ' (indeterminate)' : '';
  switch (op.kind) {
    case 'read':
      return op.complete === null ? `${head}${indeterminate}` : `${head} -> ${formatValue(asValue(op.output))}`;
    case 'write':
      return `${head} ${formatValue(asValue(op.value))}${indeterminate}`;
    case 'cas': {
      const outcome = op.complete === null ? indeterminate : op.output === true ? ' -> ok' : ' -> failed';
      return `${head} ${formatValue(asValue(op.expected))} => ${formatValue(asValue(op.value))}${outcome}`;
    }
  }
}

/** A human description of one operation, for the verdict's explanation sentence. */
export function describeOperation(op: Operation): string {
  const client = `client ${String(op.clientId)}`;
  const interval = `[${op.invoke},${op.complete === null ? '?' : op.complete}]`;
  switch (op.kind) {
    case 'read':
      return `read of ${op.key} by ${client} at ${interval} returned ${formatValue(asValue(op.output))}`;
    case 'write':
      return `write of ${formatValue(asValue(op.value))} to ${op.key} by ${client} at ${interval}`;
    case 'cas': {
      const outcome = op.complete === null ? 'has an unknown outcome' : op.output === true ? 'succeeded' : 'failed';
      return `cas of ${op.key} from ${formatValue(asValue(op.expected))} to ${formatValue(asValue(op.value))} by ${client} at ${interval} ${outcome}`;
    }
  }
}

/** Formatting must not throw on the odd field, so anything that is not a value prints as null. */
function asValue(value: unknown): RegisterValue {
  return typeof value === 'string' ? value : null;
}

function isRegisterValue(value: unknown): value is RegisterValue {
  return value === null || typeof value === 'string';
}

const kinds: ReadonlySet<string> = new Set(['read', 'write', 'cas']);

/**
 * Rejects malformed histories with a plain Error naming the operation, so that a bug in a history
 * recorder shows up as such and not as a bogus linearizability verdict.
 */
export function validateHistory(history: readonly Operation[]): void {
  if (!Array.isArray(history)) throw new Error('linearizability: history must be an array of operations');
  const seenIds = new Map<number, number>();
  history.forEach((op: Operation | null | undefined, index) => {
    const where = `linearizability: operation at index ${index}`;
    if (typeof op !== 'object' || op === null) throw new Error(`${where} is not an object`);
    const fail = (problem: string): never => {
      throw new Error(`${where} (id ${String(op.id)}) ${problem}`);
    };
    if (typeof op.id !== 'number' || !Number.isFinite(op.id)) fail('has no numeric id');
    const previous = seenIds.get(op.id);
    if (previous !== undefined) fail(`has the same id as the operation at index ${previous}`);
    seenIds.set(op.id, index);
    if (typeof op.clientId !== 'number' && typeof op.clientId !== 'string') fail('has no clientId');
    if (typeof op.key !== 'string') fail('has no string key');
    if (!kinds.has(op.kind)) fail(`has unknown kind ${JSON.stringify(op.kind)} (expected read, write or cas)`);
    if (typeof op.invoke !== 'number' || !Number.isFinite(op.invoke)) fail('has no finite invoke time');
    if (op.complete === undefined) fail('has no complete time (use null for an indeterminate operation)');
    if (op.complete !== null) {
      if (typeof op.complete !== 'number' || !Number.isFinite(op.complete)) fail('has a complete time that is neither a finite number nor null');
      if (op.complete < op.invoke) fail(`completes at ${op.complete}, before it was invoked at ${op.invoke}`);
    }
    if ((op.kind === 'write' || op.kind === 'cas') && !isRegisterValue(op.value)) fail(`(${op.kind}) has no value (string or null)`);
    if (op.kind === 'cas' && !isRegisterValue(op.expected)) fail('(cas) has no expected value (string or null)');
    if (op.complete === null) {
      if (op.output !== undefined) fail('is indeterminate (complete: null) but has an output');
    } else if (op.kind === 'read' && !isRegisterValue(op.output)) {
      fail('(read) has no output (the value read, string or null)');
    } else if (op.kind === 'cas' && typeof op.output !== 'boolean') {
      fail('(cas) has no boolean output');
    }
  });
}
