import { encode } from '@raftkv/codec';
import { ErrorCode, isRaftKvError, RaftKvError, SeededRandom, type Message, type MsgSnap, type NodeId } from '@raftkv/raft';
import type { SnapshotStreams } from '../transport.js';
import { decodeBody, parseMessageFrame } from '../wire.js';
import type { Endpoint, Fabric, RouteOutcome } from './fabric.js';
import { MemoryTransport } from './transport.js';

export interface MemoryNetworkOptions {
  /** Seed of the fault-injection randomness (drop, duplicate, jitter): the same seed, the same choices. */
  readonly seed?: number;
  /** Delivery delay of a link without its own `delay()`; 0 (default) delivers on the next event-loop turn, in order. */
  readonly delayMs?: number;
  /** Messages in flight per link at most (default 4096); beyond it new messages are dropped, as in TcpTransport. */
  readonly sendQueueMax?: number;
}

interface LinkFaults {
  dropProbability: number;
  delayMs: number | null;
  jitterMs: number;
  cut: boolean;
}

interface Scheduled {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly arrive: () => void;
  timer: NodeJS.Timeout | null;
}

const EMPTY = new Uint8Array(0);

/**
 * An in-memory network for tests and embedded clusters. Delivery is asynchronous (next
 * event-loop turn, or after a configured delay) with fault injection: loss, delay with jitter
 * (which reorders), duplication, partitions and one-way cuts. Healthy links without jitter are
 * FIFO. Faults apply at send time and again on arrival, so a partition also loses what was in
 * flight. Snapshot streams go through the same links: the chunks are pulled from the sender's
 * `open()` as the receiver's `receive()` consumes them, and a cut mid-stream breaks the stream.
 */
export class MemoryNetwork {
  readonly #random: SeededRandom;
  readonly #delayMs: number;
  readonly #sendQueueMax: number;
  readonly #endpoints = new Map<NodeId, Endpoint>();
  readonly #links = new Map<string, LinkFaults>();
  readonly #inFlight = new Map<string, number>();
  readonly #scheduled = new Set<Scheduled>();
  #nextTurn: Scheduled[] = [];
  #duplicateProbability = 0;
  readonly #fabric: Fabric;

  constructor(options: MemoryNetworkOptions = {}) {
    this.#random = new SeededRandom(options.seed ?? 1);
    this.#delayMs = checkMs('delayMs', options.delayMs ?? 0);
    this.#sendQueueMax = options.sendQueueMax ?? 4096;
    if (!(Number.isInteger(this.#sendQueueMax) && this.#sendQueueMax >= 1)) fail(`sendQueueMax must be a positive integer, got ${this.#sendQueueMax}`);
    this.#fabric = {
      attach: (endpoint) => this.#endpoints.set(endpoint.id, endpoint),
      detach: (endpoint) => this.#detach(endpoint),
      route: (from, message) => this.#route(from, message),
      transfer: (from, message, source) => this.#transfer(from, message, source),
      peerIds: (self) => [...this.#endpoints.keys()].filter((id) => id !== self),
      linkUp: (from, to) => this.#linkUp(from, to),
      inFlight: (from, to) => this.#inFlight.get(linkKey(from, to)) ?? 0,
    };
  }

  /** A transport for node `id` on this network (one open transport per id). */
  transport(id: NodeId): MemoryTransport {
    if (id === '') fail('a node id must not be empty');
    if (this.#endpoints.has(id)) fail(`node ${id} already has an open transport on this network`);
    return new MemoryTransport(id, this.#fabric);
  }

  /** Loses each message from -> to with this probability. */
  drop(from: NodeId, to: NodeId, probability: number): void {
    this.#link(from, to).dropProbability = checkProbability(probability);
  }

  /** Delays each message from -> to by `ms` plus a uniform [0, jitterMs]; jitter reorders. */
  delay(from: NodeId, to: NodeId, ms: number, jitterMs = 0): void {
    const link = this.#link(from, to);
    link.delayMs = checkMs('delay ms', ms);
    link.jitterMs = checkMs('jitterMs', jitterMs);
  }

  /** Delivers each message twice with this probability (on every link). */
  duplicate(probability: number): void {
    this.#duplicateProbability = checkProbability(probability);
  }

  /** No message crosses between the groups, in either direction. */
  partition(groupA: readonly NodeId[], groupB: readonly NodeId[]): void {
    for (const a of groupA) {
      for (const b of groupB) {
        this.cut(a, b);
        this.cut(b, a);
      }
    }
  }

  /** No message goes from -> to (the other direction is untouched). */
  cut(from: NodeId, to: NodeId): void {
    this.#link(from, to).cut = true;
  }

  /** Removes every fault: cuts, partitions, loss, delays and duplication. */
  heal(): void {
    this.#links.clear();
    this.#duplicateProbability = 0;
  }

  #link(from: NodeId, to: NodeId): LinkFaults {
    const key = linkKey(from, to);
    let link = this.#links.get(key);
    if (link === undefined) {
      link = { dropProbability: 0, delayMs: null, jitterMs: 0, cut: false };
      this.#links.set(key, link);
    }
    return link;
  }

  #linkUp(from: NodeId, to: NodeId): boolean {
    return this.#endpoints.get(to)?.isUp() === true && this.#links.get(linkKey(from, to))?.cut !== true;
  }

  #route(from: NodeId, message: Message): RouteOutcome {
    const to = message.to;
    if (!this.#endpoints.has(to)) return 'unknown';
    if (!this.#linkUp(from, to)) return 'unreachable';
    const link = this.#links.get(linkKey(from, to));
    if (link !== undefined && link.dropProbability > 0 && this.#random.chance(link.dropProbability)) return 'lost';
    if ((this.#inFlight.get(linkKey(from, to)) ?? 0) >= this.#sendQueueMax) return 'full';
    // The wire path: encoded here, decoded and validated on arrival, a fresh object per copy.
    const body = encode({ t: 'msg', m: message });
    const copies = this.#duplicateProbability > 0 && this.#random.chance(this.#duplicateProbability) ? 2 : 1;
    for (let i = 0; i < copies; i++) this.#schedule(from, to, this.#delayOf(link), () => this.#arrive(from, to, body));
    return 'scheduled';
  }

  #delayOf(link: LinkFaults | undefined): number {
    const base = link?.delayMs ?? this.#delayMs;
    const jitter = link === undefined || link.jitterMs === 0 ? 0 : this.#random.nextInt(link.jitterMs + 1);
    return base + jitter;
  }

  #schedule(from: NodeId, to: NodeId, delayMs: number, arrive: () => void): void {
    const key = linkKey(from, to);
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
    const entry: Scheduled = { from, to, arrive, timer: null };
    this.#scheduled.add(entry);
    if (delayMs > 0) {
      entry.timer = setTimeout(() => this.#run(entry), delayMs);
      return;
    }
    if (this.#nextTurn.length === 0) {
      setImmediate(() => {
        const batch = this.#nextTurn;
        this.#nextTurn = [];
        for (const e of batch) this.#run(e);
      });
    }
    this.#nextTurn.push(entry);
  }

  #run(entry: Scheduled): void {
    if (!this.#scheduled.delete(entry)) return; // cancelled
    const key = linkKey(entry.from, entry.to);
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 1) - 1);
    entry.arrive();
  }

  #arrive(from: NodeId, to: NodeId, body: Buffer): void {
    const target = this.#endpoints.get(to);
    if (target === undefined || !this.#linkUp(from, to)) return; // cut while in flight: lost
    let message: Message;
    try {
      message = parseMessageFrame(decodeBody(body));
    } catch (error) {
      if (!isRaftKvError(error, ErrorCode.FRAME_INVALID)) throw error;
      return target.rejectFrame(error);
    }
    target.deliver(message);
  }

  #detach(endpoint: Endpoint): void {
    if (this.#endpoints.get(endpoint.id) !== endpoint) return;
    this.#endpoints.delete(endpoint.id);
    // Nothing to or from a closed transport stays scheduled (no timer outlives it).
    for (const entry of this.#scheduled) {
      if (entry.from !== endpoint.id && entry.to !== endpoint.id) continue;
      if (entry.timer !== null) clearTimeout(entry.timer);
      this.#scheduled.delete(entry);
      const key = linkKey(entry.from, entry.to);
      this.#inFlight.set(key, (this.#inFlight.get(key) ?? 1) - 1);
    }
  }

  async #transfer(from: NodeId, message: MsgSnap, source: SnapshotStreams): Promise<boolean> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const to = message.to;
    const target = this.#endpoints.get(to);
    const link = this.#links.get(linkKey(from, to));
    const receiver = target?.snapshots() ?? null;
    if (target === undefined || receiver === null || !this.#linkUp(from, to)) return false;
    if (link !== undefined && link.dropProbability > 0 && this.#random.chance(link.dropProbability)) return false;
    const meta = message.snapshot.meta;
    const healthy = (): boolean => this.#endpoints.get(from)?.isUp() === true && this.#endpoints.get(to) === target && this.#linkUp(from, to);
    let finished = false;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const chunk of source.open(meta)) {
        if (!healthy()) throw failed(`snapshot ${from} -> ${to}: link down mid-stream`);
        yield Uint8Array.from(chunk); // the receiver gets its own bytes, as over TCP
      }
      if (!healthy()) throw failed(`snapshot ${from} -> ${to}: link down mid-stream`);
      finished = true;
    }
    try {
      await receiver.receive({ ...message, snapshot: { meta, data: EMPTY } }, chunks());
    } catch {
      target.snapshotRejected();
      return false;
    }
    if (!finished) {
      target.snapshotRejected();
      return false;
    }
    if (!healthy()) return false;
    target.snapshotReceived();
    return true;
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}\u0000${to}`;
}

function fail(message: string): never {
  throw new RaftKvError(ErrorCode.INVALID_CONFIG, message);
}

function failed(message: string): RaftKvError {
  return new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, message);
}

function checkProbability(p: number): number {
  if (!(p >= 0 && p <= 1)) fail(`a probability must be in [0, 1], got ${p}`);
  return p;
}

function checkMs(name: string, ms: number): number {
  if (!(Number.isInteger(ms) && ms >= 0 && ms <= 2 ** 31 - 1)) fail(`${name} must be an integer number of milliseconds >= 0, got ${ms}`);
  return ms;
}
