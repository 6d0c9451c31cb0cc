/**
 * The length of the leader lease (thesis section 6.4.1) against exact integer arithmetic: with
 * the drift d = p / 1000, the lease L must satisfy L * (1 + d) <= (ET - 1) * (1 - d) (safety,
 * see `leaseTicks`), and be the largest such L but for floating-point rounding.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leaseTicks } from '../src/index.js';

describe('leaseTicks', () => {
  it('is never longer than the followers refuse votes, and at most one tick shorter', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 100_000 }), fc.integer({ min: 0, max: 999 }), (electionTimeoutTicks, permille) => {
        const lease = leaseTicks(electionTimeoutTicks, permille / 1000);
        const refusal = (electionTimeoutTicks - 1) * (1000 - permille);
        expect(lease).toBeGreaterThanOrEqual(0);
        expect(lease * (1000 + permille)).toBeLessThanOrEqual(refusal);
        expect((lease + 2) * (1000 + permille)).toBeGreaterThan(refusal);
      }),
      { numRuns: 5000 },
    );
  });

  it('with the defaults (10 ticks, 0.1) is 7 ticks; without drift, one tick less than the election timeout', () => {
    expect(leaseTicks(10, 0.1)).toBe(7);
    expect(leaseTicks(10, 0)).toBe(9);
    expect(leaseTicks(2, 0.1)).toBe(0);
  });
});
