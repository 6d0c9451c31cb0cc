/**
 * SeededRandom: the simulator's replayability rests on it being a pure function of its seed.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../src/index.js';

const seedArb = fc.integer({ min: 0, max: 0xffff_ffff });

function take(r: SeededRandom, n: number): number[] {
  return Array.from({ length: n }, () => r.nextUint32());
}

describe('SeededRandom', () => {
  it('is deterministic per seed, whatever the mix of calls', () => {
    fc.assert(
      fc.property(seedArb, fc.array(fc.integer({ min: 1, max: 2 ** 32 }), { minLength: 1, maxLength: 50 }), (seed, bounds) => {
        const a = new SeededRandom(seed);
        const b = new SeededRandom(seed);
        for (const max of bounds) expect(a.nextInt(max)).toBe(b.nextInt(max));
        expect(a.nextFloat()).toBe(b.nextFloat());
        expect(take(a, 8)).toEqual(take(b, 8));
      }),
      { numRuns: 300 },
    );
  });

  it('gives different streams for different seeds', () => {
    fc.assert(
      fc.property(seedArb, seedArb, (s1, s2) => {
        fc.pre(s1 !== s2);
        // 128 bits of output colliding by chance has probability 2^-128.
        expect(take(new SeededRandom(s1), 4)).not.toEqual(take(new SeededRandom(s2), 4));
      }),
      { numRuns: 1000 },
    );
  });

  it('nextInt stays an integer in [0, maxExclusive)', () => {
    fc.assert(
      fc.property(seedArb, fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 2 ** 32 }), fc.constant(2 ** 32)), (seed, max) => {
        const r = new SeededRandom(seed);
        const outOfRange: number[] = [];
        for (let k = 0; k < 200; k++) {
          const v = r.nextInt(max);
          if (!(Number.isInteger(v) && v >= 0 && v < max)) outOfRange.push(v);
        }
        expect(outOfRange).toEqual([]);
        const f = r.nextFloat();
        expect(f).toBeGreaterThanOrEqual(0);
        expect(f).toBeLessThan(1);
        expect(Number.isInteger(r.nextUint32())).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('nextInt rejects bounds outside [1, 2^32]', () => {
    fc.assert(
      fc.property(seedArb, fc.oneof(fc.integer({ max: 0 }), fc.double({ min: 0.01, max: 1e6, noInteger: true }), fc.constant(2 ** 32 + 1), fc.constant(Number.NaN)), (seed, bad) => {
        expect(() => new SeededRandom(seed).nextInt(bad)).toThrow(RangeError);
      }),
      { numRuns: 200 },
    );
  });

  it('nextInt covers every value of a small range roughly uniformly', () => {
    fc.assert(
      fc.property(seedArb, fc.integer({ min: 2, max: 12 }), (seed, max) => {
        const r = new SeededRandom(seed);
        const n = 600 * max;
        const counts = new Array<number>(max).fill(0);
        for (let k = 0; k < n; k++) counts[r.nextInt(max)]!++;
        // Chi-square with max-1 degrees of freedom; 60 is far in the tail for df <= 11
        // (p < 1e-7), so a fair generator essentially never fails, a skewed one does.
        const expected = n / max;
        const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
        expect(chi2).toBeLessThan(60);
      }),
      { numRuns: 50 },
    );
  });

  it('fork gives deterministic streams, independent of the parent and of each other', () => {
    fc.assert(
      fc.property(seedArb, fc.nat({ max: 20 }), (seed, skip) => {
        const parentA = new SeededRandom(seed);
        const parentB = new SeededRandom(seed);
        take(parentA, skip);
        take(parentB, skip);
        const forkA1 = parentA.fork();
        const forkA2 = parentA.fork();
        const forkB1 = parentB.fork();
        const forkB2 = parentB.fork();
        // Deterministic: the same seed and history fork the same streams.
        const a1 = take(forkA1, 16);
        const a2 = take(forkA2, 16);
        expect(take(forkB1, 16)).toEqual(a1);
        expect(take(forkB2, 16)).toEqual(a2);
        // Independent: forks differ from each other and from the parent's continuation, and
        // drawing from a fork does not move the parent.
        const parentRest = take(parentA, 16);
        expect(take(parentB, 16)).toEqual(parentRest);
        expect(a1).not.toEqual(a2);
        expect(a1).not.toEqual(parentRest);
        expect(a2).not.toEqual(parentRest);
        // No fork is merely a shifted copy of another stream.
        const all = new Set([...a1, ...a2, ...parentRest]);
        expect(all.size).toBeGreaterThan(46);
      }),
      { numRuns: 300 },
    );
  });

  it('chance(p) is never true for p = 0 and always true for p = 1', () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        const r = new SeededRandom(seed);
        for (let k = 0; k < 50; k++) {
          expect(r.chance(0)).toBe(false);
          expect(r.chance(1)).toBe(true);
        }
      }),
      { numRuns: 100 },
    );
  });
});
