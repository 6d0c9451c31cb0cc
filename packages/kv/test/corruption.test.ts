/**
 * Bytes changed on disk behind the state machine's back are reported as STORAGE_CORRUPT, naming
 * the record, and never crash the process. The damage is done through a raw ClassicLevel handle
 * on `<dir>/current`, with the machine closed.
 */
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError } from '@raftkv/raft';
import { openKvStateMachine } from '../src/index.js';
import { bytes, collect, EntryLog, rejectionCode, text, useTempDirs } from './helpers.js';

async function damage(dir: string, key: string, change: (record: Buffer) => void): Promise<void> {
  const raw = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'current'), { keyEncoding: 'view', valueEncoding: 'view' });
  await raw.open();
  const record = await raw.get(bytes(key));
  expect(record).toBeDefined();
  const copy = Buffer.from(record ?? new Uint8Array(0));
  change(copy);
  await raw.put(bytes(key), copy);
  await raw.close();
}

async function withData(dir: string): Promise<void> {
  const kv = await openKvStateMachine(dir);
  const log = new EntryLog();
  await kv.apply([
    log.command({ type: 'put', key: 'users/alice', value: bytes('alice-profile') }),
    log.command({ type: 'put', key: 'users/bob', value: bytes('bob-profile'), session: { clientId: 'client-7', seq: 1 } }),
  ]);
  await kv.close();
}

describe('corruption on disk', () => {
  const tempDir = useTempDirs();

  it('a flipped byte in a stored value: get rejects with STORAGE_CORRUPT naming the key; other keys still read', async () => {
    const dir = await tempDir();
    await withData(dir);
    await damage(dir, 'd/users/alice', (record) => {
      const last = record.byteLength - 1;
      record[last] = (record[last] ?? 0) ^ 0x01;
    });
    const kv = await openKvStateMachine(dir);
    const error = await kv.get('users/alice').then(
      () => null,
      (e: unknown) => e,
    );
    expect(isRaftKvError(error, ErrorCode.STORAGE_CORRUPT)).toBe(true);
    expect((error as Error).message).toContain('"users/alice"');
    expect(text((await kv.get('users/bob'))?.value ?? bytes(''))).toBe('bob-profile');
    expect(await rejectionCode(kv.scan('users/', 10))).toBe(ErrorCode.STORAGE_CORRUPT);
    // A snapshot of a corrupt state is refused at the source rather than shipped.
    expect(await rejectionCode(kv.exportSnapshot().then((e) => collect(e.chunks)))).toBe(ErrorCode.STORAGE_CORRUPT);
    await kv.close();
  });

  it('a record moved under another key fails its check too (the CRC covers the key)', async () => {
    const dir = await tempDir();
    await withData(dir);
    const raw = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'current'), { keyEncoding: 'view', valueEncoding: 'view' });
    await raw.open();
    const bob = await raw.get(bytes('d/users/bob'));
    await raw.put(bytes('d/users/alice'), bob ?? new Uint8Array(0));
    await raw.close();
    const kv = await openKvStateMachine(dir);
    expect(await rejectionCode(kv.get('users/alice'))).toBe(ErrorCode.STORAGE_CORRUPT);
    await kv.close();
  });

  it('a damaged applied-index or session record: open rejects with STORAGE_CORRUPT', async () => {
    for (const key of ['m/applied', 's/client-7']) {
      const dir = await tempDir();
      await withData(dir);
      await damage(dir, key, (record) => {
        record[5] = (record[5] ?? 0) ^ 0x80;
      });
      const error = await openKvStateMachine(dir).then(
        async (kv) => {
          await kv.close();
          return null;
        },
        (e: unknown) => e,
      );
      expect(isRaftKvError(error, ErrorCode.STORAGE_CORRUPT)).toBe(true);
    }
  });

  it('a value damaged before an apply that reads it: apply rejects STORAGE_CORRUPT and the machine must be reopened', async () => {
    const dir = await tempDir();
    await withData(dir);
    await damage(dir, 'd/users/alice', (record) => {
      record[0] = (record[0] ?? 0) ^ 0xff;
    });
    const kv = await openKvStateMachine(dir);
    const log = new EntryLog(kv.appliedIndex);
    expect(await rejectionCode(kv.apply([log.command({ type: 'cas', key: 'users/alice', value: bytes('x'), expect: { absent: true } })]))).toBe(
      ErrorCode.STORAGE_CORRUPT,
    );
    expect(await rejectionCode(kv.get('users/bob'))).toBe(ErrorCode.STORAGE_CLOSED);
    await kv.close();
  });
});
