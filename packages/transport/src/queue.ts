import { assert } from '@raftkv/raft';

/** One encoded message waiting to be written; `seq` orders frames across the queue's lifetime. */
export interface QueuedFrame {
  readonly seq: number;
  readonly body: Buffer;
}

/**
 * The bounded FIFO of encoded frames waiting for one peer's connection. Bounded twice: by count
 * (`countMax`) and by bytes (`bytesMax`). `offer` refuses rather than evicts: when the queue is
 * full the *newest* message is dropped (see TcpTransport for why).
 */
export class FrameQueue {
  readonly countMax: number;
  readonly bytesMax: number;
  #frames: QueuedFrame[] = [];
  #head = 0;
  #bytes = 0;
  #nextSeq = 0;

  constructor(countMax: number, bytesMax: number) {
    assert(countMax >= 1 && bytesMax >= 1, `FrameQueue bounds must be positive: ${countMax}, ${bytesMax}`);
    this.countMax = countMax;
    this.bytesMax = bytesMax;
  }

  get length(): number {
    return this.#frames.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The sequence number the next offered frame will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  isFull(): boolean {
    return this.length >= this.countMax;
  }

  /** Appends; returns false (and keeps nothing) when either bound would be exceeded. */
  offer(body: Buffer): boolean {
    if (this.isFull() || this.#bytes + body.byteLength > this.bytesMax) return false;
    this.#frames.push({ seq: this.#nextSeq++, body });
    this.#bytes += body.byteLength;
    assert(this.length <= this.countMax && this.#bytes <= this.bytesMax, 'FrameQueue over its bounds');
    return true;
  }

  peek(): QueuedFrame | undefined {
    return this.#frames[this.#head];
  }

  shift(): QueuedFrame | undefined {
    const frame = this.#frames[this.#head];
    if (frame === undefined) return undefined;
    this.#head++;
    this.#bytes -= frame.body.byteLength;
    // Compact once the consumed prefix dominates, so shifting stays O(1) amortised.
    if (this.#head > 1024 && this.#head * 2 > this.#frames.length) {
      this.#frames = this.#frames.slice(this.#head);
      this.#head = 0;
    }
    return frame;
  }

  /** Drops every frame with seq < `seq`; returns how many. */
  dropBefore(seq: number): number {
    let count = 0;
    for (let f = this.peek(); f !== undefined && f.seq < seq; f = this.peek()) {
      this.shift();
      count++;
    }
    return count;
  }

  clear(): number {
    const count = this.length;
    this.#frames = [];
    this.#head = 0;
    this.#bytes = 0;
    return count;
  }
}
