import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError } from '@raftkv/raft';
import { backupStream, readBackupImage, STATE_HASH_DOMAIN, summarizeImage, verifyBackupFile } from '../src/index.js';
import type { Command, KvStateMachine } from '../src/index.js';
import { bytes, collect, EntryLog, image, openMemory, useTempDirs } from './helpers.js';

const tempDir = useTempDirs();
const SOURCE = { clusterId: 'prod-kv', nodeId: 'n2' } as const;
const CREATED_AT = new Date('2025-01-02T03:04:05.678Z');

/** The state hash as docs/operations.md defines it, computed from a scan (independently of backup.ts). */
async function expectedStateHash(machine: KvStateMachine): Promise<string> {
  const hash = createHash('sha256').update(STATE_HASH_DOMAIN);
  // scan returns keys in ascending order of their UTF-8 bytes, which is the order the hash uses.
  for (const item of await machine.scan('', machine.limits.scanCountMax)) {
    const key = Buffer.from(item.key, 'utf8');
    const head = Buffer.alloc(4 + key.byteLength + 8 + 4);
    head.writeUInt32BE(key.byteLength, 0);
    key.copy(head, 4);
    head.writeBigUInt64BE(BigInt(item.modIndex), 4 + key.byteLength);
    head.writeUInt32BE(item.value.byteLength, 4 + key.byteLength + 8);
    hash.update(head).update(item.value);
  }
  return hash.digest('hex');
}

async function writeBackup(machine: KvStateMachine, path: string): Promise<Buffer> {
  const file = Buffer.concat(await collect(backupStream(await machine.exportSnapshot(), SOURCE, CREATED_AT)));
  await writeFile(path, file);
  return file;
}

/** A machine with puts, overwrites, deletes, sessions and a membership entry, at term 3. */
async function populated(keyCount: number, chunkBytes = 256): Promise<KvStateMachine> {
  const machine = await openMemory({ snapshotChunkBytes: chunkBytes });
  const log = new EntryLog();
  const entries = [];
  for (let i = 0; i < keyCount; i++) entries.push(log.command({ type: 'put', key: `k/${i % 97}/${i}`, value: bytes(`value-${i}`), session: { clientId: `c${i % 5}`, seq: i } }));
  log.term = 3;
  for (let i = 0; i < keyCount; i += 7) entries.push(log.command({ type: 'delete', key: `k/${i % 97}/${i}` }));
  entries.push(log.command({ type: 'put', key: 'ünïcode/🔑', value: new Uint8Array([0, 255, 1]) }));
  await machine.apply(entries);
  return machine;
}

async function failure(path: string): Promise<string> {
  try {
    await verifyBackupFile(path);
  } catch (error) {
    if (!isRaftKvError(error, ErrorCode.BACKUP_INVALID)) throw error;
    return error.message;
  }
  return 'accepted';
}

/** Rewrites the metadata of a backup file and seals it again (a new footer and SHA-256): a well-formed lie. */
function resealed(file: Buffer, change: (metadata: Record<string, unknown>) => void): Buffer {
  const footerAt = file.byteLength - 32 - 20;
  const imageBytes = Number(file.readBigUInt64BE(footerAt));
  const metadataBytes = file.readUInt32BE(footerAt + 8);
  const metadataAt = 12 + imageBytes;
  const metadata = JSON.parse(file.subarray(metadataAt, metadataAt + metadataBytes).toString('utf8')) as Record<string, unknown>;
  change(metadata);
  const newMetadata = Buffer.from(JSON.stringify(metadata), 'utf8');
  const footer = Buffer.from(file.subarray(footerAt, footerAt + 20));
  footer.writeUInt32BE(newMetadata.byteLength, 8);
  const body = Buffer.concat([file.subarray(0, metadataAt), newMetadata, footer]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

describe('the backup file format', () => {
  it('round trip: any state backs up, verifies, and imports back to the same image, with the state hash of its keys', async () => {
    const dir = await tempDir();
    const key = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 });
    const op = fc.oneof(
      fc.record({ type: fc.constant('put' as const), key, value: fc.uint8Array({ maxLength: 600 }) }),
      fc.record({ type: fc.constant('delete' as const), key }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), fc.integer({ min: 64, max: 4096 }), async (ops, chunkBytes) => {
        const source = await openMemory({ snapshotChunkBytes: chunkBytes });
        const log = new EntryLog();
        await source.apply(ops.map((c) => log.command(c as Command)));
        const path = join(dir, `round-${run++}.rkvbackup`);
        const file = await writeBackup(source, path);

        const info = await verifyBackupFile(path);
        const keys = await source.scan('', source.limits.scanCountMax);
        expect(info.fileBytes).toBe(file.byteLength);
        expect(info.sha256).toBe(createHash('sha256').update(file.subarray(0, file.byteLength - 32)).digest('hex'));
        expect(info.metadata).toMatchObject({
          formatVersion: 1,
          clusterId: 'prod-kv',
          nodeId: 'n2',
          index: source.appliedIndex,
          term: source.appliedTerm,
          keyCount: keys.length,
          dataBytes: keys.reduce((sum, item) => sum + Buffer.byteLength(item.key, 'utf8') + item.value.byteLength, 0),
          stateHash: await expectedStateHash(source),
          createdAt: CREATED_AT.toISOString(),
        });
        // The node's view of the same state agrees with the file's.
        expect((await summarizeImage((await source.exportSnapshot()).chunks, 'memory')).stateHash).toBe(info.metadata.stateHash);

        const target = await openMemory();
        await target.install(await target.importSnapshot({ index: info.metadata.index, term: info.metadata.term }, readBackupImage(info)));
        expect(await image(target)).toEqual(await image(source));
        await source.close();
        await target.close();
      }),
      { numRuns: 40 },
    );
  });

  it('the state hash covers keys, values and modIndexes only: not sessions, membership or chunking', async () => {
    const a = await openMemory({ snapshotChunkBytes: 64 });
    const b = await openMemory({ snapshotChunkBytes: 1 << 20 });
    const la = new EntryLog();
    const lb = new EntryLog();
    await a.apply([la.command({ type: 'put', key: 'x', value: bytes('1'), session: { clientId: 'c', seq: 1 } }), la.noop()]);
    await b.apply([lb.command({ type: 'put', key: 'x', value: bytes('1') }), lb.noop()]);
    await b.resetMembership({ voters: ['n9'], learners: [] }, { keep: false, add: new Map([['n8', 1]]) });
    const hashOf = async (m: KvStateMachine): Promise<string> => (await summarizeImage((await m.exportSnapshot()).chunks, 'memory')).stateHash;
    expect(await hashOf(a)).toBe(await hashOf(b));
    // One more write to the same value changes the modIndex, and so the hash.
    await b.apply([lb.command({ type: 'put', key: 'x', value: bytes('1') })]);
    expect(await hashOf(a)).not.toBe(await hashOf(b));
    await a.close();
    await b.close();
  });

  it('an export dropped before its first read releases its database snapshot through close()', async () => {
    const machine = await populated(20);
    const dropped = await machine.exportSnapshot();
    await dropped.close();
    await dropped.close(); // idempotent
    await expect(collect(dropped.chunks)).rejects.toThrow(/snapshot/i);
    // One read to the end releases it too; close() afterwards changes nothing.
    const read = await machine.exportSnapshot();
    expect((await collect(read.chunks)).length).toBeGreaterThan(2);
    await read.close();
    await machine.close();
  });

  describe('a damaged file is refused, naming the file and what failed', () => {
    it('one flipped byte anywhere: preamble, image, metadata, footer or hash', async () => {
      const dir = await tempDir();
      const machine = await populated(300);
      const original = await writeBackup(machine, join(dir, 'good.rkvbackup'));
      expect((await verifyBackupFile(join(dir, 'good.rkvbackup'))).metadata.keyCount).toBe(300 - Math.ceil(300 / 7) + 1);
      const path = join(dir, 'flipped.rkvbackup');
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: original.byteLength - 1 }), fc.integer({ min: 1, max: 255 }), async (at, mask) => {
          const damaged = Buffer.from(original);
          damaged[at]! ^= mask;
          await writeFile(path, damaged);
          const message = await failure(path);
          expect(message).toContain(path);
          expect(message).toMatch(/SHA-256|RAFTKVBK|RKVBKEND|format version|do not add up/);
        }),
        { numRuns: 300 },
      );
      // Every region once, deterministically: the first byte, the image's middle, the metadata, the footer, the hash.
      for (const at of [0, 11, 12, Math.floor(original.byteLength / 2), original.byteLength - 60, original.byteLength - 40, original.byteLength - 1]) {
        const damaged = Buffer.from(original);
        damaged[at]! ^= 0x01;
        await writeFile(path, damaged);
        expect(await failure(path)).not.toBe('accepted');
      }
      await machine.close();
    });

    it('a file cut short at any length, or with bytes appended', async () => {
      const dir = await tempDir();
      const machine = await populated(200);
      const original = await writeBackup(machine, join(dir, 'good.rkvbackup'));
      const path = join(dir, 'cut.rkvbackup');
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: original.byteLength - 1 }), async (length) => {
          await writeFile(path, original.subarray(0, length));
          const message = await failure(path);
          expect(message).toContain(path);
          expect(message).toMatch(/truncated|shorter than any backup|not a raftkv backup/);
        }),
        { numRuns: 200 },
      );
      await writeFile(path, Buffer.concat([original, Buffer.from([0])]));
      expect(await failure(path)).toMatch(/truncated|damaged/);
      await machine.close();
    });

    it('metadata that lies about its image, even when sealed with a matching SHA-256', async () => {
      const dir = await tempDir();
      const machine = await populated(50);
      const original = await writeBackup(machine, join(dir, 'good.rkvbackup'));
      const path = join(dir, 'lie.rkvbackup');
      const cases: Array<[string, (m: Record<string, unknown>) => void]> = [
        ['stateHash', (m) => (m['stateHash'] = '0'.repeat(64))],
        ['keyCount', (m) => (m['keyCount'] = Number(m['keyCount']) + 1)],
        ['index', (m) => (m['index'] = Number(m['index']) - 1)],
        ['voters', (m) => (m['voters'] = ['someone'])],
      ];
      for (const [field, change] of cases) {
        await writeFile(path, resealed(original, change));
        expect(await failure(path)).toContain(`its metadata says ${field}`);
      }
      await writeFile(path, resealed(original, (m) => delete m['createdAt']));
      expect(await failure(path)).toContain('no valid createdAt');
      await machine.close();
    });

    it('a file that is not a backup at all, and one of a format version this build does not read', async () => {
      const dir = await tempDir();
      const path = join(dir, 'other.rkvbackup');
      await writeFile(path, Buffer.alloc(4096, 0x61));
      expect(await failure(path)).toContain('does not start with RAFTKVBK');
      const machine = await populated(10);
      const original = await writeBackup(machine, join(dir, 'good.rkvbackup'));
      const future = Buffer.from(original);
      future.writeUInt32BE(2, 8);
      await writeFile(path, future);
      expect(await failure(path)).toContain('backup format version 2; this build reads version 1');
      expect(await failure(join(dir, 'missing.rkvbackup'))).toContain('cannot be read');
      await machine.close();
    });

    it('a file replaced between its verification and the restore read is refused at the end of the image', async () => {
      const dir = await tempDir();
      const machine = await populated(100);
      const path = join(dir, 'swapped.rkvbackup');
      const original = await writeBackup(machine, path);
      const info = await verifyBackupFile(path);
      const damaged = Buffer.from(original);
      damaged[original.byteLength - 45]! ^= 0xff; // the footer: the image itself still parses
      await writeFile(path, damaged);
      const target = await openMemory();
      await expect(target.importSnapshot({ index: info.metadata.index, term: info.metadata.term }, readBackupImage(info))).rejects.toThrow(/changed after it was verified/);
      expect(target.appliedIndex).toBe(0);
      expect(await readFile(path)).toEqual(damaged);
      await machine.close();
      await target.close();
    });
  });
});
