import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LogStorage } from '@raftkv/raft';
import type { WritableLogStorage } from '@raftkv/testing/contracts';
import type { LevelLogStorage } from '../src/index.js';

/** A fresh directory under the system temp dir; `removeTempDirs` deletes every one made. */
const tempDirs = new Set<string>();

export async function makeTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-storage-test-'));
  tempDirs.add(dir);
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

export async function removeTempDirs(): Promise<void> {
  for (const dir of [...tempDirs]) await removeTempDir(dir);
}

/**
 * A storage that forwards every call to whichever store `current()` returns: the contract keeps
 * writing to the storage it was given after a reopen, which closed that store and opened a new one.
 */
export function forwarding(current: () => LevelLogStorage): LogStorage & WritableLogStorage {
  return {
    initialState: () => current().initialState(),
    entries: (lo, hi, bytesMax) => current().entries(lo, hi, bytesMax),
    term: (i) => current().term(i),
    firstIndex: () => current().firstIndex(),
    lastIndex: () => current().lastIndex(),
    snapshot: () => current().snapshot(),
    append: (entries) => current().append(entries),
    setHardState: (hs) => current().setHardState(hs),
    applySnapshot: (snapshot) => current().applySnapshot(snapshot),
    compact: (meta, data) => current().compact(meta, data),
  };
}

/** Everything a LogStorage serves, as plain values (Buffer and Uint8Array compare equal). */
export function readAll(s: LogStorage & { hardState(): unknown }): unknown {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const snapshot = s.snapshot();
  return {
    first,
    last,
    snapshotTerm: s.term(first - 1),
    entries: s.entries(first, last + 1, Number.MAX_SAFE_INTEGER).map((e) => ({ index: e.index, term: e.term, type: e.type, data: Array.from(e.data) })),
    hardState: { ...(s.hardState() as object) },
    confState: s.initialState().confState,
    snapshot: { meta: snapshot.meta, data: Array.from(snapshot.data) },
  };
}
