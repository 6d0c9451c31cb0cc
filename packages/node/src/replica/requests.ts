/**
 * Client requests waiting inside a replica: writes waiting for their entry to be applied, reads
 * waiting for a read index and then for the state machine to reach it. Each has a deadline on
 * the replica's clock; there are no timers (the replica checks deadlines when its owner calls
 * `onTimer`), so the simulator controls time here as everywhere else.
 */
import { assert, type LogIndex, type ReadContext, type Term } from '@raftkv/raft';
import type { CommandResult } from '@raftkv/kv';

export interface WriteRequest {
  readonly kind: 'write';
  readonly index: LogIndex;
  readonly term: Term;
  readonly deadlineMs: number;
  readonly done: (error: Error | null, result: CommandResult | null) => void;
  settled: boolean;
}

export interface ReadRequest {
  readonly kind: 'read';
  readonly context: ReadContext;
  readonly deadlineMs: number;
  /** Known once the core answered; the read then waits for the state machine to apply it. */
  index: LogIndex | null;
  readonly done: (error: Error | null) => void;
  settled: boolean;
}

export type Request = WriteRequest | ReadRequest;

/**
 * The pending requests of one replica. Every request enters a FIFO of deadlines; since all share
 * one timeout, arrival order is deadline order and expiry is O(1) per request. A request settles
 * exactly once (asserted): by its outcome, its deadline, or the replica stopping.
 */
export class Requests {
  /** Writes by log index; more than one when leaders changed and an index was proposed again. */
  readonly #writes = new Map<LogIndex, WriteRequest[]>();
  #writeCount = 0;
  /** Reads waiting for the core's answer, by context. */
  readonly #reads = new Map<ReadContext, ReadRequest>();
  /** Reads whose index is known, waiting for the state machine to apply it. */
  #waiting: ReadRequest[] = [];
  #deadlines: Request[] = [];
  #deadlineHead = 0;

  get count(): number {
    return this.#writeCount + this.#reads.size + this.#waiting.length;
  }

  get writeCount(): number {
    return this.#writeCount;
  }

  get readCount(): number {
    return this.#reads.size + this.#waiting.length;
  }

  addWrite(write: WriteRequest): void {
    const list = this.#writes.get(write.index);
    if (list === undefined) this.#writes.set(write.index, [write]);
    else list.push(write);
    this.#writeCount++;
    this.#deadlines.push(write);
  }

  /** The writes proposed at `index`, removed: the entry there was applied. */
  takeWrites(index: LogIndex): WriteRequest[] {
    const list = this.#writes.get(index);
    if (list === undefined) return [];
    this.#writes.delete(index);
    this.#writeCount -= list.length;
    return list.filter((w) => !w.settled);
  }

  addRead(read: ReadRequest): void {
    assert(!this.#reads.has(read.context), `read context ${read.context} is already pending`);
    this.#reads.set(read.context, read);
    this.#deadlines.push(read);
  }

  /** The core answered the read with `context`: it may be served once `index` is applied. */
  readIndexed(context: ReadContext, index: LogIndex): ReadRequest | null {
    const read = this.#reads.get(context);
    if (read === undefined) return null; // timed out, or asked before a restart
    this.#reads.delete(context);
    read.index = index;
    return read;
  }

  waitForApply(read: ReadRequest): void {
    assert(read.index !== null, 'a read waits for an index it knows');
    this.#waiting.push(read);
  }

  /** The waiting reads whose index is now applied, removed. */
  takeApplied(applied: LogIndex): ReadRequest[] {
    if (this.#waiting.length === 0) return [];
    const ready: ReadRequest[] = [];
    const still: ReadRequest[] = [];
    for (const read of this.#waiting) {
      if (read.settled) continue;
      if (read.index! <= applied) ready.push(read);
      else still.push(read);
    }
    this.#waiting = still;
    return ready;
  }

  /** Reads still waiting for the core's answer, removed (the leader they were asked of is gone). */
  takeUnindexedReads(): ReadRequest[] {
    const reads = [...this.#reads.values()];
    this.#reads.clear();
    return reads;
  }

  /** Requests whose deadline passed, removed. */
  takeExpired(nowMs: number): Request[] {
    const expired: Request[] = [];
    while (this.#deadlineHead < this.#deadlines.length) {
      const r = this.#deadlines[this.#deadlineHead]!;
      if (!r.settled && r.deadlineMs > nowMs) break;
      this.#deadlineHead++;
      if (r.settled) continue;
      this.#remove(r);
      expired.push(r);
    }
    if (this.#deadlineHead > 1024 && this.#deadlineHead * 2 > this.#deadlines.length) {
      this.#deadlines = this.#deadlines.slice(this.#deadlineHead);
      this.#deadlineHead = 0;
    }
    return expired;
  }

  /** Every pending request, removed (the replica stops). */
  takeAll(): Request[] {
    const all: Request[] = [];
    for (const list of this.#writes.values()) for (const w of list) if (!w.settled) all.push(w);
    for (const r of this.#reads.values()) all.push(r);
    for (const r of this.#waiting) if (!r.settled) all.push(r);
    this.#writes.clear();
    this.#writeCount = 0;
    this.#reads.clear();
    this.#waiting = [];
    this.#deadlines = [];
    this.#deadlineHead = 0;
    return all;
  }

  #remove(r: Request): void {
    if (r.kind === 'write') {
      const list = this.#writes.get(r.index);
      if (list === undefined) return;
      const rest = list.filter((w) => w !== r);
      this.#writeCount -= list.length - rest.length;
      if (rest.length === 0) this.#writes.delete(r.index);
      else this.#writes.set(r.index, rest);
    } else if (r.index === null) {
      if (this.#reads.get(r.context) === r) this.#reads.delete(r.context);
    } else {
      this.#waiting = this.#waiting.filter((w) => w !== r);
    }
  }
}

/** Settles a request once; a second settlement is a bug. */
export function settle(request: Request, error: Error | null, result: CommandResult | null = null): void {
  assert(!request.settled, `${request.kind} request settled twice`);
  request.settled = true;
  if (request.kind === 'write') request.done(error, result);
  else request.done(error);
}
