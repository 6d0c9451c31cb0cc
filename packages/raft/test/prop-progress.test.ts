/**
 * Random sequences of Progress operations, issued the way the leader (raft.ts) issues them,
 * keep the documented invariants: 0 <= match < next, match never decreases, snapshot state
 * means pendingSnapshot > 0 and paused, and stale acknowledgements or rejections change nothing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Progress } from '../src/index.js';

/** Everything observable about a Progress, to compare before and after an operation. */
function observe(pr: Progress): object {
  return {
    match: pr.match,
    next: pr.next,
    state: pr.state,
    pendingSnapshot: pr.pendingSnapshot,
    probeSent: pr.probeSent,
    paused: pr.isPaused(),
    inflights: pr.inflights.toArray(),
  };
}

/**
 * One operation with raw random numbers, interpreted against the current state so that most
 * operations are relevant (indexes near match and next) rather than uniformly random.
 */
type Op =
  | { kind: 'update'; a: number; b: number }
  | { kind: 'decr'; a: number; b: number; c: number }
  | { kind: 'send'; a: number }
  | { kind: 'freeLE'; a: number }
  | { kind: 'probe' }
  | { kind: 'replicate' }
  | { kind: 'snapshot'; a: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('update' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('decr' as const), a: fc.nat(), b: fc.nat(), c: fc.nat() }),
  fc.record({ kind: fc.constant('send' as const), a: fc.nat() }),
  fc.record({ kind: fc.constant('send' as const), a: fc.nat() }),
  fc.record({ kind: fc.constant('freeLE' as const), a: fc.nat() }),
  fc.constant({ kind: 'probe' as const }),
  fc.constant({ kind: 'replicate' as const }),
  fc.record({ kind: fc.constant('snapshot' as const), a: fc.nat() }),
);

/** A value near the interesting indexes: below match, at match, between, at next-1, next, beyond. */
function near(pr: Progress, r: number, lastIndex: number): number {
  const anchors = [0, pr.match - 1, pr.match, pr.match + 1, pr.next - 1, pr.next, pr.next + 1, lastIndex, lastIndex + 3];
  const base = anchors[r % anchors.length]!;
  return Math.max(0, base);
}

function checkInvariants(pr: Progress, matchBefore: number): void {
  expect(pr.match).toBeGreaterThanOrEqual(0);
  expect(pr.match).toBeLessThan(pr.next);
  expect(pr.match).toBeGreaterThanOrEqual(matchBefore);
  if (pr.state === 'snapshot') {
    expect(pr.pendingSnapshot).toBeGreaterThan(0);
    expect(pr.isPaused()).toBe(true);
  } else {
    expect(pr.pendingSnapshot).toBe(0);
  }
  if (pr.state !== 'replicate') expect(pr.inflights.count).toBe(0);
  // In replicate state everything in flight was sent below next (so the next send's index is above them).
  for (const i of pr.inflights.toArray()) expect(i).toBeLessThan(pr.next);
}

describe('Progress', () => {
  it('keeps its invariants under random operation sequences', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(opArb, { minLength: 1, maxLength: 120 }),
        (next0, window, ops) => {
          const pr = new Progress(next0, window, false);
          // The leader's last index: grows as it sends, and is always >= next - 1.
          let lastIndex = next0 - 1 + 10;
          checkInvariants(pr, 0);
          for (const op of ops) {
            const matchBefore = pr.match;
            const before = observe(pr);
            switch (op.kind) {
              case 'update': {
                // An acknowledgement of an index the leader has (or had) sent.
                const index = near(pr, op.a, lastIndex);
                const stale = index <= pr.match;
                const updated = pr.maybeUpdate(index);
                expect(updated).toBe(!stale);
                if (stale) expect(observe(pr)).toEqual(before);
                else {
                  expect(pr.match).toBe(index);
                  expect(pr.probeSent).toBe(false);
                }
                lastIndex = Math.max(lastIndex, index);
                // What the leader does next (raft.ts #handleAppendResponse).
                if (updated && pr.state === 'probe') pr.becomeReplicate();
                else if (updated && pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
                  pr.becomeProbe();
                  pr.becomeReplicate();
                } else if (updated && pr.state === 'replicate') pr.inflights.freeLE(index);
                break;
              }
              case 'decr': {
                const rejected = near(pr, op.a, lastIndex);
                const hint = op.c % 2 === 0 ? near(pr, op.b, lastIndex) : op.b % (rejected + 1);
                const staleReplicate = pr.state === 'replicate' && rejected <= pr.match;
                const staleProbe = pr.state !== 'replicate' && rejected !== pr.next - 1;
                const wasReplicate = pr.state === 'replicate';
                const decremented = pr.maybeDecrTo(rejected, hint);
                if (staleReplicate || staleProbe) {
                  expect(decremented).toBe(false);
                  expect(observe(pr)).toEqual(before);
                } else {
                  expect(decremented).toBe(true);
                  if (wasReplicate) expect(pr.next).toBe(pr.match + 1);
                  else {
                    // The probe moves back (never forward), but not below match + 1.
                    expect(pr.next).toBeLessThanOrEqual(Math.max(rejected, pr.match + 1));
                    expect(pr.next).toBe(Math.max(Math.min(rejected, hint + 1), pr.match + 1));
                    expect(pr.probeSent).toBe(false);
                  }
                  // What the leader does next (raft.ts #handleAppendResponse).
                  if (pr.state === 'replicate') pr.becomeProbe();
                }
                break;
              }
              case 'send': {
                // The leader sends only to an unpaused follower (raft.ts #sendAppend), entries
                // next..lastSent (possibly none); it may have appended more meanwhile.
                if (pr.isPaused()) break;
                lastIndex += op.a % 3;
                const count = op.a % (lastIndex - pr.next + 2);
                const lastSent = pr.next - 1 + count;
                const wasState = pr.state;
                const inflightBefore = pr.inflights.count;
                pr.sentEntries(count, lastSent);
                if (wasState === 'replicate' && count > 0) {
                  expect(pr.next).toBe(lastSent + 1);
                  expect(pr.inflights.count).toBe(inflightBefore + 1);
                } else if (wasState === 'probe') {
                  expect(pr.probeSent).toBe(true);
                  expect(pr.isPaused()).toBe(true);
                }
                break;
              }
              case 'freeLE': {
                // A heartbeat response with the window full frees the oldest message (raft.ts).
                pr.inflights.freeLE(near(pr, op.a, lastIndex));
                break;
              }
              case 'probe':
                pr.becomeProbe();
                expect(pr.state).toBe('probe');
                expect(pr.isPaused()).toBe(false);
                break;
              case 'replicate':
                pr.becomeReplicate();
                expect(pr.state).toBe('replicate');
                expect(pr.next).toBe(pr.match + 1);
                break;
              case 'snapshot': {
                const index = 1 + (op.a % (lastIndex + 1));
                pr.becomeSnapshot(index);
                expect(pr.state).toBe('snapshot');
                expect(pr.pendingSnapshot).toBe(index);
                break;
              }
            }
            checkInvariants(pr, matchBefore);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('resumes probing after the snapshot (or after match, whichever is further)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 100 }), fc.integer({ min: 1, max: 200 }), (match, snap) => {
        const pr = new Progress(1, 4, false);
        pr.maybeUpdate(match);
        pr.becomeSnapshot(snap);
        pr.becomeProbe();
        expect(pr.next).toBe(Math.max(match + 1, snap + 1));
        expect(pr.pendingSnapshot).toBe(0);
      }),
    );
  });
});
