import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { afterEach, expect } from 'vitest';
import { EntryType, isRaftKvError } from '@raftkv/raft';
import type { Entry, ErrorCode } from '@raftkv/raft';
import { encodeCommand, KvStateMachine } from '../src/index.js';
import type { Command, KvDb, KvStateMachineOptions } from '../src/index.js';

export function memoryDb(): KvDb {
  return new MemoryLevel<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' });
}

export function openMemory(options: KvStateMachineOptions = {}, db: KvDb = memoryDb()): Promise<KvStateMachine> {
  return KvStateMachine.open(db, { createStagingDb: memoryDb, ...options });
}

export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
export const text = (data: Uint8Array): string => Buffer.from(data).toString('utf8');

/** Builds consecutive log entries; `term` may be raised between them. */
export class EntryLog {
  index = 0;
  term = 1;

  constructor(startIndex = 0) {
    this.index = startIndex;
  }

  command(command: Command): Entry {
    return this.raw(encodeCommand(command));
  }

  noop(): Entry {
    return this.raw(new Uint8Array(0));
  }

  raw(data: Uint8Array): Entry {
    this.index += 1;
    return { index: this.index, term: this.term, type: EntryType.Normal, data };
  }
}

/** Temporary directories under os.tmpdir(), removed after each test. */
export function useTempDirs(): () => Promise<string> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  return async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-kv-'));
    dirs.push(dir);
    return dir;
  };
}

/** The RaftKvError code a promise rejects with (fails the test for anything else). */
export async function rejectionCode(promise: Promise<unknown>): Promise<ErrorCode> {
  try {
    await promise;
  } catch (error) {
    if (isRaftKvError(error)) return error.code;
    throw error;
  }
  expect.fail('expected a rejection');
}

export function thrownCode(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (error) {
    if (isRaftKvError(error)) return error.code;
    throw error;
  }
  return undefined;
}

/** Everything the machine holds, in a comparable form. */
export async function image(machine: KvStateMachine): Promise<{ index: number; term: number; rows: Array<[string, string, number]> }> {
  const rows = await machine.scan('', machine.limits.scanCountMax);
  return { index: machine.appliedIndex, term: machine.appliedTerm, rows: rows.map((r) => [r.key, Buffer.from(r.value).toString('hex'), r.modIndex]) };
}

export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of chunks) out.push(chunk);
  return out;
}

export async function* fromChunks(chunks: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}
