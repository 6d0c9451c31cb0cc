import { MemoryStorage, type ConfState } from '../src/index.js';
import { runLogStorageContract, type StorageUnderTest } from '@raftkv/testing/contracts';

runLogStorageContract('MemoryStorage', (confState) => ({ storage: new MemoryStorage(confState) }));

/**
 * MemoryStorage with a journal of its writes: reopening replays the journal into a fresh
 * MemoryStorage. It exercises the contract's restart checks (which a durable store runs for
 * real) and shows that MemoryStorage is a deterministic function of its writes.
 */
function journaled(confState: ConfState): StorageUnderTest {
  const storage = new MemoryStorage(confState);
  const journal: ((s: MemoryStorage) => void)[] = [];
  const write = (w: (s: MemoryStorage) => void): void => {
    w(storage); // a refused write throws before it is journaled
    journal.push(w);
  };
  return {
    storage: {
      initialState: () => storage.initialState(),
      entries: (lo, hi, bytesMax) => storage.entries(lo, hi, bytesMax),
      term: (i) => storage.term(i),
      firstIndex: () => storage.firstIndex(),
      lastIndex: () => storage.lastIndex(),
      snapshot: () => storage.snapshot(),
      append: (entries) => {
        const copy = entries.slice();
        write((s) => s.append(copy));
      },
      setHardState: (hs) => write((s) => s.setHardState(hs)),
      applySnapshot: (snapshot) => write((s) => s.applySnapshot(snapshot)),
      compact: (meta, data) => write((s) => s.compact(meta, data)),
    },
    reopen: () => {
      const fresh = new MemoryStorage(confState);
      for (const w of journal) w(fresh);
      return fresh;
    },
  };
}

runLogStorageContract('MemoryStorage, reopened by replaying its writes', journaled, { reopens: true });
