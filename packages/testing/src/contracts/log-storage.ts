/**
 * The LogStorage contract, as a reusable vitest suite: every stable storage of raftkv (the
 * MemoryStorage model, the LevelDB store) must pass it. The read side is the core's LogStorage
 * interface; the write side is the minimal interface MemoryStorage offers its caller, which
 * carries out a Ready (see `Ready` in types.ts). Writers may be asynchronous: every write is
 * awaited, and errors are accepted both as throws and as rejections.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  entryBytes,
  ErrorCode,
  isRaftKvError,
  type ConfState,
  type Entry,
  type HardState,
  type LogStorage,
  type Snapshot,
  type SnapshotMeta,
} from '@raftkv/raft';

/** The write side of a stable storage, as the caller of `Ready` uses it. */
export interface WritableLogStorage {
  /** Drops every stored entry at or after `entries[0].index`, then appends; entries before the first index are ignored. */
  append(entries: readonly Entry[]): void | Promise<void>;
  setHardState(hardState: HardState): void | Promise<void>;
  /** Installs a snapshot from the leader; keeps the entries after it only if the log holds its last entry. Throws SNAPSHOT_OUT_OF_DATE unless newer. */
  applySnapshot(snapshot: Snapshot): void | Promise<void>;
  /** Records a snapshot the state machine took at `meta.index` (stored) and drops the entries it covers; a no-op at or below the current snapshot. */
  compact(meta: SnapshotMeta, data: Uint8Array): void | Promise<void>;
}

export interface StorageUnderTest {
  readonly storage: LogStorage & WritableLogStorage;
  /** Opens the same durable state again, as after a restart (durable stores only). */
  readonly reopen?: () => LogStorage | Promise<LogStorage>;
  /** Releases resources once the test is done. */
  readonly close?: () => void | Promise<void>;
}

export type MakeStorage = (confState: ConfState) => StorageUnderTest | Promise<StorageUnderTest>;

const CONF: ConfState = { voters: ['n1', 'n2', 'n3'], learners: ['n4'] };
const CONF2: ConfState = { voters: ['n1', 'n2', 'n5'], learners: [] };

/** Entry (index, term) with `size` bytes of data derived from both. */
function ent(index: number, term: number, size = 10): Entry {
  const data = new Uint8Array(size);
  for (let k = 0; k < size; k++) data[k] = (index * 31 + term * 7 + k) & 0xff;
  return { index, term, type: 'normal', data };
}

/** Entries [from, to] of one term. */
function run(from: number, to: number, term: number, size = 10): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, size));
  return out;
}

/** Entries as plain values, so that Uint8Array and Buffer compare equal. */
function norm(entries: readonly Entry[]): unknown[] {
  return entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Array.from(e.data) }));
}

function normSnapshot(s: Snapshot): unknown {
  return { meta: { index: s.meta.index, term: s.meta.term, confState: normConf(s.meta.confState) }, data: Array.from(s.data) };
}

function normConf(c: ConfState): unknown {
  return { voters: [...c.voters], learners: [...c.learners] };
}

function snap(index: number, term: number, confState: ConfState = CONF, size = 3): Snapshot {
  return { meta: { index, term, confState }, data: new Uint8Array(size).fill(index & 0xff) };
}

/** Asserts that `fn` fails with a RaftKvError of `code`, by throwing or by rejecting. */
async function expectCode(fn: () => unknown, code: ErrorCode): Promise<void> {
  let error: unknown = undefined;
  let failed = false;
  try {
    await fn();
  } catch (e) {
    error = e;
    failed = true;
  }
  expect(failed, `expected ${code}, but the call succeeded`).toBe(true);
  // By name rather than instanceof, so that a store built against another copy of the core
  // (say, its compiled dist) passes too.
  expect(isRaftKvError(error) || (error instanceof Error && error.name === 'RaftKvError'), `expected a RaftKvError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: unknown }).code).toBe(code);
}

/** Everything observable through LogStorage, as plain values. */
function dump(s: LogStorage): unknown {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const terms: number[] = [];
  for (let i = first - 1; i <= last; i++) terms.push(s.term(i));
  const { hardState, confState } = s.initialState();
  return {
    first,
    last,
    terms,
    entries: last >= first ? norm(s.entries(first, last + 1, Number.MAX_SAFE_INTEGER)) : [],
    hardState: { term: hardState.term, vote: hardState.vote, commit: hardState.commit },
    confState: normConf(confState),
    snapshot: normSnapshot(s.snapshot()),
  };
}

/**
 * Defines the contract's tests for one storage. `options.reopens` says whether `make` returns
 * storages with `reopen` (durable ones): the restart test is defined only for those.
 */
export function runLogStorageContract(name: string, make: MakeStorage, options: { reopens: boolean } = { reopens: false }): void {
  /** Runs `body` on a fresh storage and closes it afterwards. */
  const withStorage = async (body: (sut: StorageUnderTest) => Promise<void>): Promise<void> => {
    const sut = await make(CONF);
    try {
      await body(sut);
    } finally {
      await sut.close?.();
    }
  };

  describe(`LogStorage contract: ${name}`, () => {
    it('starts empty, at the bootstrap configuration', () =>
      withStorage(async ({ storage: s }) => {
        expect(s.firstIndex()).toBe(1);
        expect(s.lastIndex()).toBe(0);
        expect(s.term(0)).toBe(0);
        expect(s.entries(1, 1, Number.MAX_SAFE_INTEGER)).toEqual([]);
        const { hardState, confState } = s.initialState();
        expect({ ...hardState }).toEqual({ term: 0, vote: null, commit: 0 });
        expect(normConf(confState)).toEqual(normConf(CONF));
        expect(normSnapshot(s.snapshot())).toMatchObject({ meta: { index: 0, term: 0, confState: normConf(CONF) } });
        await expectCode(() => s.term(1), ErrorCode.LOG_UNAVAILABLE);
        await expectCode(() => s.entries(1, 2, 100), ErrorCode.LOG_UNAVAILABLE);
        await expectCode(() => s.entries(0, 1, 100), ErrorCode.LOG_COMPACTED);
      }));

    it('appends and reads back entries', () =>
      withStorage(async ({ storage: s }) => {
        const all = [...run(1, 3, 1), ...run(4, 6, 2, 0), ent(7, 5, 200)];
        await s.append(all.slice(0, 4));
        await s.append(all.slice(4));
        expect(s.firstIndex()).toBe(1);
        expect(s.lastIndex()).toBe(7);
        expect(norm(s.entries(1, 8, Number.MAX_SAFE_INTEGER))).toEqual(norm(all));
        for (const e of all) expect(s.term(e.index)).toBe(e.term);
        await s.append([]);
        expect(s.lastIndex()).toBe(7);
      }));

    it('overwrites from the first index of an append, dropping everything after it', () =>
      withStorage(async ({ storage: s }) => {
        await s.append(run(1, 5, 1));
        // A conflicting suffix from a new leader.
        await s.append(run(3, 4, 2));
        expect(s.lastIndex()).toBe(4);
        expect([1, 2, 3, 4].map((i) => s.term(i))).toEqual([1, 1, 2, 2]);
        await expectCode(() => s.term(5), ErrorCode.LOG_UNAVAILABLE);
        await expectCode(() => s.entries(1, 6, 1000), ErrorCode.LOG_UNAVAILABLE);
        // An extension right after the end.
        await s.append(run(5, 6, 3));
        expect(norm(s.entries(1, 7, Number.MAX_SAFE_INTEGER))).toEqual(norm([...run(1, 2, 1), ...run(3, 4, 2), ...run(5, 6, 3)]));
        // A shorter append replaces the tail from its first index (the core only sends one that conflicts).
        await s.append([ent(2, 4)]);
        expect(s.lastIndex()).toBe(2);
        expect(norm(s.entries(1, 3, Number.MAX_SAFE_INTEGER))).toEqual(norm([ent(1, 1), ent(2, 4)]));
        // Overwriting from the very first entry.
        await s.append(run(1, 3, 5));
        expect(norm(s.entries(1, 4, Number.MAX_SAFE_INTEGER))).toEqual(norm(run(1, 3, 5)));
      }));

    it('ignores appended entries that are before the first index', () =>
      withStorage(async ({ storage: s }) => {
        await s.append(run(1, 5, 1));
        await s.compact({ index: 3, term: 1, confState: CONF }, new Uint8Array(0));
        await s.append(run(1, 2, 1)); // entirely compacted: nothing happens
        expect([s.firstIndex(), s.lastIndex()]).toEqual([4, 5]);
        await s.append([...run(2, 4, 1), ent(5, 2), ent(6, 2)]); // straddles the first index
        expect([s.firstIndex(), s.lastIndex()]).toEqual([4, 6]);
        expect(norm(s.entries(4, 7, Number.MAX_SAFE_INTEGER))).toEqual(norm([ent(4, 1), ent(5, 2), ent(6, 2)]));
        expect(s.term(3)).toBe(1);
      }));

    it('entries() honours lo, hi and bytesMax, and returns at least one entry', () =>
      withStorage(async ({ storage: s }) => {
        const sizes = [0, 5, 40, 1, 100, 0, 7, 13, 64, 2];
        const all = sizes.map((size, k) => ent(k + 1, 1 + (k >> 2), size));
        await s.append(all);
        for (let lo = 1; lo <= 11; lo++) {
          for (let hi = lo; hi <= 11; hi++) {
            const want = all.slice(lo - 1, hi - 1);
            const total = want.reduce((acc, e) => acc + entryBytes(e), 0);
            const limits = new Set([0, 1, total - 1, total, total + 1, Number.MAX_SAFE_INTEGER]);
            let prefix = 0;
            for (const e of want) limits.add((prefix += entryBytes(e))).add(prefix - 1);
            for (const bytesMax of limits) {
              if (bytesMax < 0) continue;
              const got = s.entries(lo, hi, bytesMax);
              // The longest prefix within bytesMax, but never empty when lo < hi.
              let count = 0;
              let size = 0;
              while (count < want.length && (count === 0 || size + entryBytes(want[count]!) <= bytesMax)) size += entryBytes(want[count++]!);
              expect({ lo, hi, bytesMax, got: norm(got) }).toEqual({ lo, hi, bytesMax, got: norm(want.slice(0, count)) });
            }
          }
        }
      }));

    it('entries() throws LOG_COMPACTED below the first index and LOG_UNAVAILABLE past the last', () =>
      withStorage(async ({ storage: s }) => {
        await s.append(run(1, 6, 1));
        await s.compact({ index: 3, term: 1, confState: CONF }, new Uint8Array(0));
        await expectCode(() => s.entries(3, 5, 1000), ErrorCode.LOG_COMPACTED);
        await expectCode(() => s.entries(1, 2, 1000), ErrorCode.LOG_COMPACTED);
        await expectCode(() => s.entries(4, 8, 1000), ErrorCode.LOG_UNAVAILABLE);
        await expectCode(() => s.entries(7, 8, 1000), ErrorCode.LOG_UNAVAILABLE);
        expect(norm(s.entries(4, 7, 1000))).toEqual(norm(run(4, 6, 1)));
        expect(s.entries(7, 7, 1000)).toEqual([]);
      }));

    it('term() answers on [firstIndex - 1, lastIndex], firstIndex - 1 being the snapshot term', () =>
      withStorage(async ({ storage: s }) => {
        await s.append([...run(1, 2, 1), ...run(3, 5, 2), ...run(6, 7, 3)]);
        await s.compact({ index: 4, term: 2, confState: CONF }, new Uint8Array(0));
        expect(s.firstIndex()).toBe(5);
        expect(s.term(4)).toBe(2);
        expect([5, 6, 7].map((i) => s.term(i))).toEqual([2, 3, 3]);
        await expectCode(() => s.term(3), ErrorCode.LOG_COMPACTED);
        await expectCode(() => s.term(0), ErrorCode.LOG_COMPACTED);
        await expectCode(() => s.term(8), ErrorCode.LOG_UNAVAILABLE);
      }));

    it('compact keeps the later entries and records the snapshot', () =>
      withStorage(async ({ storage: s }) => {
        const all = [...run(1, 2, 1), ...run(3, 4, 2), ...run(5, 6, 3)];
        await s.append(all);
        const data = new Uint8Array([9, 8, 7]);
        await s.compact({ index: 4, term: 2, confState: CONF2 }, data);
        expect([s.firstIndex(), s.lastIndex()]).toEqual([5, 6]);
        expect(norm(s.entries(5, 7, Number.MAX_SAFE_INTEGER))).toEqual(norm(all.slice(4)));
        expect(normSnapshot(s.snapshot())).toEqual(normSnapshot({ meta: { index: 4, term: 2, confState: CONF2 }, data }));
        // The configuration in force is the snapshot's (no configuration entries follow it).
        expect(normConf(s.initialState().confState)).toEqual(normConf(CONF2));
        // Compacting at or below the snapshot changes nothing.
        await s.compact({ index: 3, term: 2, confState: CONF }, new Uint8Array([1]));
        await s.compact({ index: 4, term: 2, confState: CONF }, new Uint8Array([1]));
        expect(normSnapshot(s.snapshot())).toEqual(normSnapshot({ meta: { index: 4, term: 2, confState: CONF2 }, data }));
        expect([s.firstIndex(), s.lastIndex()]).toEqual([5, 6]);
        // Compacting everything leaves an empty log after the snapshot; appends continue from it.
        await s.compact({ index: 6, term: 3, confState: CONF2 }, data);
        expect([s.firstIndex(), s.lastIndex(), s.term(6)]).toEqual([7, 6, 3]);
        await s.append([ent(7, 3)]);
        expect([s.firstIndex(), s.lastIndex(), s.term(7)]).toEqual([7, 7, 3]);
      }));

    it('applySnapshot keeps the entries after a snapshot that the log holds', () =>
      withStorage(async ({ storage: s }) => {
        const all = [...run(1, 2, 1), ...run(3, 4, 2), ...run(5, 6, 3)];
        await s.append(all);
        const sn = snap(4, 2, CONF2);
        await s.applySnapshot(sn);
        expect([s.firstIndex(), s.lastIndex(), s.term(4)]).toEqual([5, 6, 2]);
        expect(norm(s.entries(5, 7, Number.MAX_SAFE_INTEGER))).toEqual(norm(all.slice(4)));
        expect(normSnapshot(s.snapshot())).toEqual(normSnapshot(sn));
        expect(normConf(s.initialState().confState)).toEqual(normConf(CONF2));
      }));

    it('applySnapshot drops the whole log when it does not hold the snapshot', () =>
      withStorage(async ({ storage: s }) => {
        await s.append([...run(1, 2, 1), ...run(3, 6, 2)]);
        // Same index, different term.
        await s.applySnapshot(snap(4, 3));
        expect([s.firstIndex(), s.lastIndex(), s.term(4)]).toEqual([5, 4, 3]);
        expect(s.entries(5, 5, 1000)).toEqual([]);
        await expectCode(() => s.term(5), ErrorCode.LOG_UNAVAILABLE);
        await s.append([ent(5, 3)]);
        expect([s.lastIndex(), s.term(5)]).toEqual([5, 3]);
        // Beyond the end of the log.
        await s.applySnapshot(snap(10, 4));
        expect([s.firstIndex(), s.lastIndex(), s.term(10)]).toEqual([11, 10, 4]);
        await expectCode(() => s.term(9), ErrorCode.LOG_COMPACTED);
        expect(normSnapshot(s.snapshot())).toEqual(normSnapshot(snap(10, 4)));
      }));

    it('applySnapshot of a snapshot that is not newer throws SNAPSHOT_OUT_OF_DATE and changes nothing', () =>
      withStorage(async ({ storage: s }) => {
        await s.append(run(1, 8, 1));
        await s.applySnapshot(snap(4, 1));
        const before = dump(s);
        await expectCode(() => s.applySnapshot(snap(3, 1)), ErrorCode.SNAPSHOT_OUT_OF_DATE);
        await expectCode(() => s.applySnapshot(snap(4, 1)), ErrorCode.SNAPSHOT_OUT_OF_DATE);
        await s.compact({ index: 6, term: 1, confState: CONF }, new Uint8Array(0));
        const afterCompact = dump(s);
        expect(afterCompact).not.toEqual(before);
        await expectCode(() => s.applySnapshot(snap(5, 1)), ErrorCode.SNAPSHOT_OUT_OF_DATE);
        expect(dump(s)).toEqual(afterCompact);
      }));

    it('applySnapshot at the bootstrap state refuses index 0', () =>
      withStorage(async ({ storage: s }) => {
        await expectCode(() => s.applySnapshot(snap(0, 0)), ErrorCode.SNAPSHOT_OUT_OF_DATE);
      }));

    it('round-trips the hard state', () =>
      withStorage(async ({ storage: s }) => {
        const states: HardState[] = [
          { term: 1, vote: 'n2', commit: 0 },
          { term: 1, vote: 'n2', commit: 3 },
          { term: 4, vote: null, commit: 3 },
          { term: 5, vote: 'n1', commit: 6 },
        ];
        await s.append(run(1, 6, 1));
        for (const hs of states) {
          await s.setHardState(hs);
          expect({ ...s.initialState().hardState }).toEqual(hs);
        }
      }));

    // Declared only for durable storages, so the suite never reports a test skipped by design.
    if (options.reopens) it('a reopened storage holds everything written', async () => {
      const sut = await make(CONF);
      try {
        if (sut.reopen === undefined) throw new Error(`${name}: declared { reopens: true } but make() gave no reopen`);
        const s = sut.storage;
        await s.append([...run(1, 3, 1), ...run(4, 9, 2, 33)]);
        await s.setHardState({ term: 2, vote: 'n3', commit: 7 });
        await s.compact({ index: 5, term: 2, confState: CONF2 }, new Uint8Array([1, 2, 3]));
        await s.append(run(8, 10, 3));
        const expected = dump(s);
        expect(dump(await sut.reopen())).toEqual(expected);
        await s.applySnapshot(snap(12, 4, CONF));
        await s.setHardState({ term: 4, vote: null, commit: 12 });
        expect(dump(await sut.reopen())).toEqual(dump(s));
      } finally {
        await sut.close?.();
      }
    });

    it('behaves like a plain model under random writes (and reopens to the same state)', async () => {
      type Op =
        | { kind: 'append'; at: number; count: number; termBump: number }
        | { kind: 'compact'; at: number }
        | { kind: 'applySnapshot'; at: number; match: boolean }
        | { kind: 'hardState'; commit: number };
      const opArb: fc.Arbitrary<Op> = fc.oneof(
        { arbitrary: fc.record({ kind: fc.constant('append' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 5 }), termBump: fc.nat({ max: 2 }) }), weight: 4 },
        fc.record({ kind: fc.constant('compact' as const), at: fc.nat() }),
        fc.record({ kind: fc.constant('applySnapshot' as const), at: fc.nat(), match: fc.boolean() }),
        fc.record({ kind: fc.constant('hardState' as const), commit: fc.nat() }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { maxLength: 25 }), async (ops) => {
          const sut = await make(CONF);
          try {
            const s = sut.storage;
            // Model: terms[i] for i in [snapIndex, last]; terms[snapIndex] is the snapshot term.
            let terms: number[] = [0];
            let snapIndex = 0;
            let term = 1;
            let hsTerm = 0;
            let hsCommit = 0;
            const check = (st: LogStorage): void => {
              const last = terms.length - 1;
              expect([st.firstIndex(), st.lastIndex()]).toEqual([snapIndex + 1, last]);
              for (let i = snapIndex; i <= last; i++) expect(st.term(i)).toBe(terms[i]);
              if (last > snapIndex) expect(norm(st.entries(snapIndex + 1, last + 1, Number.MAX_SAFE_INTEGER))).toEqual(norm(terms.slice(snapIndex + 1).map((t, k) => ent(snapIndex + 1 + k, t))));
            };
            for (const op of ops) {
              const last = terms.length - 1;
              switch (op.kind) {
                case 'append': {
                  term += op.termBump;
                  const floor = Math.max(snapIndex, hsCommit);
                  const from = floor + 1 + (op.at % (last - floor + 1));
                  await s.append(run(from, from + op.count - 1, term));
                  terms = [...terms.slice(0, from), ...new Array<number>(op.count).fill(term)];
                  break;
                }
                case 'compact': {
                  const at = snapIndex + (op.at % (last - snapIndex + 1));
                  await s.compact({ index: at, term: terms[at]!, confState: CONF }, new Uint8Array([at & 0xff]));
                  snapIndex = Math.max(snapIndex, at);
                  break;
                }
                case 'applySnapshot': {
                  const floor = Math.max(snapIndex, hsCommit);
                  const at = floor + 1 + (op.at % (last - floor + 3));
                  const keep = op.match && at <= last;
                  const snapTerm = keep ? terms[at]! : ++term;
                  await s.applySnapshot(snap(at, snapTerm));
                  if (!keep) {
                    // Only terms[at] matters below the new first index: pad, then end the log at the snapshot.
                    terms = terms.slice(0, at);
                    while (terms.length < at) terms.push(0);
                    terms.push(snapTerm);
                  }
                  snapIndex = at;
                  break;
                }
                case 'hardState': {
                  hsTerm = Math.max(hsTerm, term);
                  const hs = { term: hsTerm, vote: null, commit: op.commit % (last + 1) };
                  await s.setHardState(hs);
                  hsCommit = hs.commit;
                  expect({ ...s.initialState().hardState }).toEqual(hs);
                  break;
                }
              }
              check(s);
            }
            if (sut.reopen !== undefined) check(await sut.reopen());
          } finally {
            await sut.close?.();
          }
        }),
        { numRuns: 150 },
      );
    });
  });
}
