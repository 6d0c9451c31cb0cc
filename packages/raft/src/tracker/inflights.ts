import { assert } from '../assert.js';
import type { LogIndex } from '../types.js';

/**
 * The MsgApp messages in flight to one follower, as the last index each carried: a bounded
 * ring buffer. When it is full the leader stops sending until acknowledgements free slots, so
 * a slow follower costs at most `countMax` messages of memory.
 *
 * Invariant: the indexes in the buffer are strictly increasing.
 */
export class Inflights {
  readonly countMax: number;
  #buffer: number[];
  #start = 0;
  #count = 0;

  constructor(countMax: number) {
    assert(Number.isInteger(countMax) && countMax > 0, `inflight countMax ${countMax} must be a positive integer`);
    this.countMax = countMax;
    this.#buffer = new Array<number>(countMax).fill(0);
  }

  get count(): number {
    return this.#count;
  }

  full(): boolean {
    return this.#count === this.countMax;
  }

  /** Records a message whose last entry is `index`. */
  add(index: LogIndex): void {
    assert(!this.full(), 'inflights: add when full');
    if (this.#count > 0) {
      const last = this.#buffer[(this.#start + this.#count - 1) % this.countMax]!;
      assert(index > last, `inflights: index ${index} not above the last in flight ${last}`);
    }
    this.#buffer[(this.#start + this.#count) % this.countMax] = index;
    this.#count++;
  }

  /** Frees every message whose last index is <= `index` (they are acknowledged). */
  freeLE(index: LogIndex): void {
    while (this.#count > 0 && this.#buffer[this.#start]! <= index) {
      this.#start = (this.#start + 1) % this.countMax;
      this.#count--;
    }
    if (this.#count === 0) this.#start = 0;
  }

  /** Frees the oldest message (its acknowledgement was probably lost). */
  freeFirst(): void {
    if (this.#count === 0) return;
    this.freeLE(this.#buffer[this.#start]!);
  }

  reset(): void {
    this.#start = 0;
    this.#count = 0;
  }

  /** The indexes in flight, oldest first (for tests and status). */
  toArray(): LogIndex[] {
    const out: LogIndex[] = [];
    for (let k = 0; k < this.#count; k++) out.push(this.#buffer[(this.#start + k) % this.countMax]!);
    return out;
  }
}
