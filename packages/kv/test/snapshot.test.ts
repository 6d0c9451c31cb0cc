import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ErrorCode, RaftAssertionError } from '@raftkv/raft';
import { openKvStateMachine } from '../src/index.js';
import type { Command, KvStateMachine } from '../src/index.js';
import { bytes, collect, EntryLog, fromChunks, image, openMemory, rejectionCode, useTempDirs } from './helpers.js';

/** A machine with data, deletions, a failed cas and sessions, at index 30+ and term 2. */
async function populated(kv: KvStateMachine, tag: string): Promise<EntryLog> {
  const log = new EntryLog();
  const entries = [];
  for (let i = 0; i < 30; i += 1) {
    entries.push(log.command({ type: 'put', key: `${tag}/${i % 7}/${i}`, value: bytes(`${tag}-${i}`), session: { clientId: `c${i % 4}`, seq: i } }));
  }
  log.term = 2;
  entries.push(log.command({ type: 'delete', key: `${tag}/0/0` }));
  entries.push(log.command({ type: 'cas', key: `${tag}/1/1`, value: bytes('x'), expect: { absent: true } }));
  entries.push(log.noop());
  await kv.apply(entries);
  return log;
}

describe('snapshot export, import and install', () => {
  it('moves the whole state, applied position and sessions included, to another machine', async () => {
    const source = await openMemory({ snapshotChunkBytes: 256 });
    const log = await populated(source, 'src');
    const target = await openMemory();
    await populated(target, 'old'); // state that must disappear entirely

    const exported = await source.exportSnapshot();
    expect(exported.meta).toEqual({ index: 33, term: 2 });
    const chunks = await collect(exported.chunks);
    expect(chunks.length).toBeGreaterThan(3); // header, several record chunks, trailer
    const staged = await target.importSnapshot(exported.meta, fromChunks(chunks));
    expect(staged.recordCount).toBe(29 + 4); // 29 keys left, 4 sessions
    await target.install(staged);

    expect(await image(target)).toEqual(await image(source));
    // The session table came along: a retry of the last command of client c1 is a duplicate there too.
    const retry: Command = { type: 'put', key: 'src/1/29', value: bytes('again'), session: { clientId: 'c1', seq: 29 } };
    const onSource = await source.apply([log.command(retry)]);
    const onTarget = await target.apply([{ ...log.command(retry), index: 34 }]);
    expect(onTarget[0]?.result).toEqual(onSource[0]?.result);
    expect(onTarget[0]?.result).toEqual({ type: 'put', ok: true, modIndex: 30 });
    await source.close();
    await target.close();
  });

  it('streams a point-in-time image: applies after export do not show', async () => {
    const source = await openMemory();
    const log = await populated(source, 'a');
    const before = await image(source);
    const exported = await source.exportSnapshot();
    await source.apply([log.command({ type: 'put', key: 'late', value: bytes('x') }), log.command({ type: 'delete', key: 'a/2/2' })]);
    const target = await openMemory();
    await target.install(await target.importSnapshot(exported.meta, exported.chunks));
    expect(await image(target)).toEqual(before);
    await source.close();
    await target.close();
  });

  it('an export asked for while an apply is in progress waits for it: the image and its position agree', async () => {
    // A peer may ask for a snapshot at any moment; this used to fail an assertion ("exportSnapshot
    // while apply is in progress"), which the sender reported as a failed transfer.
    const source = await openMemory();
    const log = await populated(source, 'e');
    const applying = source.apply([log.command({ type: 'put', key: 'during', value: bytes('x') })]);
    const exporting = source.exportSnapshot();
    await applying;
    const exported = await exporting;
    expect(exported.meta).toEqual({ index: 34, term: 2 });
    const target = await openMemory();
    await target.install(await target.importSnapshot(exported.meta, exported.chunks));
    expect(await image(target)).toEqual(await image(source));
    await source.close();
    await target.close();
  });

  it('parses the stream whatever its chunking (7-byte pieces)', async () => {
    const source = await openMemory({ snapshotChunkBytes: 100 });
    await populated(source, 'p');
    const exported = await source.exportSnapshot();
    const whole = Buffer.concat(await collect(exported.chunks));
    const pieces = [];
    for (let offset = 0; offset < whole.byteLength; offset += 7) pieces.push(whole.subarray(offset, offset + 7));
    const target = await openMemory();
    await target.install(await target.importSnapshot(exported.meta, fromChunks(pieces)));
    expect(await image(target)).toEqual(await image(source));
    await source.close();
    await target.close();
  });

  it('installing a snapshot behind the applied index is a bug (assertion); the staged copy can be discarded', async () => {
    const source = await openMemory();
    await populated(source, 's'); // index 33
    const target = await openMemory();
    const log = await populated(target, 't');
    await target.apply(Array.from({ length: 10 }, () => log.noop())); // index 43
    const exported = await source.exportSnapshot();
    const staged = await target.importSnapshot(exported.meta, exported.chunks);
    await expect(target.install(staged)).rejects.toBeInstanceOf(RaftAssertionError);
    await target.discard(staged);
    expect(target.appliedIndex).toBe(43);
    await source.close();
    await target.close();
  });

  it('an empty machine exports and imports an empty image', async () => {
    const source = await openMemory();
    await source.apply([new EntryLog().noop()]);
    const exported = await source.exportSnapshot();
    const target = await openMemory();
    const staged = await target.importSnapshot(exported.meta, exported.chunks);
    expect(staged.recordCount).toBe(0);
    await target.install(staged);
    expect(await image(target)).toEqual({ index: 1, term: 1, rows: [] });
    await source.close();
    await target.close();
  });
});

describe('a bad snapshot stream is refused and the old state stays whole', () => {
  async function setup() {
    const source = await openMemory({ snapshotChunkBytes: 200 });
    await populated(source, 'new');
    const exported = await source.exportSnapshot();
    const chunks = await collect(exported.chunks);
    const target = await openMemory();
    await populated(target, 'old');
    const before = await image(target);
    return { source, target, meta: exported.meta, chunks, whole: Buffer.concat(chunks), before };
  }

  it('truncated at any of several points: SNAPSHOT_TRANSFER_FAILED', async () => {
    const { source, target, meta, chunks, whole, before } = await setup();
    const cuts = [0, 3, 29, 100, whole.byteLength - 17, whole.byteLength - 1];
    for (const cut of cuts) {
      expect(await rejectionCode(target.importSnapshot(meta, fromChunks([whole.subarray(0, cut)])))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    }
    // A whole chunk missing from the middle.
    const missing = [...chunks.slice(0, 2), ...chunks.slice(3)];
    expect(await rejectionCode(target.importSnapshot(meta, fromChunks(missing)))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    expect(await image(target)).toEqual(before);
    // The machine still takes a good stream afterwards.
    await target.install(await target.importSnapshot(meta, fromChunks(chunks)));
    expect(await image(target)).toEqual(await image(source));
    await source.close();
    await target.close();
  });

  it('one flipped bit anywhere (header, records, trailer): SNAPSHOT_TRANSFER_FAILED', async () => {
    const { source, target, meta, whole, before } = await setup();
    const positions = [0, 2, 7, 20, 40, Math.floor(whole.byteLength / 2), whole.byteLength - 10, whole.byteLength - 1];
    for (const position of positions) {
      const corrupt = Buffer.from(whole);
      corrupt[position] = (corrupt[position] ?? 0) ^ 0x10;
      expect(await rejectionCode(target.importSnapshot(meta, fromChunks([corrupt])))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    }
    expect(await image(target)).toEqual(before);
    await source.close();
    await target.close();
  });

  it('an image ahead of the expected position is installed at its own position; one behind is refused', async () => {
    // A leader streams its state machine as it is now, past the index its Raft snapshot names.
    const source = await openMemory();
    await populated(source, 'src');
    const exported = await source.exportSnapshot();
    expect(exported.meta).toEqual({ index: 33, term: 2 });
    const chunks = await collect(exported.chunks);
    const target = await openMemory();
    const staged = await target.importSnapshot({ index: 20, term: 1 }, fromChunks(chunks));
    expect(staged.meta).toEqual({ index: 33, term: 2 });
    await target.install(staged);
    expect(target.appliedIndex).toBe(33);
    expect(await image(target)).toEqual(await image(source));
    // Behind the expected index, or at it with another term: refused.
    const other = await openMemory();
    expect(await rejectionCode(other.importSnapshot({ index: 40, term: 2 }, fromChunks(chunks)))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    expect(await rejectionCode(other.importSnapshot({ index: 33, term: 3 }, fromChunks(chunks)))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    await Promise.all([source.close(), target.close(), other.close()]);
  });

  it('extra bytes after the trailer, the wrong position, or a source that throws: SNAPSHOT_TRANSFER_FAILED', async () => {
    const { source, target, meta, chunks, before } = await setup();
    const extra = [...chunks, new Uint8Array([1])];
    expect(await rejectionCode(target.importSnapshot(meta, fromChunks(extra)))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    expect(await rejectionCode(target.importSnapshot({ index: meta.index + 1, term: meta.term }, fromChunks(chunks)))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield chunks[0] ?? new Uint8Array(0);
      throw new Error('connection reset');
    }
    expect(await rejectionCode(target.importSnapshot(meta, broken()))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    expect(await image(target)).toEqual(before);
    await source.close();
    await target.close();
  });
});

describe('snapshots on disk', () => {
  const tempDir = useTempDirs();

  it('a failed import leaves no staging directory behind', async () => {
    const source = await openMemory();
    await populated(source, 's');
    const exported = await source.exportSnapshot();
    const whole = Buffer.concat(await collect(exported.chunks));
    const dir = await tempDir();
    const target = await openKvStateMachine(dir);
    expect(await rejectionCode(target.importSnapshot(exported.meta, fromChunks([whole.subarray(0, whole.byteLength - 5)])))).toBe(
      ErrorCode.SNAPSHOT_TRANSFER_FAILED,
    );
    expect(await readdir(dir)).toEqual(['current']);
    const staged = await target.importSnapshot(exported.meta, fromChunks([whole]));
    expect((await readdir(dir)).sort()).toEqual(['current', `staging-${exported.meta.index}`]);
    await target.discard(staged);
    expect(await readdir(dir)).toEqual(['current']);
    await source.close();
    await target.close();
  });

  it('100,000 keys stream from one directory to another in bounded chunks', async () => {
    const keyCount = 100_000;
    const [sourceDir, targetDir] = [await tempDir(), await tempDir()];
    const source = await openKvStateMachine(sourceDir);
    const log = new EntryLog();
    const value = bytes('v'.repeat(100));
    for (let start = 0; start < keyCount; start += 5_000) {
      const batch = [];
      for (let i = start; i < start + 5_000; i += 1) batch.push(log.command({ type: 'put', key: `k/${String(i).padStart(6, '0')}`, value }));
      await source.apply(batch);
    }
    const target = await openKvStateMachine(targetDir, { scanCountMax: keyCount });
    const heapBefore = process.memoryUsage().heapUsed;
    const exported = await source.exportSnapshot();
    let chunkCount = 0;
    let chunkBytesMax = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of exported.chunks) {
        chunkCount += 1;
        chunkBytesMax = Math.max(chunkBytesMax, chunk.byteLength);
        yield chunk;
      }
    }
    const staged = await target.importSnapshot(exported.meta, counted());
    const heapAfter = process.memoryUsage().heapUsed;
    console.log(
      `100k-key snapshot: ${chunkCount} chunks, largest ${chunkBytesMax} bytes; heap ${(heapBefore / 2 ** 20).toFixed(1)} MiB -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(staged.recordCount).toBe(keyCount);
    expect(chunkBytesMax).toBeLessThan(1024 * 1024 + 1024);
    expect(chunkCount).toBeGreaterThan(10);
    await target.install(staged);
    expect(target.appliedIndex).toBe(keyCount);
    const rows = await target.scan('k/', keyCount);
    expect(rows).toHaveLength(keyCount);
    expect(rows[keyCount - 1]?.key).toBe('k/099999');
    expect((await target.get('k/054321'))?.modIndex).toBe(54_322);
    await source.close();
    await target.close();
  });
});
