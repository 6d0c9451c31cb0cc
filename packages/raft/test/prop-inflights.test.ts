/**
 * The Inflights ring buffer against a plain array model, under random sequences of add (strictly
 * increasing indexes), freeLE, freeFirst and reset, with capacities small enough to wrap often.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Inflights, RaftAssertionError } from '../src/index.js';

interface Model {
  readonly countMax: number;
  items: number[];
  /** The last index ever added: new indexes go above it, as a leader's do. */
  lastAdded: number;
}

type Cmd = fc.Command<Model, Inflights>;

function checkAgree(m: Model, r: Inflights): void {
  expect(r.toArray()).toEqual(m.items);
  expect(r.count).toBe(m.items.length);
  expect(r.full()).toBe(m.items.length === m.countMax);
}

class AddCmd implements Cmd {
  constructor(readonly delta: number) {}
  check(m: Readonly<Model>): boolean {
    return m.items.length < m.countMax;
  }
  run(m: Model, r: Inflights): void {
    const index = m.lastAdded + this.delta;
    r.add(index);
    m.items.push(index);
    m.lastAdded = index;
    checkAgree(m, r);
  }
  toString(): string {
    return `add(+${this.delta})`;
  }
}

/** add() when full is a bug in the caller: it must throw and leave the buffer as it was. */
class AddWhenFullCmd implements Cmd {
  constructor(readonly delta: number) {}
  check(m: Readonly<Model>): boolean {
    return m.items.length === m.countMax;
  }
  run(m: Model, r: Inflights): void {
    expect(() => r.add(m.lastAdded + this.delta)).toThrow(RaftAssertionError);
    checkAgree(m, r);
  }
  toString(): string {
    return `addWhenFull(+${this.delta})`;
  }
}

/** add() of an index not above the last one in flight must throw and change nothing. */
class AddNotIncreasingCmd implements Cmd {
  constructor(readonly back: number) {}
  check(m: Readonly<Model>): boolean {
    return m.items.length > 0 && m.items.length < m.countMax;
  }
  run(m: Model, r: Inflights): void {
    const last = m.items[m.items.length - 1]!;
    expect(() => r.add(last - this.back)).toThrow(RaftAssertionError);
    checkAgree(m, r);
  }
  toString(): string {
    return `addNotIncreasing(-${this.back})`;
  }
}

class FreeLECmd implements Cmd {
  /** `pick` chooses a bound near the contents: below all, at or between items, above all. */
  constructor(readonly pick: number, readonly jitter: -1 | 0 | 1) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Inflights): void {
    const anchors = [0, ...m.items, m.lastAdded + 5];
    const bound = anchors[this.pick % anchors.length]! + this.jitter;
    r.freeLE(bound);
    m.items = m.items.filter((i) => i > bound);
    checkAgree(m, r);
  }
  toString(): string {
    return `freeLE(pick ${this.pick}, ${this.jitter})`;
  }
}

class FreeFirstCmd implements Cmd {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Inflights): void {
    r.freeFirst();
    m.items = m.items.slice(1);
    checkAgree(m, r);
  }
  toString(): string {
    return 'freeFirst';
  }
}

class ResetCmd implements Cmd {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Inflights): void {
    r.reset();
    m.items = [];
    checkAgree(m, r);
  }
  toString(): string {
    return 'reset';
  }
}

const commandsArb = fc.commands(
  [
    fc.integer({ min: 1, max: 3 }).map((d) => new AddCmd(d)),
    fc.integer({ min: 1, max: 3 }).map((d) => new AddCmd(d)), // twice: adds should dominate so the ring fills up
    fc.integer({ min: 1, max: 3 }).map((d) => new AddWhenFullCmd(d)),
    fc.integer({ min: 0, max: 2 }).map((b) => new AddNotIncreasingCmd(b)),
    fc.tuple(fc.nat({ max: 20 }), fc.constantFrom(-1 as const, 0 as const, 1 as const)).map(([p, j]) => new FreeLECmd(p, j)),
    fc.constant(new FreeFirstCmd()),
    fc.constant(new ResetCmd()),
  ],
  { maxCommands: 200 },
);

describe('Inflights', () => {
  it('agrees with an array model under random add/freeLE/freeFirst/reset', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.nat({ max: 100 }), commandsArb, (countMax, start, cmds) => {
        const setup = (): { model: Model; real: Inflights } => ({
          model: { countMax, items: [], lastAdded: start },
          real: new Inflights(countMax),
        });
        fc.modelRun(setup, cmds);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a capacity that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new Inflights(bad)).toThrow(RaftAssertionError);
  });
});
