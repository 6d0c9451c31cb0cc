/**
 * The client-session table for exactly-once retries (Raft thesis section 6.3): per client, the
 * last sequence number executed and its result.
 *
 * It is replicated state, so it must be identical on every replica: it is bounded by
 * `sessionCountMax` and evicts the session least recently used, where "used" is measured by the
 * log index of the command that last touched it, never by a clock. Two sessions never share an
 * index (one entry touches one session), so the order is total and the same everywhere.
 *
 * The whole table is held in memory (at most `sessionCountMax` small records) and mirrored to
 * `s/` records by the state machine, in the same batch as the commands that changed it.
 */
import { assert } from '@raftkv/raft';
import type { LogIndex } from '@raftkv/raft';
import type { SessionRecord } from './records.js';

export class SessionTable {
  /** Ordered by `index` ascending: Map iteration order is insertion order, and `touch` re-inserts. */
  readonly #byClient = new Map<string, SessionRecord>();
  readonly #countMax: number;
  /** The largest index of any session ever put or loaded: a new use must come after it. */
  #newestIndex: LogIndex = 0;

  constructor(countMax: number, records: Iterable<SessionRecord>) {
    assert(Number.isSafeInteger(countMax) && countMax >= 1, 'sessionCountMax must be a positive integer');
    this.#countMax = countMax;
    const sorted = [...records].sort((a, b) => a.index - b.index);
    for (const record of sorted) {
      assert(!this.#byClient.has(record.clientId), `session of ${record.clientId} loaded twice`);
      this.#byClient.set(record.clientId, record);
      this.#newestIndex = record.index;
    }
    // A table written under a larger limit is trimmed the same way on every replica that loads it.
    this.#evictOverflow();
  }

  get size(): number {
    return this.#byClient.size;
  }

  get(clientId: string): SessionRecord | undefined {
    return this.#byClient.get(clientId);
  }

  /**
   * Records the session's latest use and returns the sessions evicted to stay within bounds
   * (never the one just written: it holds the largest index).
   */
  put(record: SessionRecord): readonly SessionRecord[] {
    assert(record.index > this.#newestIndex, `session index ${record.index} must exceed the newest ${this.#newestIndex}`);
    this.#newestIndex = record.index;
    this.#byClient.delete(record.clientId);
    this.#byClient.set(record.clientId, record);
    const evicted = this.#evictOverflow();
    assert(this.#byClient.size <= this.#countMax, 'session table over its bound after eviction');
    return evicted;
  }

  #evictOverflow(): SessionRecord[] {
    const evicted: SessionRecord[] = [];
    for (const [clientId, record] of this.#byClient) {
      if (this.#byClient.size <= this.#countMax) break;
      this.#byClient.delete(clientId);
      evicted.push(record);
    }
    return evicted;
  }

  values(): IterableIterator<SessionRecord> {
    return this.#byClient.values();
  }
}
