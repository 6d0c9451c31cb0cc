import { describe, expect, it } from 'vitest';
import { encode } from '@raftkv/codec';
import { EntryType, ErrorCode, RaftAssertionError } from '@raftkv/raft';
import { InvalidReason, KvStateMachine, openKvStateMachine } from '../src/index.js';
import type { ApplyResult, ClientSession, Command, CommandResult } from '../src/index.js';
import { bytes, EntryLog, image, memoryDb, openMemory, rejectionCode, text, thrownCode, useTempDirs } from './helpers.js';

const put = (key: string, value: string, session?: ClientSession): Command => ({ type: 'put', key, value: bytes(value), ...(session ? { session } : {}) });
const del = (key: string, session?: ClientSession): Command => ({ type: 'delete', key, ...(session ? { session } : {}) });
const results = (applied: readonly ApplyResult[]): Array<CommandResult | null> => applied.map((a) => a.result);

describe('put, get, delete', () => {
  it('starts empty at index 0 and answers null for a missing key', async () => {
    const kv = await openMemory();
    expect([kv.appliedIndex, kv.appliedTerm]).toEqual([0, 0]);
    expect(await kv.get('missing')).toBeNull();
    expect(await kv.scan('', 10)).toEqual([]);
    await kv.close();
  });

  it('put returns the entry index as modIndex; get returns value and modIndex', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const applied = await kv.apply([log.command(put('a', '1')), log.command(put('b', '2')), log.command(put('a', '3'))]);
    expect(applied).toEqual([
      { index: 1, result: { type: 'put', ok: true, modIndex: 1 } },
      { index: 2, result: { type: 'put', ok: true, modIndex: 2 } },
      { index: 3, result: { type: 'put', ok: true, modIndex: 3 } },
    ]);
    const a = await kv.get('a');
    expect(a && [text(a.value), a.modIndex]).toEqual(['3', 3]);
    expect(kv.appliedIndex).toBe(3);
    await kv.close();
  });

  it('delete reports whether the key existed, and removes it', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const applied = await kv.apply([log.command(put('k', 'v')), log.command(del('k')), log.command(del('k'))]);
    expect(results(applied)).toEqual([
      { type: 'put', ok: true, modIndex: 1 },
      { type: 'delete', ok: true, modIndex: 2, existed: true },
      { type: 'delete', ok: true, modIndex: 3, existed: false },
    ]);
    expect(await kv.get('k')).toBeNull();
    await kv.close();
  });

  it('leader no-ops and configuration entries only advance the applied index', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const noop = log.noop();
    const conf = { ...log.raw(bytes('opaque')), type: EntryType.ConfChange };
    log.term = 2;
    expect(await kv.apply([noop, conf, log.noop()])).toEqual([
      { index: 1, result: null },
      { index: 2, result: null },
      { index: 3, result: null },
    ]);
    expect([kv.appliedIndex, kv.appliedTerm]).toEqual([3, 2]);
    await kv.close();
  });

  it('get refuses an invalid key with a typed error', async () => {
    const kv = await openMemory({ keyBytesMax: 8 });
    expect(await rejectionCode(kv.get(''))).toBe(ErrorCode.KEY_INVALID);
    expect(await rejectionCode(kv.get('\uD800'))).toBe(ErrorCode.KEY_INVALID);
    expect(await rejectionCode(kv.get('123456789'))).toBe(ErrorCode.KEY_TOO_LARGE);
    expect(thrownCode(() => kv.validate(put('123456789', 'v')))).toBe(ErrorCode.KEY_TOO_LARGE);
    await kv.close();
  });
});

describe('scan', () => {
  const keys = ['a', 'a/b', 'a/b/c', 'a/c', 'ab', 'b', 'b/a', '\uFFFD', '😀'];

  async function filled(options = {}): Promise<KvStateMachine> {
    const kv = await openMemory(options);
    const log = new EntryLog();
    await kv.apply([...keys].reverse().map((key) => log.command(put(key, `v-${key}`))));
    return kv;
  }

  it('returns every key under a prefix, in UTF-8 byte order, with values', async () => {
    const kv = await filled();
    const all = await kv.scan('', 100);
    // U+FFFD (EF BF BD) sorts before U+1F600 (F0 ...) in UTF-8, though not in UTF-16.
    expect(all.map((r) => r.key)).toEqual(keys);
    expect(all.every((r) => text(r.value) === `v-${r.key}`)).toBe(true);
    expect((await kv.scan('a/', 100)).map((r) => r.key)).toEqual(['a/b', 'a/b/c', 'a/c']);
    expect((await kv.scan('a/b', 100)).map((r) => r.key)).toEqual(['a/b', 'a/b/c']);
    expect((await kv.scan('a', 100)).map((r) => r.key)).toEqual(['a', 'a/b', 'a/b/c', 'a/c', 'ab']);
    expect((await kv.scan('c', 100)).map((r) => r.key)).toEqual([]);
    await kv.close();
  });

  it('honours the limit and clamps it to scanCountMax', async () => {
    const kv = await filled({ scanCountMax: 4 });
    expect((await kv.scan('a', 2)).map((r) => r.key)).toEqual(['a', 'a/b']);
    expect(await kv.scan('a', 0)).toEqual([]);
    expect(await kv.scan('', 1000)).toHaveLength(4);
    await expect(kv.scan('', -1)).rejects.toBeInstanceOf(RaftAssertionError);
    await kv.close();
  });
});

describe('compare-and-set', () => {
  it('on absence: succeeds when absent, fails with the current modIndex when present', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const cas = (value: string): Command => ({ type: 'cas', key: 'lock', value: bytes(value), expect: { absent: true } });
    expect(results(await kv.apply([log.command(cas('owner-1')), log.command(cas('owner-2'))]))).toEqual([
      { type: 'cas', ok: true, modIndex: 1 },
      { type: 'cas', ok: false, current: { modIndex: 1 } },
    ]);
    expect(text((await kv.get('lock'))?.value ?? bytes(''))).toBe('owner-1');
    await kv.close();
  });

  it('on modIndex: succeeds on a match, fails with the current state otherwise', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const cas = (key: string, modIndex: number, value: string): Command => ({ type: 'cas', key, value: bytes(value), expect: { modIndex } });
    const applied = await kv.apply([
      log.command(put('k', 'v1')), // 1
      log.command(cas('k', 1, 'v2')), // 2: matches
      log.command(cas('k', 1, 'v3')), // 3: stale expectation
      log.command(cas('missing', 1, 'x')), // 4: key absent
      log.command(cas('k', 0, 'x')), // 5: modIndex 0 never matches
    ]);
    expect(results(applied)).toEqual([
      { type: 'put', ok: true, modIndex: 1 },
      { type: 'cas', ok: true, modIndex: 2 },
      { type: 'cas', ok: false, current: { modIndex: 2 } },
      { type: 'cas', ok: false, current: null },
      { type: 'cas', ok: false, current: { modIndex: 2 } },
    ]);
    const k = await kv.get('k');
    expect(k && [text(k.value), k.modIndex]).toEqual(['v2', 2]);
    expect(await kv.get('missing')).toBeNull();
    await kv.close();
  });

  it('sees writes made earlier in the same batch', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const applied = await kv.apply([
      log.command(put('k', 'a')),
      log.command({ type: 'cas', key: 'k', value: bytes('b'), expect: { modIndex: 1 } }),
      log.command(del('k')),
      log.command({ type: 'cas', key: 'k', value: bytes('c'), expect: { absent: true } }),
    ]);
    expect(results(applied).map((r) => r?.ok)).toEqual([true, true, true, true]);
    expect((await kv.get('k'))?.modIndex).toBe(4);
    await kv.close();
  });
});

describe('exactly-once client sessions', () => {
  it('a replayed seq returns the first result and has no second effect', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const s1 = { clientId: 'client-a', seq: 1 };
    const first = await kv.apply([log.command(put('counter', 'one', s1))]);
    await kv.apply([log.command(put('counter', 'other'))]); // index 2, by someone else
    const retry = await kv.apply([log.command(put('counter', 'one', s1))]); // index 3: a retry
    expect(retry[0]?.result).toEqual(first[0]?.result);
    expect(retry[0]?.result).toEqual({ type: 'put', ok: true, modIndex: 1 });
    expect((await kv.get('counter'))?.modIndex).toBe(2); // the retry did not write again
    const next = await kv.apply([log.command(put('counter', 'two', { clientId: 'client-a', seq: 2 }))]);
    expect(next[0]?.result).toEqual({ type: 'put', ok: true, modIndex: 4 });
    await kv.close();
  });

  it('a retried cas returns its first answer even though the key changed since', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const cas: Command = { type: 'cas', key: 'k', value: bytes('x'), expect: { absent: true }, session: { clientId: 'c', seq: 5 } };
    const first = await kv.apply([log.command(cas)]);
    const again = await kv.apply([log.command(cas)]);
    expect(first[0]?.result).toEqual({ type: 'cas', ok: true, modIndex: 1 });
    expect(again[0]?.result).toEqual({ type: 'cas', ok: true, modIndex: 1 });
    await kv.close();
  });

  it('a seq older than the last one is refused deterministically, without effect', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    await kv.apply([log.command(put('k', 'v2', { clientId: 'c', seq: 2 }))]);
    const stale = await kv.apply([log.command(put('k', 'v1', { clientId: 'c', seq: 1 }))]);
    expect(stale[0]?.result).toEqual({ type: 'invalid', ok: false, error: ErrorCode.COMMAND_INVALID, reason: InvalidReason.SessionSeqStale });
    expect(text((await kv.get('k'))?.value ?? bytes(''))).toBe('v2');
    await kv.close();
  });

  it('evicts the least recently used session, counted by log index', async () => {
    const kv = await openMemory({ sessionCountMax: 2 });
    const log = new EntryLog();
    const s = (clientId: string) => ({ clientId, seq: 1 });
    await kv.apply([
      log.command(put('a', 'a', s('a'))), // 1: a
      log.command(put('b', 'b', s('b'))), // 2: b
      log.command(put('a', 'a', s('a'))), // 3: a's retry makes a the most recent
      log.command(put('c', 'c', s('c'))), // 4: c evicts b, the least recent
    ]);
    const after = await kv.apply([
      log.command(put('a', 'a', s('a'))), // 5: still remembered: duplicate
      log.command(put('b', 'b', s('b'))), // 6: forgotten: executes again
    ]);
    expect(results(after)).toEqual([
      { type: 'put', ok: true, modIndex: 1 },
      { type: 'put', ok: true, modIndex: 6 },
    ]);
    await kv.close();
  });

  it('sessions survive a restart', async () => {
    const db = memoryDb();
    const log = new EntryLog();
    const command = put('k', 'v', { clientId: 'c', seq: 9 });
    const kv = await openMemory({}, db);
    await kv.apply([log.command(command)]);
    await kv.close();
    const reopened = await openMemory({}, db);
    const retry = await reopened.apply([log.command(command)]);
    expect(retry[0]?.result).toEqual({ type: 'put', ok: true, modIndex: 1 });
    await reopened.close();
  });
});

describe('bad command bytes at apply time', () => {
  const garbage = [new Uint8Array([0xc1]), bytes('not msgpack at all'), encode({ type: 'put', key: '' }), encode({ type: 'drop-table' })];

  it('give a deterministic COMMAND_INVALID result on every replica, never an exception', async () => {
    const replicas = [await openMemory(), await openMemory()];
    const outcomes: unknown[] = [];
    for (const kv of replicas) {
      const log = new EntryLog();
      const applied = await kv.apply([log.command(put('k', 'v')), ...garbage.map((g) => log.raw(g)), log.command(put('k', 'w'))]);
      outcomes.push({ applied, state: await image(kv) });
    }
    expect(outcomes[0]).toEqual(outcomes[1]);
    const [first] = outcomes as Array<{ applied: ApplyResult[] }>;
    expect(first?.applied.slice(1, 1 + garbage.length).map((a) => a.result)).toEqual(
      garbage.map(() => ({ type: 'invalid', ok: false, error: ErrorCode.COMMAND_INVALID, reason: InvalidReason.Undecodable })),
    );
    expect(replicas[0]?.appliedIndex).toBe(garbage.length + 2);
    for (const kv of replicas) await kv.close();
  });
});

describe('the applied index', () => {
  const tempDir = useTempDirs();

  it('is persisted with the data: a reopen resumes exactly, and old entries are skipped', async () => {
    const dir = await tempDir();
    const log = new EntryLog();
    log.term = 3;
    const entries = [log.command(put('a', '1')), log.command(put('b', '2')), log.command(del('a')), log.command(put('c', '3'))];
    const kv = await openKvStateMachine(dir);
    await kv.apply(entries.slice(0, 3));
    const before = await image(kv);
    await kv.close();

    const reopened = await openKvStateMachine(dir);
    expect(await image(reopened)).toEqual(before);
    expect([reopened.appliedIndex, reopened.appliedTerm]).toEqual([3, 3]);
    // The node replays its log from an earlier point: the first three are skipped, the fourth applies.
    const replay = await reopened.apply(entries);
    expect(results(replay)).toEqual([null, null, null, { type: 'put', ok: true, modIndex: 4 }]);
    expect((await image(reopened)).rows).toEqual([...before.rows, ['c', Buffer.from('3').toString('hex'), 4]]);
    expect(await reopened.apply(entries)).toEqual(entries.map((e) => ({ index: e.index, result: null })));
    await reopened.close();
  });

  it('refuses a gap or out-of-order entries as a bug (assertion)', async () => {
    const kv = await openMemory();
    const log = new EntryLog();
    const one = log.noop();
    const two = log.noop();
    const three = log.noop();
    await expect(kv.apply([two])).rejects.toBeInstanceOf(RaftAssertionError);
    await expect(kv.apply([one, three])).rejects.toBeInstanceOf(RaftAssertionError);
    expect(kv.appliedIndex).toBe(0);
    await kv.apply([one, two, three]);
    expect(kv.appliedIndex).toBe(3);
    await kv.close();
  });

  it('a closed machine answers STORAGE_CLOSED', async () => {
    const kv = await openMemory();
    await kv.close();
    await kv.close();
    expect(await rejectionCode(kv.get('k'))).toBe(ErrorCode.STORAGE_CLOSED);
    expect(await rejectionCode(kv.apply([new EntryLog().noop()]))).toBe(ErrorCode.STORAGE_CLOSED);
    expect(await rejectionCode(kv.exportSnapshot())).toBe(ErrorCode.STORAGE_CLOSED);
  });

  it('refuses a database that is not a raftkv state machine', async () => {
    const db = memoryDb();
    await db.open();
    await db.put(bytes('foreign'), bytes('data'));
    expect(await rejectionCode(KvStateMachine.open(db))).toBe(ErrorCode.STORAGE_CORRUPT);
  });

  it('refuses invalid limits with INVALID_CONFIG', async () => {
    expect(await rejectionCode(openMemory({ sessionCountMax: 0 }))).toBe(ErrorCode.INVALID_CONFIG);
  });
});
