import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkLinearizable, formatHistory } from '../src/linearizability/index.js';
import type { CheckResult, KeyVerdict, Operation, RegisterValue } from '../src/linearizability/index.js';

// Builders for hand-made histories. Ids are assigned in creation order.
class History {
  readonly ops: Operation[] = [];

  read(clientId: number, key: string, output: RegisterValue, invoke: number, complete: number): this {
    this.ops.push({ id: this.ops.length, clientId, key, kind: 'read', output, invoke, complete });
    return this;
  }

  write(clientId: number, key: string, value: RegisterValue, invoke: number, complete: number | null): this {
    this.ops.push({ id: this.ops.length, clientId, key, kind: 'write', value, invoke, complete });
    return this;
  }

  /** A cas with a known outcome. */
  cas(clientId: number, key: string, expected: RegisterValue, value: RegisterValue, ok: boolean, invoke: number, complete: number): this {
    this.ops.push({ id: this.ops.length, clientId, key, kind: 'cas', expected, value, output: ok, invoke, complete });
    return this;
  }

  /** A cas whose outcome is unknown (the client timed out). */
  casUnknown(clientId: number, key: string, expected: RegisterValue, value: RegisterValue, invoke: number): this {
    this.ops.push({ id: this.ops.length, clientId, key, kind: 'cas', expected, value, invoke, complete: null });
    return this;
  }

  check(initialValue: RegisterValue = null): CheckResult {
    return checkLinearizable(this.ops, { initialValue });
  }
}

function verdictOf(result: CheckResult, key: string): KeyVerdict {
  const verdict = result.keys.find((v) => v.key === key);
  if (verdict === undefined) throw new Error(`no verdict for key ${key}`);
  return verdict;
}

function illegalVerdict(result: CheckResult, key: string): Extract<KeyVerdict, { result: 'illegal' }> {
  const verdict = verdictOf(result, key);
  if (verdict.result !== 'illegal') throw new Error(`expected key ${key} to be illegal, got ${verdict.result}`);
  return verdict;
}

describe('checkLinearizable: valid histories', () => {
  it('accepts an empty history', () => {
    expect(checkLinearizable([])).toEqual({ result: 'ok', keys: [] });
  });

  it('accepts a sequential history of reads, writes and cas', () => {
    const h = new History()
      .read(1, 'k', null, 0, 1)
      .write(1, 'k', 'a', 2, 3)
      .read(2, 'k', 'a', 4, 5)
      .cas(1, 'k', 'a', 'b', true, 6, 7)
      .cas(2, 'k', 'a', 'c', false, 8, 9)
      .read(3, 'k', 'b', 10, 11)
      .write(2, 'k', null, 12, 13)
      .read(1, 'k', null, 14, 15)
      .cas(3, 'k', null, 'd', true, 16, 17)
      .read(2, 'k', 'd', 18, 19);
    expect(h.check()).toEqual({ result: 'ok', keys: [{ key: 'k', result: 'ok', operations: 10 }] });
  });

  it('accepts reads overlapping a write that see either the old or the new value', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .write(1, 'k', 'b', 10, 40)
      .read(2, 'k', 'a', 12, 14)
      .read(3, 'k', 'b', 13, 20)
      .read(2, 'k', 'b', 15, 18)
      .read(4, 'k', 'a', 9, 30)
      .read(2, 'k', 'b', 45, 50);
    expect(h.check().result).toBe('ok');
  });

  it('finds a linearization that contradicts invocation order', () => {
    // c1's write is invoked first but must take effect last: c2's value is read, then c1's.
    const h = new History()
      .write(1, 'k', '1', 0, 50)
      .write(2, 'k', '2', 5, 15)
      .read(3, 'k', '2', 10, 20)
      .cas(4, 'k', '2', '3', false, 22, 24)
      .read(4, 'k', '1', 25, 30)
      .read(3, 'k', '1', 35, 40);
    expect(h.check().result).toBe('ok');
  });

  it('treats operations that merely touch in time as concurrent', () => {
    const h = new History().write(1, 'k', 'a', 0, 10).read(2, 'k', null, 10, 12);
    expect(h.check().result).toBe('ok');
  });

  it('honours initialValue', () => {
    const h = new History().read(1, 'k', 'init', 0, 1).cas(1, 'k', 'init', 'x', true, 2, 3);
    expect(h.check('init').result).toBe('ok');
    expect(h.check().result).toBe('illegal');
  });
});

describe('checkLinearizable: anomalies', () => {
  it('rejects a stale read and explains it', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 10)
      .write(2, 'k', 'b', 20, 30)
      .read(3, 'k', 'a', 40, 50);
    const result = h.check();
    expect(result.result).toBe('illegal');
    const verdict = illegalVerdict(result, 'k');
    expect(verdict.operations).toBe(3);
    expect(verdict.window.map((op) => op.id)).toEqual([0, 1, 2]);
    expect(verdict.explanation).toBe(
      "read of k by client 3 at [40,50] returned 'a', but no linearization allows it; " +
        "the longest linearizable prefix has 1 op, after which k holds 'a', " +
        "and the next op to be linearized overwrites it for good: write of 'b' to k by client 2 at [20,30]",
    );
    expect(formatHistory(verdict.window)).toBe(
      ["  c1 [0..10] write k 'a'", "  c2 [20..30] write k 'b'", "  c3 [40..50] read k -> 'a'"].join('\n'),
    );
  });

  it('rejects a lost write', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 10)
      .read(2, 'k', 'a', 11, 12)
      .write(1, 'k', 'b', 20, 30)
      .read(2, 'k', 'b', 25, 28)
      .read(3, 'k', 'a', 40, 50);
    expect(h.check().result).toBe('illegal');
  });

  it('rejects concurrent reads that see the new value and then the old one', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .write(1, 'k', 'b', 10, 100)
      .read(2, 'k', 'b', 20, 30)
      .read(3, 'k', 'a', 40, 50);
    expect(h.check().result).toBe('illegal');
  });

  it('rejects two sequential cas with the same expected value that both succeed', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .cas(1, 'k', 'a', 'b', true, 10, 15)
      .cas(2, 'k', 'a', 'c', true, 20, 25);
    const verdict = illegalVerdict(h.check(), 'k');
    expect(verdict.explanation).toMatch(/^cas of k from 'a' to 'c' by client 2 at \[20,25\] succeeded, but no linearization allows it/);
    expect(verdict.window.map((op) => op.id)).toEqual([0, 1, 2]);
  });

  it('rejects two concurrent cas with the same expected value that both succeed', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .cas(1, 'k', 'a', 'b', true, 10, 30)
      .cas(2, 'k', 'a', 'c', true, 12, 25);
    expect(h.check().result).toBe('illegal');
  });

  it('rejects a cas that reports success but did not take effect', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .cas(1, 'k', 'a', 'b', true, 10, 15)
      .read(2, 'k', 'a', 20, 25);
    expect(h.check().result).toBe('illegal');
  });

  it('rejects a cas that reports failure although the expected value was current', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .cas(1, 'k', 'a', 'b', false, 10, 15)
      .read(2, 'k', 'a', 20, 25);
    const verdict = illegalVerdict(h.check(), 'k');
    expect(verdict.explanation).toMatch(/^cas of k from 'a' to 'b' by client 1 at \[10,15\] failed/);
  });

  it('rejects a read of a value that was never written', () => {
    const h = new History().write(1, 'k', 'a', 0, 5).read(2, 'k', 'zzz', 0, 10);
    const verdict = illegalVerdict(h.check(), 'k');
    expect(verdict.window.map((op) => op.id)).toEqual([1]);
    expect(verdict.explanation).toBe(
      "read of k by client 2 at [0,10] returned 'zzz', but no operation that could have written 'zzz' was invoked before it returned",
    );
  });

  it('rejects a read of a value written only after the read returned', () => {
    const h = new History().read(2, 'k', 'a', 0, 10).write(1, 'k', 'a', 11, 15);
    expect(h.check().result).toBe('illegal');
  });

  it('finds a stale read at the end of a long history', () => {
    const h = new History();
    for (let n = 0; n < 150; n++) {
      h.write(n % 3, 'k', `v${n}`, 10 * n, 10 * n + 6).read((n + 1) % 3, 'k', `v${n}`, 10 * n + 7, 10 * n + 9);
    }
    h.read(5, 'k', 'v148', 1500, 1510);
    const verdict = illegalVerdict(h.check(), 'k');
    expect(verdict.operations).toBe(301);
    expect(verdict.explanation).toMatch(/^read of k by client 5 at \[1500,1510\] returned 'v148', but no linearization allows it; the longest linearizable prefix has 298 ops/);
    expect(verdict.window.length).toBeLessThan(10);
    h.ops.pop();
    h.read(5, 'k', 'v149', 1500, 1510);
    expect(h.check().result).toBe('ok');
  });
});

describe('checkLinearizable: indeterminate operations', () => {
  it('accepts an indeterminate write that later reads show took effect', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .write(2, 'k', 'b', 10, null)
      .read(3, 'k', 'a', 20, 25)
      .read(3, 'k', 'b', 30, 35)
      .read(1, 'k', 'b', 40, 45);
    expect(h.check().result).toBe('ok');
  });

  it('accepts an indeterminate write that is never observed', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .write(2, 'k', 'b', 10, null)
      .read(3, 'k', 'a', 20, 25)
      .read(3, 'k', 'a', 30, 35);
    expect(h.check().result).toBe('ok');
  });

  it('rejects an indeterminate write that is observed and then undone', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, 5)
      .write(2, 'k', 'b', 10, null)
      .read(3, 'k', 'b', 20, 25)
      .read(3, 'k', 'a', 30, 35);
    const verdict = illegalVerdict(h.check(), 'k');
    expect(verdict.window.map((op) => op.id)).toEqual([0, 1, 2, 3]);
    expect(verdict.explanation).toContain("a value still needed later by: read of k by client 3 at [30,35] returned 'a'");
  });

  it('accepts an indeterminate cas that either took effect or did not', () => {
    const tookEffect = new History().write(1, 'k', 'a', 0, 5).casUnknown(2, 'k', 'a', 'b', 10).read(3, 'k', 'b', 20, 25);
    const noEffect = new History().write(1, 'k', 'a', 0, 5).casUnknown(2, 'k', 'a', 'b', 10).read(3, 'k', 'a', 20, 25);
    expect(tookEffect.check().result).toBe('ok');
    expect(noEffect.check().result).toBe('ok');
  });

  it('rejects an indeterminate cas observed although its expected value never held', () => {
    const h = new History().write(1, 'k', 'a', 0, 5).casUnknown(2, 'k', 'x', 'b', 10).read(3, 'k', 'b', 20, 25);
    expect(h.check().result).toBe('illegal');
  });

  it('ignores reads that timed out', () => {
    const ops: Operation[] = [
      { id: 1, clientId: 1, key: 'k', kind: 'write', value: 'a', invoke: 0, complete: 5 },
      { id: 2, clientId: 2, key: 'k', kind: 'read', invoke: 6, complete: null },
    ];
    expect(checkLinearizable(ops)).toEqual({ result: 'ok', keys: [{ key: 'k', result: 'ok', operations: 2 }] });
  });

  it('lets indeterminate writes take effect long after they were invoked, in any order', () => {
    const h = new History()
      .write(1, 'k', 'a', 0, null)
      .write(2, 'k', 'b', 1, null)
      .write(3, 'k', 'c', 2, null)
      .read(4, 'k', null, 10, 11)
      .read(4, 'k', 'c', 20, 21)
      .read(4, 'k', 'a', 30, 31)
      .read(4, 'k', 'b', 40, 41);
    expect(h.check().result).toBe('ok');
    h.read(4, 'k', 'c', 50, 51);
    expect(h.check().result).toBe('illegal');
  });
});

describe('checkLinearizable: keys, budget and validation', () => {
  it('checks keys independently and names the illegal one', () => {
    const h = new History()
      .write(1, 'a', 'x', 0, 10)
      .write(2, 'b', 'x', 0, 10)
      .write(3, 'c', 'x', 0, 10)
      .write(1, 'b', 'y', 20, 30)
      .read(2, 'a', 'x', 20, 30)
      .read(3, 'b', 'x', 40, 50)
      .read(1, 'c', 'x', 40, 50);
    const result = h.check();
    expect(result.result).toBe('illegal');
    expect(result.keys.map((v) => [v.key, v.result])).toEqual([
      ['a', 'ok'],
      ['b', 'illegal'],
      ['c', 'ok'],
    ]);
    const verdict = illegalVerdict(result, 'b');
    expect(verdict.window.every((op) => op.key === 'b')).toBe(true);
    expect(verdict.explanation).toContain('read of b by client 3');
  });

  it('gives up with unknown when the budget runs out', () => {
    const h = new History();
    for (let c = 0; c < 20; c++) h.write(c, 'k', `v${c}`, 0, 100);
    for (let c = 0; c < 20; c++) h.read(c, 'k', `v${c}`, 50, 150);
    const result = checkLinearizable(h.ops, { budget: 10 });
    expect(result.result).toBe('unknown');
    const verdict = verdictOf(result, 'k');
    expect(verdict.result).toBe('unknown');
    if (verdict.result === 'unknown') expect(verdict.reason).toMatch(/budget of 10 steps/);
  });

  it('reports unknown only when no key is illegal', () => {
    const h = new History();
    for (let c = 0; c < 20; c++) h.write(c, 'k', `v${c}`, 0, 100);
    h.write(1, 'z', 'a', 0, 1).read(1, 'z', 'b', 2, 3);
    expect(checkLinearizable(h.ops, { budget: 10 }).result).toBe('illegal');
  });

  it('rejects malformed histories with a clear error', () => {
    const write: Operation = { id: 1, clientId: 1, key: 'k', kind: 'write', value: 'a', invoke: 10, complete: 20 };
    expect(() => checkLinearizable([{ ...write, complete: 5 }])).toThrow(/completes at 5, before it was invoked at 10/);
    expect(() => checkLinearizable([write, { ...write }])).toThrow(/same id as the operation at index 0/);
    const { value: _value, ...noValue } = write;
    expect(() => checkLinearizable([noValue])).toThrow(/\(write\) has no value/);
    const badCas = { id: 2, clientId: 1, key: 'k', kind: 'cas', expected: 'a', value: 'b', invoke: 0, complete: 1 } as const;
    expect(() => checkLinearizable([badCas])).toThrow(/\(cas\) has no boolean output/);
    expect(() => checkLinearizable([{ ...badCas, output: 'yes' }])).toThrow(/\(cas\) has no boolean output/);
    expect(() => checkLinearizable([{ ...write, complete: null, output: 'a' }])).toThrow(/indeterminate .* but has an output/);
    const read = { id: 3, clientId: 1, key: 'k', kind: 'read', invoke: 0, complete: 1 } as const;
    expect(() => checkLinearizable([read])).toThrow(/\(read\) has no output/);
    expect(() => checkLinearizable([{ ...read, output: null, kind: 'delete' } as unknown as Operation])).toThrow(/unknown kind "delete"/);
    expect(() => checkLinearizable([{ ...read, output: null, key: undefined } as unknown as Operation])).toThrow(/has no string key/);
    expect(() => checkLinearizable([], { budget: 0 })).toThrow(/budget must be a positive integer/);
  });
});

describe('formatHistory', () => {
  it('renders one operation per line', () => {
    const h = new History()
      .write(1, 'k1', 'v8', 100, null)
      .read(3, 'k1', 'v7', 120, 130)
      .read(2, 'k1', null, 131, 135)
      .cas(4, 'k1', "it's", null, true, 140, 150)
      .cas(4, 'k1', null, 'x', false, 151, 152)
      .casUnknown(5, 'k1', 'a', 'b', 160);
    expect(formatHistory(h.ops)).toBe(
      [
        "  c1 [100..?] write k1 'v8' (indeterminate)",
        "  c3 [120..130] read k1 -> 'v7'",
        '  c2 [131..135] read k1 -> null',
        "  c4 [140..150] cas k1 'it\\'s' => null -> ok",
        "  c4 [151..152] cas k1 null => 'x' -> failed",
        "  c5 [160..?] cas k1 'a' => 'b' (indeterminate)",
      ].join('\n'),
    );
  });
});

// Random linearizable histories: clients issue operations back to back against a real atomic
// register per key; each operation takes effect at a random instant inside its interval, or for an
// indeterminate one possibly later, or never.
interface OpSpec {
  client: number;
  key: number;
  kind: 'read' | 'write' | 'cas';
  value: number;
  expected: number;
  gap: number;
  duration: number;
  /** Where in the interval the op takes effect, in percent. */
  at: number;
  fate: 'ok' | 'indeterminate-applied' | 'indeterminate-lost';
}

const valuePool = 4;
const poolValue = (i: number): RegisterValue => (i < 0 ? null : `x${i}`);

function simulate(specs: readonly OpSpec[]): Operation[] {
  const clientFree = new Map<number, number>();
  const planned = specs.map((spec, id) => {
    const invoke = (clientFree.get(spec.client) ?? 0) + spec.gap;
    const complete = invoke + spec.duration;
    clientFree.set(spec.client, complete);
    const stretch = spec.fate === 'indeterminate-applied' ? 3 : 1;
    return { spec, id, invoke, complete, effectAt: invoke + (spec.at / 100) * spec.duration * stretch };
  });
  const register = new Map<number, RegisterValue>();
  const outputs = new Map<number, RegisterValue | boolean>();
  const effective = planned.filter((p) => p.spec.fate !== 'indeterminate-lost');
  effective.sort((a, b) => a.effectAt - b.effectAt || a.id - b.id);
  for (const { spec, id } of effective) {
    const current = register.get(spec.key) ?? null;
    if (spec.kind === 'read') {
      outputs.set(id, current);
    } else if (spec.kind === 'write') {
      register.set(spec.key, poolValue(spec.value));
    } else {
      const ok = current === poolValue(spec.expected);
      if (ok) register.set(spec.key, poolValue(spec.value));
      outputs.set(id, ok);
    }
  }
  return planned.map(({ spec, id, invoke, complete }): Operation => {
    const common = { id, clientId: spec.client, key: `k${spec.key}`, invoke };
    if (spec.fate !== 'ok') {
      if (spec.kind === 'read') return { ...common, kind: 'read', complete: null };
      if (spec.kind === 'write') return { ...common, kind: 'write', value: poolValue(spec.value), complete: null };
      return { ...common, kind: 'cas', expected: poolValue(spec.expected), value: poolValue(spec.value), complete: null };
    }
    const output = outputs.get(id) ?? null;
    if (spec.kind === 'read') return { ...common, kind: 'read', output, complete };
    if (spec.kind === 'write') return { ...common, kind: 'write', value: poolValue(spec.value), complete };
    return { ...common, kind: 'cas', expected: poolValue(spec.expected), value: poolValue(spec.value), output, complete };
  });
}

/**
 * Gives every write and cas a value of its own (numbered past the pool) and makes each cas expect
 * one of the last few values written, as a recorder of unique writes would. Lost writes then write
 * values nobody reads, unlike with the small pool where any write can explain many reads.
 */
function withUniqueValues(specs: readonly OpSpec[]): OpSpec[] {
  const written: number[] = [];
  return specs.map((spec, i) => {
    if (spec.kind === 'read') return spec;
    const recent = Math.min(4, written.length);
    const expected = spec.expected < 0 || recent === 0 ? -1 : written[written.length - 1 - (spec.expected % recent)]!;
    written.push(valuePool + i);
    return { ...spec, value: valuePool + i, expected };
  });
}

const opSpecArbitrary = (clients: number, keys: number): fc.Arbitrary<OpSpec> =>
  fc.record({
    client: fc.integer({ min: 0, max: clients - 1 }),
    key: fc.integer({ min: 0, max: keys - 1 }),
    kind: fc.constantFrom('read', 'read', 'write', 'cas'),
    value: fc.integer({ min: 0, max: valuePool - 1 }),
    expected: fc.integer({ min: -1, max: valuePool - 1 }),
    gap: fc.integer({ min: 0, max: 6 }),
    duration: fc.integer({ min: 0, max: 30 }),
    at: fc.integer({ min: 0, max: 100 }),
    fate: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'indeterminate-applied', 'indeterminate-lost'),
  });

const historyArbitrary = fc
  .record({ clients: fc.integer({ min: 1, max: 6 }), keys: fc.integer({ min: 1, max: 3 }), unique: fc.boolean() })
  .chain(({ clients, keys, unique }) =>
    fc.array(opSpecArbitrary(clients, keys), { maxLength: 60 }).map((specs) => simulate(unique ? withUniqueValues(specs) : specs)),
  );

describe('checkLinearizable: properties', () => {
  it('accepts every history of a real atomic register', () => {
    fc.assert(
      fc.property(historyArbitrary, (history) => {
        const result = checkLinearizable(history);
        if (result.result !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(result.keys)}\n${formatHistory(history)}`);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects such a history once a read returns a value never written', () => {
    fc.assert(
      fc.property(historyArbitrary, fc.nat(), (history, pick) => {
        const reads = history.filter((op) => op.kind === 'read' && op.complete !== null);
        fc.pre(reads.length > 0);
        const victim = reads[pick % reads.length]!;
        const corrupted = history.map((op) => (op === victim ? { ...op, output: 'never-written' } : op));
        const result = checkLinearizable(corrupted);
        expect(result.result).toBe('illegal');
        const verdict = illegalVerdict(result, victim.key);
        expect(verdict.window.length).toBeGreaterThan(0);
        expect(result.keys.filter((v) => v.result !== 'ok').map((v) => v.key)).toEqual([victim.key]);
      }),
      { numRuns: 300 },
    );
  });
});

// A brute-force oracle for tiny single-key histories: tries every order that respects real time,
// with each indeterminate op either placed anywhere after its invocation or left out.
function bruteForceLinearizable(history: readonly Operation[]): boolean {
  const ops = history.filter((op) => op.kind !== 'read' || op.complete !== null);
  const search = (remaining: readonly Operation[], state: RegisterValue): boolean => {
    if (remaining.every((op) => op.complete === null)) return true;
    return remaining.some((op, i) => {
      // op can go next only if no remaining determinate op returned before it was invoked.
      if (remaining.some((other) => other.complete !== null && other.complete < op.invoke)) return false;
      const rest = remaining.filter((_, j) => j !== i);
      if (op.complete === null && search(rest, state)) return true;
      switch (op.kind) {
        case 'read':
          return op.output === state && search(rest, state);
        case 'write':
          return search(rest, op.value ?? null);
        case 'cas':
          if (op.complete === null || op.output === true) return op.expected === state && search(rest, op.value ?? null);
          return op.expected !== state && search(rest, state);
      }
    });
  };
  return search(ops, null);
}

const randomValue = fc.constantFrom<RegisterValue>(null, 'a', 'b', 'c');
const tinyHistoryArbitrary = fc
  .array(
    fc.record({
      kind: fc.constantFrom('read', 'write', 'cas'),
      value: randomValue,
      expected: randomValue,
      read: randomValue,
      ok: fc.boolean(),
      invoke: fc.integer({ min: 0, max: 20 }),
      duration: fc.integer({ min: 0, max: 10 }),
      indeterminate: fc.boolean(),
      client: fc.integer({ min: 0, max: 3 }),
    }),
    { maxLength: 7 },
  )
  .map((specs) =>
    specs.map((s, id): Operation => {
      const common = { id, clientId: s.client, key: 'k', invoke: s.invoke };
      const complete = s.indeterminate ? null : s.invoke + s.duration;
      if (s.kind === 'write') return { ...common, kind: 'write', value: s.value, complete };
      if (s.kind === 'read') return complete === null ? { ...common, kind: 'read', complete } : { ...common, kind: 'read', output: s.read, complete };
      const cas = { ...common, kind: 'cas', expected: s.expected, value: s.value } as const;
      return complete === null ? { ...cas, complete } : { ...cas, output: s.ok, complete };
    }),
  );

describe('checkLinearizable: against a brute-force oracle', () => {
  it('agrees on tiny random histories, legal or not', () => {
    let illegal = 0;
    fc.assert(
      fc.property(tinyHistoryArbitrary, (history) => {
        const expected = bruteForceLinearizable(history) ? 'ok' : 'illegal';
        if (expected === 'illegal') illegal++;
        expect(checkLinearizable(history).result, formatHistory(history)).toBe(expected);
      }),
      { numRuns: 3000 },
    );
    // The generator must exercise both verdicts for the comparison to mean anything.
    expect(illegal).toBeGreaterThan(100);
    expect(illegal).toBeLessThan(2900);
  });
});

// A plain memoised search for mid-size single-key histories, free of the checker's encodings and
// pruning rules: configurations are (every op's used flag as a string, value). Returns undefined
// if it would take more than `configurationsMax` configurations.
function referenceLinearizable(history: readonly Operation[], configurationsMax = 200_000): boolean | undefined {
  const ops = history.filter((op) => op.kind !== 'read' || op.complete !== null);
  const failed = new Set<string>();
  const used = new Uint8Array(ops.length);
  let visited = 0;
  const search = (state: RegisterValue): boolean => {
    if (++visited > configurationsMax) throw new RangeError('reference search too long');
    let firstReturn = Number.POSITIVE_INFINITY;
    ops.forEach((op, i) => {
      if (used[i] === 0 && op.complete !== null) firstReturn = Math.min(firstReturn, op.complete);
    });
    if (firstReturn === Number.POSITIVE_INFINITY) return true;
    const configuration = `${String(state)}|${used.join('')}`;
    if (failed.has(configuration)) return false;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (used[i] === 1 || op.invoke > firstReturn) continue;
      let next: RegisterValue | undefined;
      if (op.kind === 'read') next = op.output === state ? state : undefined;
      else if (op.kind === 'write') next = op.value ?? null;
      else if (op.complete === null || op.output === true) next = op.expected === state ? (op.value ?? null) : undefined;
      else next = op.expected !== state ? state : undefined;
      if (next === undefined) continue;
      used[i] = 1;
      const found = search(next);
      used[i] = 0;
      if (found) return true;
    }
    failed.add(configuration);
    return false;
  };
  try {
    return search(null);
  } catch (error) {
    if (error instanceof RangeError) return undefined;
    throw error;
  }
}

const midHistoryArbitrary = fc
  .tuple(
    fc.integer({ min: 1, max: 4 }).chain((clients) => fc.array(opSpecArbitrary(clients, 1), { minLength: 30, maxLength: 90 })),
    fc.boolean(),
    fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 2 }),
  )
  .map(([specs, unique, corruptions]) => {
    const history = simulate(unique ? withUniqueValues(specs) : specs);
    // Corrupt a few outputs so that some histories are illegal, often deep into the history: a read
    // returns some value written somewhere in the history, a cas reports the other outcome.
    const written = history.flatMap((op) => (op.kind === 'read' ? [] : [op.value ?? null]));
    return history.map((op, i) => {
      const corruption = corruptions.find(([at]) => at % history.length === i);
      if (corruption === undefined || op.complete === null) return op;
      if (op.kind === 'read') return { ...op, output: written[corruption[1] % (written.length + 1)] ?? null };
      if (op.kind === 'cas') return { ...op, output: op.output !== true };
      return op;
    });
  });

describe('checkLinearizable: against a plain memoised search', () => {
  it('agrees on mid-size single-key histories, legal or not', () => {
    let illegal = 0;
    let runs = 0;
    fc.assert(
      fc.property(midHistoryArbitrary, (history) => {
        const reference = referenceLinearizable(history);
        fc.pre(reference !== undefined);
        const expected = reference ? 'ok' : 'illegal';
        runs++;
        if (expected === 'illegal') illegal++;
        expect(checkLinearizable(history).result, formatHistory(history)).toBe(expected);
      }),
      { numRuns: 300 },
    );
    expect(illegal).toBeGreaterThan(runs / 10);
    expect(illegal).toBeLessThan(runs - runs / 10);
  });
});

describe('checkLinearizable: performance sanity', () => {
  it('checks a 3,000-op history over 3 keys and 10 clients', () => {
    // A deterministic PRNG (mulberry32) so the history is the same on every run.
    let seed = 42;
    const random = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const int = (max: number): number => Math.floor(random() * (max + 1));
    const kinds = ['read', 'read', 'write', 'cas'] as const;
    const specs: OpSpec[] = Array.from({ length: 3000 }, () => {
      const roll = random();
      return {
        client: int(9),
        key: int(2),
        kind: kinds[int(3)]!,
        value: int(valuePool - 1),
        expected: int(valuePool) - 1,
        gap: int(3),
        duration: 1 + int(40),
        at: int(100),
        fate: roll < 0.03 ? 'indeterminate-applied' : roll < 0.06 ? 'indeterminate-lost' : 'ok',
      };
    });
    const history = simulate(specs);
    const result = checkLinearizable(history);
    expect(result.keys.map((v) => v.result)).toEqual(['ok', 'ok', 'ok']);
    expect(result.keys.reduce((sum, v) => sum + v.operations, 0)).toBe(3000);
  });
});
