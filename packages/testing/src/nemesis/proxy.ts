/**
 * ProxyNetwork: the LinkControl that needs no privileges. Every directed link `from -> to` has one
 * TCP listener per channel ('raft': the peer port, 'http': the HTTP port). Node `from` dials the
 * listener instead of `to` (see `router()`), and the proxy dials the real address of `to` on that
 * channel (`setTarget()`; connections that arrive before a target is known are closed). Faults and
 * delays are per link and apply to every channel of it and to both directions of its connections.
 *
 * Semantics, per link:
 * - pass: bytes flow both ways unchanged and in order; back-pressure is kept (a direction stops
 *   reading while its destination's write buffer is full). End of stream (FIN) is forwarded in
 *   the same direction; an error or an abrupt close of one side resets the other.
 * - drop (a blackhole): both directions of every open connection are read and discarded, so the
 *   sender is never back-pressured and learns nothing; new connections are accepted and discarded
 *   the same way, without dialing the target. When the fault is lifted (healAll, or cut 'reset'),
 *   every connection that lost at least one byte (or its FIN), or was accepted during the drop, is
 *   reset, because its byte stream has a hole: the sender reconnects. Connections that lost
 *   nothing survive.
 * - reset: every open connection is reset (an RST to both the client and the target), and new
 *   connections are accepted and reset at once.
 * - delay: each chunk read (either direction) is written after delayMs + uniform[0, jitterMs], and
 *   never before the previous chunk of its direction, so order is kept under jitter. Removing the
 *   delay lets scheduled chunks go at their time; later chunks go at once but still behind them.
 *   A fault applies before the delay (a dropped chunk is not delayed), and also to chunks still
 *   waiting in a delay when it starts: they are dropped when their time comes.
 * stats(): `resets` counts connections the proxy reset for a fault (a 'reset' cut, or a hole found
 * at heal); `bytesForwarded` counts bytes handed to the far socket, `bytesDropped` bytes discarded.
 *
 * No socket callback throws: socket errors are absorbed (the connection is torn down instead).
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { assertNever, type NodeId } from '@raftkv/raft';
import type { LinkControl, LinkDelay, LinkFaultMode, LinkState } from './links.js';

export type ProxyChannel = 'raft' | 'http';

export const PROXY_CHANNELS: readonly ProxyChannel[] = ['raft', 'http'];

export interface ProxyNetworkOptions {
  readonly nodes: readonly NodeId[];
  /** Default: both, ['raft', 'http']. */
  readonly channels?: readonly ProxyChannel[];
  /** Where the listeners listen and what `address()` names. Default 127.0.0.1. */
  readonly host?: string;
  /** Uniform in [0, 1), for jitter. Default Math.random. */
  readonly random?: () => number;
}

/** Counters of one directed link, summed over its channels. */
export interface ProxyLinkStats {
  /** Connections accepted, ever. */
  readonly connections: number;
  /** Accepted connections not yet fully closed. */
  readonly open: number;
  readonly bytesForwarded: number;
  readonly bytesDropped: number;
  /** Connections the proxy reset for a fault. */
  readonly resets: number;
}

export const ProxyNetworkErrorCode = {
  /** A node id, channel, address or delay that the network cannot take. */
  INVALID_ARGUMENT: 'PROXY_INVALID_ARGUMENT',
  /** The network was closed. */
  CLOSED: 'PROXY_CLOSED',
} as const;
export type ProxyNetworkErrorCode = (typeof ProxyNetworkErrorCode)[keyof typeof ProxyNetworkErrorCode];

export class ProxyNetworkError extends Error {
  override readonly name = 'ProxyNetworkError';
  readonly code: ProxyNetworkErrorCode;

  constructor(code: ProxyNetworkErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * A delayed direction holds at most this many bytes in its timers; past it, it stops reading from
 * its source until the timers catch up (back-pressure through a delay).
 */
const DELAYED_BYTES_MAX = 16 * 1024 * 1024;

function invalid(message: string): ProxyNetworkError {
  return new ProxyNetworkError(ProxyNetworkErrorCode.INVALID_ARGUMENT, message);
}

interface Target {
  readonly host: string;
  readonly port: number;
}

/** Parses "host:port" or "[v6]:port". */
function parseAddress(address: string): Target {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (host === undefined || !(port >= 1 && port <= 65535)) {
    throw invalid(`ProxyNetwork: target address must be "host:port" with a port in 1..65535, got ${JSON.stringify(address)}`);
  }
  return { host, port };
}

function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Whether libuv may hold a shutdown (the FIN of an `end()`) that it has not carried out yet:
 * `end()` was called, every byte was handed over (so `_final` has issued the shutdown), and
 * 'finish' (which follows the shutdown's completion) has not come. libuv performs the queued
 * shutdown in the loop's next pending phase, so this lasts until then, at most.
 */
function shutdownMayBePending(socket: Socket): boolean {
  return socket.writableEnded && !socket.writableFinished && socket.writableLength === 0;
}

/**
 * Tears a socket down: with an RST when `reset`, else with a FIN. Never throws, and the socket
 * always comes to emit 'close' (a Connection, and so close(), waits for it). Exported for its test.
 */
export function killSocket(socket: Socket, reset: boolean): void {
  if (socket.destroyed) return;
  // A socket still connecting has nothing to reset yet; resetAndDestroy would wait for the connect.
  if (!reset || socket.connecting) {
    socket.destroy();
    return;
  }
  if (shutdownMayBePending(socket)) {
    // uv_tcp_close_reset refuses a handle whose shutdown is queued (EINVAL). Node 20 then reports
    // the error but marks the handle as closing without ever closing it: no 'close' for this
    // socket, so the connection and close() wait forever, and at exit
    // Environment::CleanupHandles spins at 100% CPU waiting for that handle to close. This
    // happens when a forwarded FIN (Direction: dest.end()) and a reset meet within one phase of
    // the loop: a combined fault episode kills a node, whose FINs the proxy forwards, and in the
    // same turn cuts another node's links in 'reset' mode (seen in the partition suite); or a
    // delay timer delivers a FIN and a cut follows in the same timers phase. Reset once the FIN
    // is out, when uv_tcp_close_reset accepts the handle; an error or close meanwhile ends the
    // socket anyway.
    socket.once('finish', () => killSocket(socket, true));
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** A caller's random() outside [0, 1) must not crash a socket callback: clamp it. */
function unit(value: number): number {
  return value >= 0 ? Math.min(value, 1) : 0;
}

class Link {
  fault: LinkFaultMode | null = null;
  delay: LinkDelay | null = null;
  /** Accepted connections not yet fully closed. */
  readonly connections = new Set<Connection>();
  readonly stats = { connections: 0, open: 0, bytesForwarded: 0, bytesDropped: 0, resets: 0 };

  constructor(
    readonly from: NodeId,
    readonly to: NodeId,
  ) {}
}

interface Scheduled {
  /** null: the end of the stream. */
  readonly chunk: Buffer | null;
  readonly dueMs: number;
}

/** One direction of a proxied connection: reads `source`, writes `dest`. */
class Direction {
  readonly #connection: Connection;
  readonly #source: Socket;
  readonly #dest: Socket;
  readonly #random: () => number;
  /** Chunks waiting for their time; dueMs never decreases along the queue (order is kept). */
  #scheduled: Scheduled[] = [];
  /** Sum of the chunk sizes in #scheduled; paused reading past DELAYED_BYTES_MAX. */
  #scheduledBytes = 0;
  /** The due time of the last chunk scheduled: no later chunk may go before it. */
  #lastDueMs = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #awaitingDrain = false;
  /** Whether this direction paused its source. */
  #held = false;
  #disposed = false;

  constructor(connection: Connection, source: Socket, dest: Socket, random: () => number) {
    this.#connection = connection;
    this.#source = source;
    this.#dest = dest;
    this.#random = random;
    source.on('data', (chunk: Buffer) => {
      if (this.#connection.link.fault !== null) this.#lose(chunk.length);
      else this.#schedule(chunk);
    });
    source.on('end', () => {
      // A blackhole swallows the FIN too: the far side will never see this stream end.
      if (this.#connection.link.fault !== null) this.#lose(0);
      else this.#schedule(null);
    });
  }

  /** Pauses or resumes the source: held while the destination is full, never during a drop. */
  updateFlow(): void {
    if (this.#disposed || this.#source.destroyed) return;
    const hold = this.#connection.link.fault === null && (this.#awaitingDrain || this.#scheduledBytes > DELAYED_BYTES_MAX);
    if (hold === this.#held) return;
    this.#held = hold;
    if (hold) this.#source.pause();
    else this.#source.resume();
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#scheduled = [];
    this.#scheduledBytes = 0;
  }

  #lose(bytes: number): void {
    this.#connection.link.stats.bytesDropped += bytes;
    this.#connection.taint();
  }

  #schedule(chunk: Buffer | null): void {
    if (this.#disposed) return;
    const nowMs = performance.now();
    const delay = this.#connection.link.delay;
    const waitMs = delay === null ? 0 : delay.delayMs + unit(this.#random()) * delay.jitterMs;
    const dueMs = Math.max(nowMs + waitMs, this.#lastDueMs);
    this.#lastDueMs = dueMs;
    if (this.#scheduled.length === 0 && dueMs <= nowMs) {
      this.#deliver(chunk);
      return;
    }
    this.#scheduled.push({ chunk, dueMs });
    this.#scheduledBytes += chunk?.length ?? 0;
    this.#arm(nowMs);
    this.updateFlow();
  }

  /** One timer per direction, for the head of the queue. */
  #arm(nowMs: number): void {
    const head = this.#scheduled[0];
    if (this.#timer !== null || head === undefined) return;
    // Timers may fire up to a millisecond early; #flush re-arms for what is not due yet.
    this.#timer = setTimeout(() => this.#flush(), Math.max(1, Math.ceil(head.dueMs - nowMs)));
  }

  #flush(): void {
    this.#timer = null;
    const nowMs = performance.now();
    for (;;) {
      const head = this.#scheduled[0];
      if (this.#disposed || head === undefined || head.dueMs > nowMs) break;
      this.#scheduled.shift();
      this.#scheduledBytes -= head.chunk?.length ?? 0;
      this.#deliver(head.chunk);
    }
    this.#arm(nowMs);
    this.updateFlow();
  }

  #deliver(chunk: Buffer | null): void {
    // A fault that started while the chunk waited in a delay catches it here.
    if (this.#connection.link.fault !== null) {
      this.#lose(chunk?.length ?? 0);
      return;
    }
    if (this.#dest.destroyed) return;
    if (chunk === null) {
      this.#dest.end();
      return;
    }
    this.#connection.link.stats.bytesForwarded += chunk.length;
    if (!this.#dest.write(chunk)) this.#awaitDrain();
  }

  #awaitDrain(): void {
    if (this.#awaitingDrain) return;
    this.#awaitingDrain = true;
    this.#dest.once('drain', () => {
      this.#awaitingDrain = false;
      this.updateFlow();
    });
    this.updateFlow();
  }
}

/** One accepted connection: the client socket and, once dialed, the upstream one. */
class Connection {
  readonly link: Link;
  readonly client: Socket;
  /** Resolves once every socket of the connection has closed. */
  readonly closed: Promise<void>;
  #resolveClosed: () => void = () => undefined;
  #upstream: Socket | null = null;
  #directions: Direction[] = [];
  /** Lost bytes (or was accepted) during a drop: its stream has a hole, reset it at heal. */
  #tainted = false;
  #aborted = false;
  #socketsOpen = 0;

  constructor(link: Link, client: Socket) {
    this.link = link;
    this.client = client;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    link.connections.add(this);
    link.stats.connections += 1;
    link.stats.open += 1;
    this.#track(client);
  }

  get tainted(): boolean {
    return this.#tainted;
  }

  taint(): void {
    this.#tainted = true;
  }

  /** Accepted during a drop: read and discard, never dial. */
  blackhole(): void {
    this.#tainted = true;
    this.client.on('data', (chunk: Buffer) => {
      this.link.stats.bytesDropped += chunk.length;
    });
  }

  dial(target: Target, random: () => number): void {
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    this.#upstream = upstream;
    this.#track(upstream);
    this.#directions = [new Direction(this, this.client, upstream, random), new Direction(this, upstream, this.client, random)];
  }

  updateFlow(): void {
    for (const direction of this.#directions) direction.updateFlow();
  }

  /** Tears both sides down (RST when `reset`). Returns false if it was already torn down. */
  abort(reset: boolean): boolean {
    if (this.#aborted) return false;
    this.#aborted = true;
    for (const direction of this.#directions) direction.dispose();
    killSocket(this.client, reset);
    if (this.#upstream !== null) killSocket(this.#upstream, reset);
    return true;
  }

  #track(socket: Socket): void {
    this.#socketsOpen += 1;
    // An error on either side (refused dial, ECONNRESET, EPIPE) tears down both; never rethrown.
    socket.on('error', () => this.abort(true));
    socket.on('close', () => {
      // A side that closed without a clean end of stream broke: break the other side too. One that
      // ended cleanly has already had its FIN forwarded (or queued), and the other side follows.
      if (!socket.readableEnded) this.abort(true);
      this.#socketsOpen -= 1;
      if (this.#socketsOpen === 0) this.#finish();
    });
  }

  #finish(): void {
    for (const direction of this.#directions) direction.dispose();
    this.link.connections.delete(this);
    this.link.stats.open -= 1;
    this.#resolveClosed();
  }
}

interface Listener {
  readonly server: Server;
  readonly address: string;
}

export class ProxyNetwork implements LinkControl {
  readonly #nodes: NodeId[];
  readonly supportsDelay = true;
  readonly channels: readonly ProxyChannel[];
  readonly #host: string;
  readonly #random: () => number;
  /** Keyed by linkKey(from, to); in `links()` order. */
  readonly #links = new Map<string, Link>();
  /** Keyed by listenerKey(from, to, channel). */
  readonly #listeners = new Map<string, Listener>();
  /** Keyed by targetKey(to, channel). */
  readonly #targets = new Map<string, Target>();
  #closing: Promise<void> | null = null;

  private constructor(nodes: readonly NodeId[], channels: readonly ProxyChannel[], host: string, random: () => number) {
    this.#nodes = [...nodes];
    this.channels = [...channels];
    this.#host = host;
    this.#random = random;
    for (const from of nodes) {
      for (const to of nodes) if (from !== to) this.#links.set(linkKey(from, to), new Link(from, to));
    }
  }

  /** Listens one server per (from, to, channel), from !== to, on ports the OS picks. */
  static async start(options: ProxyNetworkOptions): Promise<ProxyNetwork> {
    const { nodes, channels = PROXY_CHANNELS, host = '127.0.0.1', random = Math.random } = options;
    if (nodes.length === 0) throw invalid('ProxyNetwork: nodes must not be empty');
    if (nodes.some((id) => typeof id !== 'string' || id === '')) throw invalid('ProxyNetwork: node ids must be non-empty strings');
    if (new Set(nodes).size !== nodes.length) throw invalid(`ProxyNetwork: duplicate node id in ${JSON.stringify(nodes)}`);
    if (channels.length === 0) throw invalid('ProxyNetwork: channels must not be empty');
    for (const channel of channels) {
      if (!PROXY_CHANNELS.includes(channel)) throw invalid(`ProxyNetwork: unknown channel ${JSON.stringify(channel)} (expected 'raft' or 'http')`);
    }
    if (new Set(channels).size !== channels.length) throw invalid(`ProxyNetwork: duplicate channel in ${JSON.stringify(channels)}`);
    const network = new ProxyNetwork(nodes, channels, host, random);
    try {
      await network.#listenAll();
    } catch (error) {
      await network.close();
      throw error;
    }
    return network;
  }

  get nodes(): readonly NodeId[] {
    return [...this.#nodes];
  }

  /**
   * Adds a node (a machine joining the cluster): a link to and from every node already here, on
   * every channel, listening before this resolves. Its target is set with `setTarget`.
   */
  async addNode(id: NodeId): Promise<void> {
    this.#checkOpen();
    if (typeof id !== 'string' || id === '') throw invalid('ProxyNetwork: node ids must be non-empty strings');
    if (this.#nodes.includes(id)) throw invalid(`ProxyNetwork: node ${JSON.stringify(id)} is already in the network`);
    const added: Link[] = [];
    for (const other of this.#nodes) added.push(new Link(other, id), new Link(id, other));
    this.#nodes.push(id);
    for (const link of added) this.#links.set(linkKey(link.from, link.to), link);
    const failed = (await Promise.allSettled(added.flatMap((link) => this.channels.map((channel) => this.#listen(link, channel))))).find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** "host:port" of the proxy node `from` dials to reach `to` on `channel`. */
  address(from: NodeId, to: NodeId, channel: ProxyChannel = 'raft'): string {
    this.#link(from, to);
    this.#checkChannel(channel);
    const listener = this.#listeners.get(listenerKey(from, to, channel));
    if (listener === undefined) throw new ProxyNetworkError(ProxyNetworkErrorCode.CLOSED, 'ProxyNetwork: closed');
    return listener.address;
  }

  /** Where traffic for `to` on `channel` really goes, for connections accepted from now on. */
  setTarget(to: NodeId, channel: ProxyChannel, address: string): void {
    this.#checkNode(to);
    this.#checkChannel(channel);
    this.#targets.set(targetKey(to, channel), parseAddress(address));
  }

  /** For a node's `peerAddress(from, to, realAddress)` option: records the target, returns the proxy. */
  router(channel: ProxyChannel = 'raft'): (from: NodeId, to: NodeId, address: string) => string {
    this.#checkChannel(channel);
    return (from, to, address) => {
      this.setTarget(to, channel, address);
      return this.address(from, to, channel);
    };
  }

  async cut(from: NodeId, to: NodeId, mode: LinkFaultMode): Promise<void> {
    this.#checkOpen();
    const link = this.#link(from, to);
    if (mode !== 'drop' && mode !== 'reset') throw invalid(`ProxyNetwork: unknown fault mode ${JSON.stringify(mode)}`);
    this.#setFault(link, mode);
  }

  async delay(from: NodeId, to: NodeId, delay: LinkDelay | null): Promise<void> {
    this.#checkOpen();
    const link = this.#link(from, to);
    if (delay !== null) {
      const { delayMs, jitterMs } = delay;
      if (!(Number.isFinite(delayMs) && delayMs >= 0)) throw invalid(`ProxyNetwork: delayMs must be a finite number >= 0, got ${delayMs}`);
      if (!(Number.isFinite(jitterMs) && jitterMs >= 0)) throw invalid(`ProxyNetwork: jitterMs must be a finite number >= 0, got ${jitterMs}`);
    }
    link.delay = delay === null ? null : { delayMs: delay.delayMs, jitterMs: delay.jitterMs };
  }

  async healAll(): Promise<void> {
    for (const link of this.#links.values()) {
      this.#setFault(link, null);
      link.delay = null;
    }
  }

  links(): LinkState[] {
    return [...this.#links.values()].map(({ from, to, fault, delay }) => ({ from, to, fault, delay }));
  }

  stats(from: NodeId, to: NodeId): ProxyLinkStats {
    return { ...this.#link(from, to).stats };
  }

  /** Closes the listeners, resets every connection, clears every timer. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const { server } of this.#listeners.values()) {
      waits.push(new Promise((resolve) => server.close(() => resolve())));
    }
    this.#listeners.clear();
    for (const link of this.#links.values()) {
      for (const connection of [...link.connections]) {
        waits.push(connection.closed);
        connection.abort(true);
      }
    }
    await Promise.all(waits);
  }

  async #listenAll(): Promise<void> {
    const pending: Promise<void>[] = [];
    for (const link of this.#links.values()) {
      for (const channel of this.channels) pending.push(this.#listen(link, channel));
    }
    // Wait for every bind to settle, so that close() after a failure finds every server.
    const failed = (await Promise.allSettled(pending)).find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  async #listen(link: Link, channel: ProxyChannel): Promise<void> {
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }, (socket) => this.#accept(link, channel, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.#host, port: 0, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Accept errors (EMFILE...) must not crash the process; the connection is simply not made.
    server.on('error', () => undefined);
    const { port } = server.address() as AddressInfo;
    this.#listeners.set(listenerKey(link.from, link.to, channel), { server, address: formatAddress(this.#host, port) });
  }

  #accept(link: Link, channel: ProxyChannel, client: Socket): void {
    if (this.#closing !== null) {
      client.on('error', () => undefined);
      client.destroy();
      return;
    }
    const connection = new Connection(link, client);
    switch (link.fault) {
      case 'reset':
        if (connection.abort(true)) link.stats.resets += 1;
        return;
      case 'drop':
        connection.blackhole();
        return;
      case null:
        break;
      default:
        assertNever(link.fault, 'link fault');
    }
    const target = this.#targets.get(targetKey(link.to, channel));
    if (target === undefined) {
      connection.abort(false);
      return;
    }
    connection.dial(target, this.#random);
  }

  #setFault(link: Link, fault: LinkFaultMode | null): void {
    const previous = link.fault;
    link.fault = fault;
    const connections = [...link.connections];
    switch (fault) {
      case 'reset':
        for (const connection of connections) if (connection.abort(true)) link.stats.resets += 1;
        return;
      case 'drop':
        // Stop holding any source back: a blackhole reads everything.
        for (const connection of connections) connection.updateFlow();
        return;
      case null:
        if (previous !== 'drop') return;
        for (const connection of connections) {
          if (!connection.tainted) connection.updateFlow();
          else if (connection.abort(true)) link.stats.resets += 1;
        }
        return;
      default:
        assertNever(fault, 'link fault');
    }
  }

  #checkOpen(): void {
    if (this.#closing !== null) throw new ProxyNetworkError(ProxyNetworkErrorCode.CLOSED, 'ProxyNetwork: closed');
  }

  #checkNode(id: NodeId): void {
    if (!this.#nodes.includes(id)) throw invalid(`ProxyNetwork: unknown node ${JSON.stringify(id)} (nodes: ${this.#nodes.join(', ')})`);
  }

  #checkChannel(channel: ProxyChannel): void {
    if (!this.channels.includes(channel)) throw invalid(`ProxyNetwork: channel ${JSON.stringify(channel)} is not proxied (channels: ${this.channels.join(', ')})`);
  }

  #link(from: NodeId, to: NodeId): Link {
    this.#checkNode(from);
    this.#checkNode(to);
    if (from === to) throw invalid(`ProxyNetwork: a link joins two different nodes, got ${JSON.stringify(from)} -> itself`);
    const link = this.#links.get(linkKey(from, to));
    if (link === undefined) throw invalid(`ProxyNetwork: no link ${from} -> ${to}`);
    return link;
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return JSON.stringify([from, to]);
}

function listenerKey(from: NodeId, to: NodeId, channel: ProxyChannel): string {
  return JSON.stringify([from, to, channel]);
}

function targetKey(to: NodeId, channel: ProxyChannel): string {
  return JSON.stringify([to, channel]);
}
