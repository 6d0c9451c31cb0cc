import { assert } from '@raftkv/raft';

/**
 * The receiving end of a snapshot stream as an AsyncIterable, with back-pressure: frames push
 * chunks in, the consumer (`SnapshotStreams.receive`) pulls them out, and when more than
 * `highWaterBytes` wait, `pause` is called (the socket stops reading) until the consumer has
 * taken the backlog down to half, when `resume` is called.
 */
export class ChunkChannel implements AsyncIterable<Uint8Array> {
  readonly #highWaterBytes: number;
  readonly #pause: () => void;
  readonly #resume: () => void;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #paused = false;
  #ended = false;
  #error: Error | null = null;
  /** The consumer has seen the end of the stream. */
  #finished = false;
  #iterated = false;
  #waiter: { resolve(result: IteratorResult<Uint8Array>): void; reject(error: unknown): void } | null = null;

  constructor(highWaterBytes: number, pause: () => void, resume: () => void) {
    this.#highWaterBytes = highWaterBytes;
    this.#pause = pause;
    this.#resume = resume;
  }

  /** True once the consumer has pulled every chunk and seen the verified end. */
  get finished(): boolean {
    return this.#finished;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Queues a chunk for the consumer; dropped when the stream already failed. */
  push(chunk: Uint8Array): void {
    assert(!this.#ended, 'chunk pushed into an ended snapshot channel');
    if (this.#error !== null) return;
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      waiter.resolve({ value: chunk, done: false });
      return;
    }
    this.#queue.push(chunk);
    this.#queuedBytes += chunk.byteLength;
    if (!this.#paused && this.#queuedBytes > this.#highWaterBytes) {
      this.#paused = true;
      this.#pause();
    }
  }

  /** The stream is complete and verified: the consumer sees `done` after the queued chunks. */
  end(): void {
    assert(!this.#ended, 'snapshot channel ended twice');
    if (this.#error !== null) return;
    this.#ended = true;
    if (this.#waiter !== null && this.#queue.length === 0) this.#finish(this.#waiter);
  }

  /** The stream broke off or did not verify: the consumer's next pull throws. No effect once ended. */
  fail(error: Error): void {
    if (this.#ended || this.#error !== null) return;
    this.#error = error;
    this.#queue = [];
    this.#queuedBytes = 0;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(error);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    assert(!this.#iterated, 'a snapshot stream can be consumed once');
    this.#iterated = true;
    return {
      next: () => this.#next(),
      // The consumer stopped early: `finished` stays false, so the transfer is not acknowledged.
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }

  #next(): Promise<IteratorResult<Uint8Array>> {
    assert(this.#waiter === null, 'concurrent next() on a snapshot stream');
    if (this.#error !== null) return Promise.reject(this.#error);
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      this.#queuedBytes -= chunk.byteLength;
      if (this.#paused && this.#queuedBytes <= this.#highWaterBytes / 2) {
        this.#paused = false;
        this.#resume();
      }
      return Promise.resolve({ value: chunk, done: false });
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      if (this.#ended) this.#finish(waiter);
      else this.#waiter = waiter;
    });
  }

  #finish(waiter: { resolve(result: IteratorResult<Uint8Array>): void }): void {
    this.#waiter = null;
    this.#finished = true;
    waiter.resolve({ value: undefined, done: true });
  }
}
