/**
 * RaftLog (stable storage + UnstableLog) against a model log: a plain array of terms.
 *
 * The entries appended come from a "universe" of leader logs that obeys Raft's Log Matching
 * property (an (index, term) pair identifies the whole prefix up to it): the log of the leader
 * of term t is a prefix of an earlier log followed by entries of term t. A follower that only
 * accepts slices of these logs stays a prefix of one of them, as in a real cluster. New leaders
 * usually hold everything the follower knows to be committed (Leader Completeness), sometimes
 * not, to exercise the assertion that guards the committed prefix. Persistence is simulated the
 * way a caller of Ready does it, including the race where the unstable tail is overwritten
 * between handing entries out and reporting them durable.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { entryBytes, MemoryStorage, RaftAssertionError, RaftLog, type ConfState, type Entry } from '../src/index.js';

const CONF: ConfState = { voters: ['n1'], learners: [] };
/** Term written into the persisted hard state on restart: above every term used. */
const HARD_STATE_TERM = 1000;

/** Entry (i, t) of the universe; its size is a function of (i, t), so sizes also identify entries. */
function entry(index: number, term: number): Entry {
  const data = new Uint8Array((index * 7 + term * 13) % 41).fill((index + term) & 0xff);
  return { index, term, type: 'normal', data };
}

/** The model: the log as one array of terms, with a compaction point. */
class ModelLog {
  /** terms[i] is the term of entry i for i <= last; terms[0] = 0. Entries below snapIndex are compacted. */
  terms: number[] = [0];
  snapIndex = 0;
  committed = 0;
  applied = 0;

  get last(): number {
    return this.terms.length - 1;
  }

  get first(): number {
    return this.snapIndex + 1;
  }

  term(i: number): number | undefined {
    if (i < this.snapIndex || i > this.last) return undefined;
    return this.terms[i];
  }

  /** AppendEntries, written out plainly from the receiver rules of the paper's figure 2. */
  maybeAppend(prev: number, prevTerm: number, commit: number, entries: readonly Entry[]): { result: number | undefined; throws: boolean } {
    if (this.term(prev) !== prevTerm) return { result: undefined, throws: false };
    const firstConflict = entries.find((e) => this.term(e.index) !== e.term);
    if (firstConflict !== undefined) {
      if (firstConflict.index <= this.committed) return { result: undefined, throws: true };
      this.terms.length = firstConflict.index;
      for (const e of entries) if (e.index >= firstConflict.index) this.terms.push(e.term);
    }
    const lastNew = prev + entries.length;
    this.committed = Math.max(this.committed, Math.min(commit, lastNew));
    return { result: lastNew, throws: false };
  }

  /** Largest j <= i whose term is <= t, by linear scan; an unknown (compacted) term stops the scan. */
  findConflictByTerm(i: number, t: number): { index: number; term: number } {
    for (let j = Math.min(i, this.last); j >= 0; j--) {
      const tj = this.term(j);
      if (tj === undefined) return { index: j, term: 0 };
      if (tj <= t) return { index: j, term: tj };
    }
    return { index: 0, term: 0 };
  }

  /** Paper section 5.4.1: the later last term wins; with equal last terms, the longer log. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.terms[this.last]!;
    if (lastTerm !== ourTerm) return lastTerm > ourTerm;
    return lastIndex >= this.last;
  }
}

type Op =
  | { kind: 'newTerm'; parent: number; prefix: number; count: number; complete: boolean }
  | { kind: 'appendLeader'; leader: number; prev: number; count: number; commit: number }
  | { kind: 'appendRandom'; leader: number; prev: number; prevTerm: number; count: number; commit: number }
  | { kind: 'appendDuplicate'; prev: number; count: number; commit: number }
  | { kind: 'commitTo'; x: number }
  | { kind: 'appliedTo'; x: number; valid: boolean }
  | { kind: 'ready' }
  | { kind: 'persist' }
  | { kind: 'persistNow' }
  | { kind: 'compact'; x: number }
  | { kind: 'restart' }
  | { kind: 'findConflictByTerm'; x: number; t: number }
  | { kind: 'isUpToDate'; x: number; t: number }
  | { kind: 'slice'; lo: number; hi: number; bytes: number };

const n = fc.nat();
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('newTerm' as const),
      parent: n,
      prefix: n,
      count: fc.integer({ min: 1, max: 6 }),
      // Leader Completeness holds for 7 new leaders in 8; the others exercise the guard of the committed prefix.
      complete: fc.nat({ max: 7 }).map((k) => k !== 0),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('appendLeader' as const), leader: n, prev: n, count: n, commit: n }), weight: 8 },
  { arbitrary: fc.record({ kind: fc.constant('appendRandom' as const), leader: n, prev: n, prevTerm: n, count: n, commit: n }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('appendDuplicate' as const), prev: n, count: n, commit: n }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('commitTo' as const), x: n }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('appliedTo' as const), x: n, valid: fc.boolean() }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'ready' as const }), weight: 3 },
  { arbitrary: fc.constant({ kind: 'persist' as const }), weight: 3 },
  { arbitrary: fc.constant({ kind: 'persistNow' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('compact' as const), x: n }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'restart' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('findConflictByTerm' as const), x: n, t: n }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('isUpToDate' as const), x: n, t: n }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('slice' as const), lo: n, hi: n, bytes: n }), weight: 2 },
);

interface Init {
  len: number;
  firstTermLen: number;
  compact: number;
  commit: number;
  applied: number;
}
const initArb: fc.Arbitrary<Init> = fc.record({ len: n, firstTermLen: fc.integer({ min: 1, max: 8 }), compact: n, commit: n, applied: n });

/**
 * How often the interesting paths ran, over all runs: the test asserts each happened, so a
 * generator that degenerates (say, every append rejected) fails loudly instead of passing idly.
 */
const coverage = {
  accepted: 0,
  rejected: 0,
  truncated: 0,
  committedConflict: 0,
  raceOverwritten: 0,
  compacted: 0,
  restarted: 0,
  sliceCutShort: 0,
  conflictHitCompaction: 0,
};

function checkAgainstModel(log: RaftLog, m: ModelLog): void {
  // Gathered into one object and compared once: cheaper than an expect per value, and a
  // failure shows the whole picture.
  const observe = (first: number, last: number, term: (i: number) => number | undefined, committed: number, applied: number, toApply: () => number[][]): object => {
    const terms: (number | undefined)[] = [];
    for (let i = 0; i <= m.last + 2; i++) terms.push(term(i));
    return { first, last, terms, committed, applied, toApply: toApply() };
  };
  const lo = Math.max(m.applied + 1, m.first);
  const actual = observe(log.firstIndex(), log.lastIndex(), (i) => log.term(i), log.committed, log.applied, () =>
    log.nextCommittedEntries(Number.MAX_SAFE_INTEGER).map((e) => [e.index, e.term]),
  );
  const expected = observe(m.first, m.last, (i) => m.term(i), m.committed, m.applied, () => {
    const out: number[][] = [];
    for (let i = lo; i <= m.committed; i++) out.push([i, m.terms[i]!]);
    return out;
  });
  expect(actual).toEqual(expected);
  expect(log.lastTerm()).toBe(m.terms[m.last]);
  expect(log.hasNextCommittedEntries()).toBe(m.committed >= lo);
  // The log's own invariants (log.ts), stated independently of the model.
  expect(log.firstIndex() - 1 <= log.applied && log.applied <= log.committed && log.committed <= log.lastIndex()).toBe(true);
}

/** The model's entries [lo, hi). */
function modelSlice(m: ModelLog, lo: number, hi: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i < hi; i++) out.push(entry(i, m.terms[i]!));
  return out;
}

/** A leader's commit index: often none (commits that race ahead make conflicts rare), else up to `max`. */
function commitArg(r: number, max: number): number {
  return r % 3 === 0 ? Math.floor(r / 3) % (max + 1) : 0;
}

function runScenario(init: Init, ops: readonly Op[]): void {
  /** leaders[t][i]: term of entry i in the log of term t's leader (index 0 holds 0). Term 0 has no leader. */
  const leaders: number[][] = [[0]];
  const m = new ModelLog();

  // Initial stable state: a prefix of the first leader's log, maybe compacted, maybe with a commit.
  leaders.push([0, ...new Array<number>(init.firstTermLen).fill(1)]);
  const storage = new MemoryStorage(CONF);
  const initLen = init.len % (init.firstTermLen + 1);
  if (initLen > 0) storage.append(Array.from({ length: initLen }, (_, k) => entry(k + 1, 1)));
  m.terms = leaders[1]!.slice(0, initLen + 1);
  const compactAt = init.compact % (initLen + 1);
  if (compactAt > 0) {
    storage.compact({ index: compactAt, term: m.terms[compactAt]!, confState: CONF }, new Uint8Array(0));
    m.snapIndex = compactAt;
  }
  const commit = init.commit % (initLen + 1);
  storage.setHardState({ term: 1, vote: null, commit });
  m.committed = Math.max(compactAt, commit);
  const appliedArg = init.applied % (m.committed + 1);
  m.applied = appliedArg > 0 ? Math.max(appliedArg, compactAt) : compactAt;
  let log = new RaftLog(storage, appliedArg);
  checkAgainstModel(log, m);

  /** Entries handed out by a Ready and not yet reported durable (at most one Ready in flight). */
  let pending: Entry[] | null = null;
  const persist = (entries: readonly Entry[]): void => {
    storage.append(entries);
    const last = entries[entries.length - 1];
    if (last !== undefined) log.unstable.stableTo(last.index, last.term);
  };

  const doAppend = (prev: number, prevTerm: number, commitIndex: number, entries: Entry[]): void => {
    const termsBefore = m.terms.slice();
    const expected = m.maybeAppend(prev, prevTerm, commitIndex, entries);
    if (expected.throws) {
      coverage.committedConflict++;
      expect(() => log.maybeAppend(prev, prevTerm, commitIndex, entries)).toThrow(RaftAssertionError);
      return;
    }
    if (expected.result === undefined) coverage.rejected++;
    else coverage.accepted++;
    if (m.last < termsBefore.length - 1 || m.terms.some((t, i) => i < termsBefore.length && t !== termsBefore[i])) coverage.truncated++;
    expect(log.maybeAppend(prev, prevTerm, commitIndex, entries)).toBe(expected.result);
  };

  for (const op of ops) {
    const maxTerm = leaders.length - 1;
    switch (op.kind) {
      case 'newTerm': {
        // A new leader: its log is a prefix of an existing log (ours included) plus entries of
        // its own term. With Leader Completeness it holds everything we know is committed.
        const candidates = [m.terms, ...leaders.slice(1)].filter(
          (L) => !op.complete || (L.length > m.committed && L.slice(0, m.committed + 1).every((t, i) => t === m.terms[i])),
        );
        const parent = candidates[op.parent % candidates.length]!;
        const minLen = op.complete ? m.committed : 0;
        const prefixLen = minLen + (op.prefix % (parent.length - minLen));
        leaders.push([...parent.slice(0, prefixLen + 1), ...new Array<number>(op.count).fill(maxTerm + 1)]);
        break;
      }
      case 'appendLeader': {
        // Mostly the leader of the latest term, sometimes a stale one.
        const L = leaders[op.leader % 4 === 0 ? 1 + (op.leader % maxTerm) : maxTerm]!;
        let prev: number;
        if (op.prev % 3 === 0) {
          // The leader found where our logs agree (as fast back-off would), maybe a little before.
          let agree = Math.min(m.last, L.length - 1);
          while (agree > m.snapIndex && m.terms[agree] !== L[agree]) agree--;
          prev = Math.max(0, agree - ((op.prev >> 2) % 2));
        } else if (op.prev % 3 === 1) {
          prev = Math.max(0, Math.min(m.last, L.length - 1) - ((op.prev >> 2) % 3)); // probing near our end
        } else {
          prev = op.prev % L.length;
        }
        const count = op.count % (L.length - prev);
        const entries = Array.from({ length: count }, (_, k) => entry(prev + 1 + k, L[prev + 1 + k]!));
        doAppend(prev, L[prev]!, commitArg(op.commit, prev + count + 2), entries);
        break;
      }
      case 'appendRandom': {
        // A random (prev, prevTerm): usually rejected. Entries ride along only when that leader's
        // log really has (prev, prevTerm), so the universe keeps the Log Matching property.
        const prev = op.prev % (m.last + 3);
        const prevTerm = op.prevTerm % (maxTerm + 2);
        const L = leaders[1 + (op.leader % maxTerm)]!;
        const entries: Entry[] = [];
        if (prev < L.length && L[prev] === prevTerm) {
          const count = op.count % (L.length - prev);
          for (let k = 1; k <= count; k++) entries.push(entry(prev + k, L[prev + k]!));
        }
        doAppend(prev, prevTerm, commitArg(op.commit, m.last + 2), entries);
        break;
      }
      case 'appendDuplicate': {
        // Re-sending a slice of our own log (a duplicated or reordered MsgApp) never truncates.
        const prev = m.snapIndex + (op.prev % (m.last - m.snapIndex + 1));
        const count = op.count % (m.last - prev + 1);
        const entries = modelSlice(m, prev + 1, prev + 1 + count);
        const lastBefore = m.last;
        const commitIndex = commitArg(op.commit, m.last + 2);
        expect(log.maybeAppend(prev, m.terms[prev]!, commitIndex, entries)).toBe(prev + count);
        expect(log.lastIndex()).toBe(lastBefore);
        m.committed = Math.max(m.committed, Math.min(commitIndex, prev + count));
        break;
      }
      case 'commitTo': {
        const i = op.x % (m.last + 3);
        if (i > m.last && i > m.committed) {
          expect(() => log.commitTo(i)).toThrow(RaftAssertionError);
        } else {
          log.commitTo(i);
          m.committed = Math.max(m.committed, i);
        }
        break;
      }
      case 'appliedTo': {
        const i = op.valid ? m.applied + (op.x % (m.committed - m.applied + 1)) : op.x % (m.last + 3);
        if (i !== 0 && (i > m.committed || i < m.applied)) {
          expect(() => log.appliedTo(i)).toThrow(RaftAssertionError);
        } else {
          log.appliedTo(i);
          if (i !== 0) m.applied = i;
        }
        break;
      }
      case 'ready':
        if (pending === null) pending = log.unstable.entries.slice();
        break;
      case 'persist':
        if (pending !== null) {
          const handedOut = pending;
          const untouched = handedOut.length === log.unstable.entries.length && handedOut.every((e, k) => log.unstable.entries[k] === e);
          if (!untouched) coverage.raceOverwritten++;
          persist(handedOut);
          pending = null;
          // Nothing changed meanwhile: everything handed out is now stable.
          if (untouched) expect(log.unstable.entries).toEqual([]);
        }
        break;
      case 'persistNow':
        if (pending === null) {
          persist(log.unstable.entries.slice());
          expect(log.unstable.entries).toEqual([]);
          expect(log.stableLastIndex()).toBe(m.last);
        }
        break;
      case 'compact': {
        // The caller snapshots an applied, durable index and compacts its storage.
        const hi = Math.min(m.applied, log.stableLastIndex());
        const lo = storage.firstIndex() - 1;
        if (hi < lo) break;
        const i = lo + (op.x % (hi - lo + 1));
        storage.compact({ index: i, term: m.terms[i]!, confState: CONF }, new Uint8Array(0));
        if (i > m.snapIndex) coverage.compacted++;
        m.snapIndex = Math.max(m.snapIndex, i);
        break;
      }
      case 'restart': {
        // Finish the Ready in flight, persist everything, and reopen from storage.
        if (pending !== null) persist(pending);
        pending = null;
        persist(log.unstable.entries.slice());
        storage.setHardState({ term: HARD_STATE_TERM, vote: null, commit: m.committed });
        log = new RaftLog(storage, m.applied);
        coverage.restarted++;
        break;
      }
      case 'findConflictByTerm': {
        const i = op.x % (m.last + 4);
        const t = op.t % (maxTerm + 2);
        const got = log.findConflictByTerm(i, t);
        if (got.index < m.snapIndex) coverage.conflictHitCompaction++;
        expect(got).toEqual(m.findConflictByTerm(i, t));
        // The definition, independently of any scan: every index above the answer (up to i)
        // has a known term > t.
        expect(got.index).toBeLessThanOrEqual(i);
        for (let j = got.index + 1; j <= Math.min(i, m.last); j++) expect(m.term(j)).toBeGreaterThan(t);
        break;
      }
      case 'isUpToDate': {
        const li = op.x % (m.last + 4);
        const lt = op.t % (maxTerm + 2);
        expect(log.isUpToDate(li, lt)).toBe(m.isUpToDate(li, lt));
        break;
      }
      case 'slice': {
        const lo = m.first + (op.lo % (m.last - m.first + 2));
        const hi = lo + (op.hi % (m.last + 2 - lo));
        const all = modelSlice(m, lo, hi);
        // Half the time a limit right at (or one byte around) the end of some prefix of the range.
        const k = (op.bytes >> 1) % (all.length + 1);
        const prefixBytes = all.slice(0, k).reduce((acc, e) => acc + entryBytes(e), 0);
        const bytesMax = op.bytes % 2 === 0 ? (op.bytes >> 1) % 200 : Math.max(0, prefixBytes + ((op.bytes >> 4) % 3) - 1);
        const got = log.slice(lo, hi, bytesMax);
        expect(got.map((e) => [e.index, e.term, e.data.byteLength])).toEqual(all.slice(0, got.length).map((e) => [e.index, e.term, e.data.byteLength]));
        if (lo < hi) expect(got.length).toBeGreaterThan(0);
        const size = got.reduce((acc, e) => acc + entryBytes(e), 0);
        if (got.length > 1) expect(size).toBeLessThanOrEqual(bytesMax);
        // Cut short only when the next entry would not fit.
        if (got.length < all.length) {
          coverage.sliceCutShort++;
          expect(size + entryBytes(all[got.length]!)).toBeGreaterThan(bytesMax);
        }
        // Compacted entries are unavailable.
        if (m.snapIndex > 0) expect(log.entriesFrom(m.snapIndex, bytesMax)).toBeUndefined();
        break;
      }
    }
    checkAgainstModel(log, m);
  }
}

describe('RaftLog against a model log', () => {
  it('agrees with the model under random appends, commits, applies, persistence and compaction', () => {
    fc.assert(
      fc.property(initArb, fc.array(opArb, { maxLength: 60, size: 'max' }), (init, ops) => runScenario(init, ops)),
      { numRuns: 400 },
    );
    for (const [path, count] of Object.entries(coverage)) expect({ path, count }).not.toEqual({ path, count: 0 });
  });

  it('slices across the stable/unstable boundary: the longest prefix within the limit, at least one entry', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: 60 }), { minLength: 0, maxLength: 8 }),
        fc.array(fc.nat({ max: 60 }), { minLength: 0, maxLength: 8 }),
        fc.nat(),
        (stableSizes, unstableSizes, r) => {
          const make = (index: number, size: number): Entry => ({ index, term: 1, type: 'normal', data: new Uint8Array(size) });
          const all = [...stableSizes, ...unstableSizes].map((size, k) => make(k + 1, size));
          const storage = new MemoryStorage(CONF);
          storage.append(all.slice(0, stableSizes.length));
          const log = new RaftLog(storage, 0);
          log.append(all.slice(stableSizes.length));
          expect(log.unstable.offset).toBe(stableSizes.length + 1);
          for (let lo = 1; lo <= all.length + 1; lo++) {
            for (let hi = lo; hi <= all.length + 1; hi++) {
              const want = all.slice(lo - 1, hi - 1);
              // Limits at every prefix boundary, one byte either side, and one at random.
              const limits = [0, r % 500];
              let sum = 0;
              for (const e of want) limits.push((sum += entryBytes(e)) - 1, sum, sum + 1);
              for (const bytesMax of limits) {
                let count = 0;
                let size = 0;
                while (count < want.length && (count === 0 || size + entryBytes(want[count]!) <= bytesMax)) size += entryBytes(want[count++]!);
                const got = log.slice(lo, hi, bytesMax).map((e) => e.index);
                if (got.length !== count || got.some((index, k) => index !== lo + k)) {
                  expect({ lo, hi, bytesMax, got }).toEqual({ lo, hi, bytesMax, got: want.slice(0, count).map((e) => e.index) });
                }
              }
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('never truncates on a matching duplicate append, even of a long log', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 30 }), fc.nat(), fc.nat(), (bumps, a, b) => {
        // A log with non-decreasing terms, all unstable.
        const terms = [0];
        for (const bump of bumps) terms.push(Math.max(1, terms[terms.length - 1]! + (bump ? 1 : 0)));
        const log = new RaftLog(new MemoryStorage(CONF), 0);
        const all = terms.slice(1).map((t, k) => entry(k + 1, t));
        expect(log.maybeAppend(0, 0, 0, all)).toBe(all.length);
        const prev = a % (all.length + 1);
        const count = b % (all.length - prev + 1);
        expect(log.maybeAppend(prev, terms[prev]!, 0, all.slice(prev, prev + count))).toBe(prev + count);
        expect(log.lastIndex()).toBe(all.length);
        expect(log.unstable.entries).toEqual(all);
      }),
      { numRuns: 300 },
    );
  });
});
