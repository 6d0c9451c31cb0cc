/**
 * The sequential specification of one register, over interned values so that the search compares
 * and hashes small integers instead of strings.
 */
import type { Operation, RegisterValue } from './history.js';

/** Interned register values: id 0 is null (absent), ids from 1 are distinct strings. */
export class ValueTable {
  readonly #ids = new Map<string, number>();
  readonly #values: RegisterValue[] = [null];

  intern(value: RegisterValue): number {
    if (value === null) return 0;
    let id = this.#ids.get(value);
    if (id === undefined) {
      id = this.#values.length;
      this.#ids.set(value, id);
      this.#values.push(value);
    }
    return id;
  }

  /** How many distinct values (including null) have been interned. */
  get size(): number {
    return this.#values.length;
  }

  value(id: number): RegisterValue {
    return this.#values[id] ?? null;
  }
}

// Step kinds. Determinate and indeterminate cas differ: an indeterminate cas that did not succeed
// is indistinguishable from one that never happened, which the search models by leaving it out.
export const STEP_READ = 0;
export const STEP_WRITE = 1;
export const STEP_CAS_OK = 2;
export const STEP_CAS_FAILED = 3;
export const STEP_CAS_UNKNOWN = 4;

/** Operations of one key compiled to parallel arrays for the search's inner loop. */
export interface CompiledOps {
  readonly step: Uint8Array;
  /** read: value id read; write and cas: value id written. */
  readonly arg: Int32Array;
  /** cas: expected value id; otherwise unused. */
  readonly expected: Int32Array;
  /** The value id the register must hold for the op to be linearized at all, or -1 if none is required. */
  readonly needs: Int32Array;
  /** The value id the op may set the register to, or -1 if it never changes it. */
  readonly writes: Int32Array;
  /** The value id the op compares the register with (read output, cas expected), or -1. */
  readonly refers: Int32Array;
}

export function compileOps(ops: readonly Operation[], values: ValueTable): CompiledOps {
  const step = new Uint8Array(ops.length);
  const arg = new Int32Array(ops.length);
  const expected = new Int32Array(ops.length);
  const needs = new Int32Array(ops.length).fill(-1);
  const writes = new Int32Array(ops.length).fill(-1);
  const refers = new Int32Array(ops.length).fill(-1);
  ops.forEach((op, i) => {
    switch (op.kind) {
      case 'read':
        step[i] = STEP_READ;
        arg[i] = values.intern(op.output as RegisterValue);
        needs[i] = arg[i]!;
        refers[i] = arg[i]!;
        break;
      case 'write':
        step[i] = STEP_WRITE;
        arg[i] = values.intern(op.value ?? null);
        writes[i] = arg[i]!;
        break;
      case 'cas':
        step[i] = op.complete === null ? STEP_CAS_UNKNOWN : op.output === true ? STEP_CAS_OK : STEP_CAS_FAILED;
        arg[i] = values.intern(op.value ?? null);
        expected[i] = values.intern(op.expected ?? null);
        // An indeterminate cas may be left out, so it needs nothing; a failed one writes nothing.
        if (step[i] === STEP_CAS_OK) needs[i] = expected[i]!;
        if (step[i] !== STEP_CAS_FAILED) writes[i] = arg[i]!;
        refers[i] = expected[i]!;
        break;
    }
  });
  return { step, arg, expected, needs, writes, refers };
}

/** Applies operation `i` to `state`: the next state, or -1 if the operation's output is impossible there. */
export function applyStep(ops: CompiledOps, i: number, state: number): number {
  switch (ops.step[i]) {
    case STEP_READ:
      return ops.arg[i] === state ? state : -1;
    case STEP_WRITE:
      return ops.arg[i]!;
    case STEP_CAS_OK:
    case STEP_CAS_UNKNOWN:
      // An unknown cas is linearized only when it succeeds; its failure has no effect, which is the
      // same as never linearizing it.
      return ops.expected[i] === state ? ops.arg[i]! : -1;
    case STEP_CAS_FAILED:
      return ops.expected[i] === state ? -1 : state;
    default:
      return -1;
  }
}

/** Whether operation `i` sets the state regardless of it (a blind write). */
export function isBlindWrite(ops: CompiledOps, i: number): boolean {
  return ops.step[i] === STEP_WRITE;
}
