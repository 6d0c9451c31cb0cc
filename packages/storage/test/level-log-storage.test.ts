import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { MemoryLevel } from 'memory-level';
import { ErrorCode, isRaftKvError, type ConfState, type Entry } from '@raftkv/raft';
import { runLogStorageContract } from '@raftkv/testing/contracts';
import { LevelLogStorage, openLevelLogStorage } from '../src/index.js';
import { entryKey, KEY } from '../src/format.js';
import { forwarding, makeTempDir, readAll, removeTempDir, removeTempDirs } from './helpers.js';

runLogStorageContract('LevelLogStorage on memory-level', async (confState) => {
  const storage = await LevelLogStorage.open(new MemoryLevel(), { dataDir: 'memory-level', bootstrap: confState });
  return { storage, close: () => storage.close() };
});

/** A configuration no test uses: a reopened store must ignore it (bootstrap applies only to an empty store). */
const OTHER_BOOTSTRAP: ConfState = { voters: ['not-a-member'], learners: [] };

afterAll(removeTempDirs);

runLogStorageContract(
  'LevelLogStorage on classic-level',
  async (confState) => {
    const dir = await makeTempDir();
    let current = await openLevelLogStorage(dir, confState);
    return {
      storage: forwarding(() => current),
      // Closes the store and opens the same directory again, as after a restart. The reopened
      // store must serve exactly what the closed one did (checked here, so that the contract's
      // later comparisons through the forwarding storage are not of a store with itself).
      reopen: async () => {
        const before = readAll(current);
        await current.close();
        current = await openLevelLogStorage(dir, OTHER_BOOTSTRAP);
        expect(readAll(current)).toEqual(before);
        return current;
      },
      close: async () => {
        await current.close();
        await removeTempDir(dir);
      },
    };
  },
  { reopens: true },
);

// ---------------------------------------------------------------------------------------------
// What the contract does not cover: batching, snapshot data, what is on disk, close.

const CONF: ConfState = { voters: ['n1', 'n2', 'n3'], learners: [] };

function ent(index: number, term: number): Entry {
  return { index, term, type: 'normal', data: new Uint8Array([index & 0xff]) };
}

async function keysOf(db: MemoryLevel<string, Uint8Array>): Promise<string[]> {
  return db.keys({ keyEncoding: 'utf8' }).all();
}

async function openOnMemory(): Promise<{ db: MemoryLevel<string, Uint8Array>; s: LevelLogStorage }> {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  return { db, s: await LevelLogStorage.open(db, { dataDir: 'memory-level', bootstrap: CONF }) };
}

describe('LevelLogStorage beyond the contract', () => {
  it('persists a whole Ready in one synced batch, and nothing for an empty one', async () => {
    const { db, s } = await openOnMemory();
    const batch = vi.spyOn(db, 'batch');
    await s.persist({
      snapshot: { meta: { index: 3, term: 2, confState: CONF }, data: new Uint8Array(0) },
      entries: [ent(4, 2), ent(5, 3)],
      hardState: { term: 3, vote: 'n2', commit: 4 },
    });
    expect(batch).toHaveBeenCalledTimes(1);
    // batch() is overloaded, and the spy's types see only the last (chained) form: read the call as plain arguments.
    const [, options] = (batch.mock.calls[0] ?? []) as unknown[];
    expect(options).toMatchObject({ sync: true, keyEncoding: 'utf8', valueEncoding: 'view' });
    expect(await keysOf(db)).toEqual([entryKey(4), entryKey(5), KEY.hardState, KEY.snapshot, KEY.version]);
    await s.persist({ snapshot: null, entries: [], hardState: null });
    expect(batch).toHaveBeenCalledTimes(1);
    await s.close();
  });

  it('writes a commit-only Ready (mustSync false) unsynced; anything with entries, a vote or a snapshot synced', async () => {
    const { db, s } = await openOnMemory();
    await s.persist({ snapshot: null, entries: [ent(1, 1), ent(2, 1)], hardState: { term: 1, vote: 'n1', commit: 0 }, mustSync: true });
    const batch = vi.spyOn(db, 'batch');
    const syncOf = (call: number): unknown => ((batch.mock.calls[call] ?? []) as unknown[])[1];
    await s.persist({ snapshot: null, entries: [], hardState: { term: 1, vote: 'n1', commit: 2 }, mustSync: false });
    expect(syncOf(0)).toMatchObject({ sync: false });
    expect(s.hardState().commit).toBe(2);
    // Entries are always synced, whatever the caller says.
    await s.persist({ snapshot: null, entries: [ent(3, 1)], hardState: null, mustSync: false });
    expect(syncOf(1)).toMatchObject({ sync: true });
    // No word from the caller: synced.
    await s.persist({ snapshot: null, entries: [], hardState: { term: 2, vote: null, commit: 2 } });
    expect(syncOf(2)).toMatchObject({ sync: true });
    await s.close();
  });

  it('keeps snapshot data only from compact/applySnapshot, never from persist, and drops stale data', async () => {
    const { db, s } = await openOnMemory();
    await s.append([1, 2, 3, 4, 5, 6].map((i) => ent(i, 1)));
    await s.compact({ index: 2, term: 1, confState: CONF }, new Uint8Array([7, 7]));
    expect(Array.from(s.snapshot().data)).toEqual([7, 7]);
    expect(await keysOf(db)).toContain(KEY.snapshotData);
    // A Ready's snapshot data goes to the state machine, not here; the older image is deleted.
    await s.persist({ snapshot: { meta: { index: 4, term: 1, confState: CONF }, data: new Uint8Array([9]) }, entries: [], hardState: null });
    expect(s.snapshot().data.byteLength).toBe(0);
    expect(await keysOf(db)).not.toContain(KEY.snapshotData);
    // Compaction with empty data, as production does, stores no data either.
    await s.compact({ index: 5, term: 1, confState: CONF }, new Uint8Array(0));
    expect(await keysOf(db)).toEqual([entryKey(6), KEY.hardState, KEY.snapshot, KEY.version]);
    await s.close();
  });

  it('compaction and conflicting appends delete the entries from the database', async () => {
    const { db, s } = await openOnMemory();
    await s.append([1, 2, 3, 4, 5, 6].map((i) => ent(i, 1)));
    await s.append([ent(4, 2)]);
    expect(await keysOf(db)).toEqual([1, 2, 3, 4].map(entryKey).concat([KEY.hardState, KEY.snapshot, KEY.version]));
    await s.compact({ index: 3, term: 1, confState: CONF }, new Uint8Array(0));
    expect(await keysOf(db)).toEqual([entryKey(4), KEY.hardState, KEY.snapshot, KEY.version]);
    await s.close();
  });

  it('serves the old state while a write is in flight, the new one after', async () => {
    const { s } = await openOnMemory();
    await s.append([ent(1, 1)]);
    const writing = s.append([ent(2, 1)]);
    expect(s.lastIndex()).toBe(1);
    await writing;
    expect(s.lastIndex()).toBe(2);
    await s.close();
  });

  it('close() waits for the write in flight, closes the database, and later calls throw STORAGE_CLOSED', async () => {
    const { db, s } = await openOnMemory();
    const writing = s.append([ent(1, 1)]);
    await s.close();
    await writing;
    expect(db.status).toBe('closed');
    await s.close(); // idempotent
    const calls: (() => unknown)[] = [
      () => s.firstIndex(),
      () => s.lastIndex(),
      () => s.term(0),
      () => s.entries(1, 2, 100),
      () => s.snapshot(),
      () => s.initialState(),
      () => s.hardState(),
      () => s.append([ent(2, 1)]),
      () => s.setHardState({ term: 1, vote: null, commit: 0 }),
      () => s.persist({ snapshot: null, entries: [ent(2, 1)], hardState: null }),
      () => s.applySnapshot({ meta: { index: 5, term: 1, confState: CONF }, data: new Uint8Array(0) }),
      () => s.compact({ index: 1, term: 1, confState: CONF }, new Uint8Array(0)),
    ];
    for (const call of calls) {
      const error: unknown = await (async () => call())().then(
        () => null,
        (e: unknown) => e,
      );
      expect(isRaftKvError(error, ErrorCode.STORAGE_CLOSED), `expected STORAGE_CLOSED, got ${String(error)}`).toBe(true);
    }
  });

  it('keeps the stored configuration over the bootstrap one, and openLevelLogStorage creates its directory', async () => {
    const dir = join(await makeTempDir(), 'nested', 'log');
    const s = await openLevelLogStorage(dir, CONF);
    expect(s.dataDir).toBe(dir);
    await s.setHardState({ term: 3, vote: 'n3', commit: 0 });
    await s.close();
    const again = await openLevelLogStorage(dir, OTHER_BOOTSTRAP);
    expect(again.initialState()).toEqual({ hardState: { term: 3, vote: 'n3', commit: 0 }, confState: CONF });
    await again.close();
  });
});
