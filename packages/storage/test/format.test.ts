import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError, type Entry } from '@raftkv/raft';
import { decodeEntry, decodeHardState, decodeSnapshotMeta, encodeEntry, encodeHardState, encodeSnapshotMeta, entryKey, parseEntryKey } from '../src/format.js';

describe('the on-disk format', () => {
  it('entry keys sort in index order and parse back', () => {
    const index = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
    fc.assert(
      fc.property(index, index, (a, b) => {
        expect(parseEntryKey(entryKey(a))).toBe(a);
        expect(entryKey(a) < entryKey(b)).toBe(a < b);
      }),
    );
    expect(entryKey(1)).toBe('e/0000000000000001');
    for (const bad of ['e/', 'e/1', 'e/000000000000000G', 'e/0000000000000000', 'e/00000000000000001', 'E/0000000000000001', 'e/000000000000000A']) {
      expect(parseEntryKey(bad)).toBeNull();
    }
  });

  it('records round-trip, and any flipped bit is caught', () => {
    const entryArb: fc.Arbitrary<Entry> = fc.record({
      index: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      term: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      type: fc.constantFrom('normal' as const, 'conf-change' as const),
      data: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(entryArb, fc.nat(), (entry, bit) => {
        const record = encodeEntry(entry);
        const back = decodeEntry(record, entry.index, '/data');
        expect({ ...back, data: Array.from(back.data) }).toEqual({ ...entry, data: Array.from(entry.data) });
        const damaged = Uint8Array.from(record);
        const k = bit % (damaged.byteLength * 8);
        damaged[k >> 3] = damaged[k >> 3]! ^ (1 << (k & 7));
        let error: unknown = null;
        try {
          decodeEntry(damaged, entry.index, '/data');
        } catch (e) {
          error = e;
        }
        expect(isRaftKvError(error, ErrorCode.STORAGE_CORRUPT)).toBe(true);
        expect((error as Error).message).toContain(`log entry ${entry.index}`);
        expect((error as Error).message).toContain('/data');
      }),
    );
    const hs = { term: 7, vote: 'n2', commit: 5 };
    expect(decodeHardState(encodeHardState(hs), '/data')).toEqual(hs);
    const meta = { index: 9, term: 4, confState: { voters: ['a', 'b'], learners: ['c'] } };
    expect(decodeSnapshotMeta(encodeSnapshotMeta(meta), '/data')).toEqual(meta);
  });
});
