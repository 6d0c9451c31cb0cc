/**
 * A crash at any step of a snapshot install leaves, after reopening, either the old state or the
 * new one, whole. The crash is a fault injected into the swap's file-system steps: the step
 * throws, the process abandons the machine (closing its handles, as dying would), and a fresh
 * open with the real file system finds the directory exactly as a crash there would leave it.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@raftkv/raft';
import { NODE_DIR_OPS, openKvStateMachine, recoverDataDir } from '../src/index.js';
import type { DirOps, KvStateMachine } from '../src/index.js';
import { bytes, collect, EntryLog, fromChunks, image, openMemory, rejectionCode, useTempDirs } from './helpers.js';

class FaultyDirOps implements DirOps {
  readonly steps: string[] = [];
  failAt: number | null = null;

  arm(failAt: number | null): void {
    this.steps.length = 0;
    this.failAt = failAt;
  }

  async rename(from: string, to: string): Promise<void> {
    this.#step(`rename ${basename(from)} -> ${basename(to)}`);
    await NODE_DIR_OPS.rename(from, to);
  }

  async removeDir(path: string): Promise<void> {
    this.#step(`remove ${basename(path)}`);
    await NODE_DIR_OPS.removeDir(path);
  }

  async syncDir(path: string): Promise<void> {
    this.#step('sync dir');
    await NODE_DIR_OPS.syncDir(path);
  }

  #step(name: string): void {
    this.steps.push(name);
    if (this.failAt === this.steps.length) throw new Error(`injected crash at step ${this.steps.length}: ${name}`);
  }
}

async function fill(kv: KvStateMachine, tag: string, count: number): Promise<void> {
  const log = new EntryLog();
  const entries = [];
  for (let i = 0; i < count; i += 1) {
    entries.push(log.command({ type: 'put', key: `${tag}/${i}`, value: bytes(`${tag}${i}`), session: { clientId: tag, seq: i } }));
  }
  await kv.apply(entries);
}

describe('install is crash-safe on a data directory', () => {
  const tempDir = useTempDirs();

  async function newSnapshot() {
    const source = await openMemory({ snapshotChunkBytes: 512 });
    await fill(source, 'new', 120);
    const exported = await source.exportSnapshot();
    const chunks = await collect(exported.chunks);
    const newImage = await image(source);
    await source.close();
    return { meta: exported.meta, chunks, newImage };
  }

  async function oldMachine(ops: DirOps) {
    const dir = await tempDir();
    const kv = await openKvStateMachine(dir, { dirOps: ops });
    await fill(kv, 'old', 40);
    return { dir, kv, oldImage: await image(kv) };
  }

  it('without a fault, swaps in the new state and leaves only current/', async () => {
    const { meta, chunks, newImage } = await newSnapshot();
    const ops = new FaultyDirOps();
    const { dir, kv } = await oldMachine(ops);
    const staged = await kv.importSnapshot(meta, fromChunks(chunks));
    ops.arm(null);
    await kv.install(staged);
    expect(ops.steps).toEqual([
      'rename staging-120 -> next',
      'sync dir',
      'rename current -> old',
      'sync dir',
      'rename next -> current',
      'sync dir',
      'remove old',
    ]);
    expect(await image(kv)).toEqual(newImage);
    expect(await readdir(dir)).toEqual(['current']);
    await kv.close();
    const reopened = await openKvStateMachine(dir);
    expect(reopened.recovery).toBe('clean');
    expect(await image(reopened)).toEqual(newImage);
    await reopened.close();
  });

  it.each([1, 2, 3, 4, 5, 6, 7] as const)('a crash at swap step %i reopens to the old or the new state, whole', async (failAt) => {
    const { meta, chunks, newImage } = await newSnapshot();
    const ops = new FaultyDirOps();
    const { dir, kv, oldImage } = await oldMachine(ops);
    const staged = await kv.importSnapshot(meta, fromChunks(chunks));
    ops.arm(failAt);
    expect(await rejectionCode(kv.install(staged))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    const beforeCommitPoint = failAt === 1;
    if (beforeCommitPoint) {
      // The old state is still live and usable in this process.
      expect(await image(kv)).toEqual(oldImage);
    } else {
      expect(await rejectionCode(kv.get('new/1'))).toBe(ErrorCode.STORAGE_CLOSED);
    }
    await kv.close(); // the process "dies": its handles are released

    const reopened = await openKvStateMachine(dir);
    expect(await image(reopened)).toEqual(beforeCommitPoint ? oldImage : newImage);
    expect(await readdir(dir)).toEqual(['current']);
    // Recovery took the path the table in home.ts predicts for this crash point.
    const expectedRecovery = { 1: 'clean', 2: 'rolled-forward', 3: 'rolled-forward', 4: 'rolled-forward', 5: 'rolled-forward', 6: 'finished-swap', 7: 'finished-swap' }[failAt];
    expect(reopened.recovery).toBe(expectedRecovery);
    // The sessions came with the state: a retry of client "new"'s last command is a duplicate.
    if (!beforeCommitPoint) {
      const retry = new EntryLog(reopened.appliedIndex).command({ type: 'put', key: 'x', value: bytes('x'), session: { clientId: 'new', seq: 119 } });
      expect((await reopened.apply([retry]))[0]?.result).toEqual({ type: 'put', ok: true, modIndex: 120 });
    }
    await reopened.close();
  });

  it('a crash while importing (before install) leaves the old state and no staging directory', async () => {
    const { meta, chunks } = await newSnapshot();
    const { dir, kv, oldImage } = await oldMachine(NODE_DIR_OPS);
    async function* dies(): AsyncGenerator<Uint8Array> {
      yield* chunks.slice(0, Math.floor(chunks.length / 2));
      throw new Error('process killed');
    }
    expect(await rejectionCode(kv.importSnapshot(meta, dies()))).toBe(ErrorCode.SNAPSHOT_TRANSFER_FAILED);
    await kv.close();
    // Even if the failed import had left its directory behind (a real kill would), open removes it.
    await mkdir(join(dir, 'staging-120'));
    await writeFile(join(dir, 'staging-120', 'CURRENT'), 'half-written');
    const reopened = await openKvStateMachine(dir);
    expect(await image(reopened)).toEqual(oldImage);
    expect(await readdir(dir)).toEqual(['current']);
    await reopened.close();
  });
});

describe('recoverDataDir on layouts a swap never leaves', () => {
  const tempDir = useTempDirs();

  it('old/ alone is rolled back to current/', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'old'));
    expect(await recoverDataDir(dir)).toBe('rolled-back');
    expect(await readdir(dir)).toEqual(['current']);
  });

  it('current/, next/ and old/ together are refused as STORAGE_CORRUPT', async () => {
    const dir = await tempDir();
    for (const name of ['current', 'next', 'old']) await mkdir(join(dir, name));
    expect(await rejectionCode(recoverDataDir(dir))).toBe(ErrorCode.STORAGE_CORRUPT);
  });

  it('an empty directory is fresh', async () => {
    expect(await recoverDataDir(await tempDir())).toBe('fresh');
  });
});
