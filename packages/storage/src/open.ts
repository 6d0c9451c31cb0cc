import { mkdir } from 'node:fs/promises';
import type { ConfState } from '@raftkv/raft';
import { ClassicLevel, type DatabaseOptions } from 'classic-level';
import { LevelLogStorage } from './level-log-storage.js';

/**
 * classic-level options, spelled out (the values are LevelDB's documented defaults unless a
 * comment says otherwise), so that a change of default upstream does not change our store.
 */
const CLASSIC_LEVEL_OPTIONS: DatabaseOptions<string, Uint8Array> = {
  keyEncoding: 'utf8',
  valueEncoding: 'view',
  createIfMissing: true,
  errorIfExists: false,
  compression: true,
  cacheSize: 8 * 1024 * 1024,
  writeBufferSize: 4 * 1024 * 1024,
  blockSize: 4096,
  maxOpenFiles: 1000,
  blockRestartInterval: 16,
  maxFileSize: 2 * 1024 * 1024,
  multithreading: false,
};

/** Opens (creating it if needed) the log store in directory `dir` on LevelDB. */
export async function openLevelLogStorage(dir: string, bootstrap: ConfState): Promise<LevelLogStorage> {
  await mkdir(dir, { recursive: true });
  const db = new ClassicLevel<string, Uint8Array>(dir, CLASSIC_LEVEL_OPTIONS);
  return LevelLogStorage.open(db, { dataDir: dir, bootstrap });
}
