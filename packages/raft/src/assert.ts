/**
 * Assertions guard the invariants the core relies on. A failed assertion is a bug in raftkv
 * (or memory corruption), never a condition to recover from: it throws `RaftAssertionError`,
 * which no code in raftkv catches, so the process crashes with the message and stack.
 */
export class RaftAssertionError extends Error {
  override readonly name = 'RaftAssertionError';
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new RaftAssertionError(message);
}

/** Exhaustiveness check for discriminated unions: reaching it is a bug. */
export function assertNever(value: never, what: string): never {
  throw new RaftAssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}
