/**
 * Bad data on disk: each kind of damage makes open() reject with STORAGE_CORRUPT, naming the
 * directory and the record, and leaves the database closed (its lock released). And a write that
 * fails leaves the store as it was.
 */
import { crc32 } from 'node:zlib';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import { encode } from '@raftkv/codec';
import { ErrorCode, isRaftKvError, RaftAssertionError, type ConfState, type Entry } from '@raftkv/raft';
import { LevelLogStorage, openLevelLogStorage, RECORD_BYTES_MAX } from '../src/index.js';
import { entryKey, KEY } from '../src/format.js';
import { makeTempDir, readAll, removeTempDirs } from './helpers.js';

const CONF: ConfState = { voters: ['n1', 'n2', 'n3'], learners: [] };

function ent(index: number, term: number): Entry {
  return { index, term, type: 'normal', data: new Uint8Array([index & 0xff, term & 0xff, 7]) };
}

/**
 * A record as format.ts documents it, built independently here: crc32 of the payload (4 bytes,
 * big-endian), then the msgpack payload.
 */
function seal(value: unknown): Uint8Array {
  const payload = Buffer.from(encode(value));
  const record = Buffer.alloc(4 + payload.byteLength);
  record.writeUInt32BE(crc32(payload) >>> 0, 0);
  payload.copy(record, 4);
  return record;
}

function rawHandle(dir: string): ClassicLevel<string, Uint8Array> {
  return new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view', createIfMissing: false, errorIfExists: false });
}

let dir = '';

/** Snapshot at 2 (term 1); entries 3..10: terms 1,1 then 2 from 5 on; commit 6. */
beforeEach(async () => {
  dir = await makeTempDir();
  const s = await openLevelLogStorage(dir, CONF);
  await s.append([1, 2, 3, 4].map((i) => ent(i, 1)).concat([5, 6, 7, 8, 9, 10].map((i) => ent(i, 2))));
  await s.compact({ index: 2, term: 1, confState: CONF }, new Uint8Array(0));
  await s.setHardState({ term: 2, vote: 'n1', commit: 6 });
  await s.close();
});

afterAll(removeTempDirs);

/** Damages the closed store through a raw handle, then returns the error its open() rejects with. */
async function damageThenOpen(damage: (raw: ClassicLevel<string, Uint8Array>) => Promise<void>): Promise<Error & { code: unknown }> {
  const raw = rawHandle(dir);
  await raw.open();
  await damage(raw);
  await raw.close();
  const error: unknown = await openLevelLogStorage(dir, CONF).then(
    () => null,
    (e: unknown) => e,
  );
  expect(isRaftKvError(error, ErrorCode.STORAGE_CORRUPT), `expected STORAGE_CORRUPT, got ${String(error)}`).toBe(true);
  // The failed open closed the database: the directory's lock is free again.
  const again = rawHandle(dir);
  await again.open();
  await again.close();
  return error as Error & { code: unknown };
}

async function flipByte(raw: ClassicLevel<string, Uint8Array>, key: string, at: (length: number) => number): Promise<void> {
  const value = await raw.get(key);
  if (value === undefined) throw new Error(`test setup: no record under ${key}`);
  const copy = Uint8Array.from(value);
  const k = at(copy.byteLength);
  copy[k] = copy[k]! ^ 0x40;
  await raw.put(key, copy);
}

describe('open() reports damaged data as STORAGE_CORRUPT, naming the directory and the record', () => {
  it('the undamaged store opens (the fixture is sound)', async () => {
    const s = await openLevelLogStorage(dir, CONF);
    expect([s.firstIndex(), s.lastIndex(), s.term(2), s.initialState().hardState.commit]).toEqual([3, 10, 1, 6]);
    await s.close();
  });

  it('a flipped byte in an entry', async () => {
    const error = await damageThenOpen((raw) => flipByte(raw, entryKey(7), (n) => n - 2));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('log entry 7 failed its checksum');
  });

  it('a flipped byte in an entry checksum', async () => {
    const error = await damageThenOpen((raw) => flipByte(raw, entryKey(4), () => 1));
    expect(error.message).toContain('log entry 4 failed its checksum');
  });

  it('a torn tail: the last entry damaged is reported, not truncated', async () => {
    const error = await damageThenOpen(async (raw) => raw.put(entryKey(10), Uint8Array.from(((await raw.get(entryKey(10))) ?? []).slice(0, 6))));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('log entry 10');
  });

  it('an entry missing in the middle (a gap)', async () => {
    const error = await damageThenOpen((raw) => raw.del(entryKey(6)));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('log entry 6 is missing');
  });

  it('several entries missing', async () => {
    const error = await damageThenOpen((raw) => raw.batch([{ type: 'del', key: entryKey(5) }, { type: 'del', key: entryKey(6) }]));
    expect(error.message).toContain('log entries 5..6 are missing');
  });

  it('the first entry after the snapshot missing', async () => {
    const error = await damageThenOpen((raw) => raw.del(entryKey(3)));
    expect(error.message).toContain('log entry 3 is missing');
  });

  it('garbage under an entry key', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(5), new TextEncoder().encode('not a record at all')));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('log entry 5 failed its checksum');
  });

  it('a record shorter than its checksum', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(5), new Uint8Array([1, 2])));
    expect(error.message).toContain('log entry 5 is truncated');
  });

  it('a record with a valid checksum whose payload does not decode', async () => {
    const payload = new Uint8Array([0x92, 0x01]); // an array of two, cut after one element
    const record = Buffer.alloc(4 + payload.byteLength);
    record.writeUInt32BE(crc32(payload) >>> 0, 0);
    record.set(payload, 4);
    const error = await damageThenOpen((raw) => raw.put(entryKey(5), record));
    expect(error.message).toContain('log entry 5 passed its checksum but does not decode');
  });

  it('a record with a valid checksum but the wrong shape', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(5), seal({ index: 5, term: 2 })));
    expect(error.message).toContain('log entry 5 is malformed');
  });

  it('an entry of an unknown type', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(5), seal([5, 2, 9, new Uint8Array(1)])));
    expect(error.message).toContain('log entry 5 is malformed: unknown entry type code 9');
  });

  it('a misnumbered entry: another entry\'s record under this key', async () => {
    const error = await damageThenOpen(async (raw) => raw.put(entryKey(5), (await raw.get(entryKey(6)))!));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('log entry 5 is malformed: it holds entry 6');
  });

  it('an entry at or below the snapshot', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(2), seal([2, 1, 0, new Uint8Array(1)])));
    expect(error.message).toContain('log entry 2 is at or below the snapshot index 2');
  });

  it('a term that goes back along the log', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(8), seal([8, 1, 0, new Uint8Array(1)])));
    expect(error.message).toContain('log entry 8 has term 1, lower than the term 2 before it');
  });

  it('a record over the size limit is refused before decoding', async () => {
    const error = await damageThenOpen((raw) => raw.put(entryKey(5), new Uint8Array(RECORD_BYTES_MAX + 1)));
    expect(error.message).toContain(`log entry 5 is ${RECORD_BYTES_MAX + 1} bytes, over the record limit`);
  });

  it('a damaged hard state', async () => {
    const error = await damageThenOpen((raw) => flipByte(raw, KEY.hardState, (n) => n - 1));
    expect(error.message).toContain(dir);
    expect(error.message).toContain(`the hard state (${KEY.hardState}) failed its checksum`);
  });

  it('a hard state whose commit is past the last entry', async () => {
    const error = await damageThenOpen((raw) => raw.put(KEY.hardState, seal([2, 'n1', 11])));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('the hard state commits index 11, past the last log entry 10');
  });

  it('a hard state with a malformed vote', async () => {
    const error = await damageThenOpen((raw) => raw.put(KEY.hardState, seal([2, 17, 6])));
    expect(error.message).toContain(`the hard state (${KEY.hardState}) is malformed: vote is not a node id`);
  });

  it('a missing hard state', async () => {
    const error = await damageThenOpen((raw) => raw.del(KEY.hardState));
    expect(error.message).toContain(`the hard state (${KEY.hardState}) is missing`);
  });

  it('damaged snapshot metadata', async () => {
    const error = await damageThenOpen((raw) => flipByte(raw, KEY.snapshot, (n) => n - 1));
    expect(error.message).toContain(`the snapshot metadata (${KEY.snapshot}) failed its checksum`);
  });

  it('snapshot data that belongs to another snapshot', async () => {
    const error = await damageThenOpen((raw) => raw.put(KEY.snapshotData, seal([1, new Uint8Array([1, 2])])));
    expect(error.message).toContain('the snapshot data belongs to snapshot 1, but the snapshot metadata is at index 2');
  });

  it('an unknown format version', async () => {
    const error = await damageThenOpen((raw) => raw.put(KEY.version, seal(2)));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('format version 2; this build reads format version 1 only');
  });

  it('a damaged format version', async () => {
    const error = await damageThenOpen((raw) => flipByte(raw, KEY.version, (n) => n - 1));
    expect(error.message).toContain(`the format version (${KEY.version}) failed its checksum`);
  });

  it('records but no format version', async () => {
    const error = await damageThenOpen((raw) => raw.del(KEY.version));
    expect(error.message).toContain('holds records but no format version');
  });

  it('a key that is not part of the format (another database in this directory)', async () => {
    const error = await damageThenOpen((raw) => raw.put('kv/some-user-key', new Uint8Array([1])));
    expect(error.message).toContain(dir);
    expect(error.message).toContain('unexpected key "kv/some-user-key"');
  });

  it('a malformed entry key', async () => {
    const error = await damageThenOpen((raw) => raw.put('e/12', seal([18, 2, 0, new Uint8Array(1)])));
    expect(error.message).toContain('unexpected key "e/12"');
  });
});

/** memory-level whose writes fail on demand (a full or failing disk), through abstract-level's prewrite hook. */
function failingMemoryLevel(): { db: MemoryLevel<string, Uint8Array>; setFailing: (failing: boolean) => void } {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  let failing = false;
  db.hooks.prewrite.add(() => {
    if (failing) throw new Error('injected write failure');
  });
  return { db, setFailing: (f) => (failing = f) };
}

describe('a write that fails leaves the store as it was', () => {
  it('persist, append, setHardState, applySnapshot and compact reject and change nothing', async () => {
    const { db, setFailing } = failingMemoryLevel();
    const s = await LevelLogStorage.open(db, { dataDir: 'failing-memory-level', bootstrap: CONF });
    await s.persist({ snapshot: null, entries: [1, 2, 3, 4].map((i) => ent(i, 1)), hardState: { term: 1, vote: 'n1', commit: 2 } });
    const before = readAll(s);
    setFailing(true);
    const attempts: (() => Promise<void>)[] = [
      () => s.persist({ snapshot: null, entries: [ent(4, 2), ent(5, 2)], hardState: { term: 2, vote: null, commit: 3 } }),
      () => s.persist({ snapshot: { meta: { index: 8, term: 3, confState: CONF }, data: new Uint8Array(0) }, entries: [ent(9, 3)], hardState: { term: 3, vote: null, commit: 8 } }),
      () => s.append([ent(3, 2)]),
      () => s.setHardState({ term: 5, vote: 'n2', commit: 4 }),
      () => s.applySnapshot({ meta: { index: 3, term: 1, confState: CONF }, data: new Uint8Array([1]) }),
      () => s.compact({ index: 2, term: 1, confState: CONF }, new Uint8Array(0)),
    ];
    for (const attempt of attempts) {
      await expect(attempt()).rejects.toThrow(/prewrite hook failed/);
      expect(readAll(s)).toEqual(before);
    }
    // The disk holds what the mirror says: a fresh store on the same database reads the same.
    await s.close();
    setFailing(false);
    const reopened = await LevelLogStorage.open(db, { dataDir: 'failing-memory-level', bootstrap: CONF });
    expect(readAll(reopened)).toEqual(before);
    // And writes work again once the disk does.
    await reopened.persist({ snapshot: null, entries: [ent(4, 2), ent(5, 2)], hardState: { term: 2, vote: null, commit: 3 } });
    expect([reopened.lastIndex(), reopened.term(4), reopened.initialState().hardState.term]).toEqual([5, 2, 2]);
    await reopened.close();
  });

  it('an open whose bootstrap write fails rejects and closes the database', async () => {
    const { db, setFailing } = failingMemoryLevel();
    setFailing(true);
    await expect(LevelLogStorage.open(db, { dataDir: 'failing-memory-level', bootstrap: CONF })).rejects.toThrow(/prewrite hook failed/);
    expect(db.status).toBe('closed');
  });
});

describe('misuse is a bug (assertion), not a condition to handle', () => {
  it('two writes at once', async () => {
    const s = await LevelLogStorage.open(new MemoryLevel(), { dataDir: 'memory-level', bootstrap: CONF });
    const first = s.append([ent(1, 1)]);
    await expect(s.append([ent(2, 1)])).rejects.toThrow(RaftAssertionError);
    await first;
    expect(s.lastIndex()).toBe(1);
    await s.close();
  });

  it.each([
    ['a gap', async (s: LevelLogStorage) => s.append([ent(5, 1)])],
    ['entries not contiguous', async (s: LevelLogStorage) => s.append([ent(3, 1), ent(5, 1)])],
    ['terms going back within a batch', async (s: LevelLogStorage) => s.append([ent(3, 2), ent(4, 1)])],
    ['a term lower than the entry before', async (s: LevelLogStorage) => s.append([ent(3, 1)])],
    ['the hard state term going back', async (s: LevelLogStorage) => s.setHardState({ term: 1, vote: null, commit: 0 })],
    ['a vote changed within a term', async (s: LevelLogStorage) => s.setHardState({ term: 2, vote: 'n3', commit: 2 })],
    ['a commit past the last entry', async (s: LevelLogStorage) => s.setHardState({ term: 2, vote: 'n2', commit: 3 })],
    ['overwriting a committed entry', async (s: LevelLogStorage) => s.append([ent(2, 3)])],
    ['dropping a committed entry', async (s: LevelLogStorage) => s.append([ent(1, 2)])],
    ['a snapshot that drops committed entries', async (s: LevelLogStorage) => s.applySnapshot({ meta: { index: 1, term: 3, confState: CONF }, data: new Uint8Array(0) })],
    ['compacting past the last entry', async (s: LevelLogStorage) => s.compact({ index: 3, term: 2, confState: CONF }, new Uint8Array(0))],
    ['compacting with the wrong term', async (s: LevelLogStorage) => s.compact({ index: 2, term: 1, confState: CONF }, new Uint8Array(0))],
    ['snapshot data beyond the limit', async (s: LevelLogStorage) => s.compact({ index: 2, term: 2, confState: CONF }, new Uint8Array(64 * 1024 + 1))],
  ])('%s', async (_name, misuse) => {
    const s = await LevelLogStorage.open(new MemoryLevel(), { dataDir: 'memory-level', bootstrap: CONF });
    await s.persist({ snapshot: null, entries: [ent(1, 2), ent(2, 2)], hardState: { term: 2, vote: 'n2', commit: 2 } });
    const before = readAll(s);
    await expect(misuse(s)).rejects.toThrow(RaftAssertionError);
    expect(readAll(s)).toEqual(before);
    await s.close();
  });
});
