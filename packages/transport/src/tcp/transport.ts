import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { assert, type Message, type NodeId } from '@raftkv/raft';
import { TransportLog } from '../log.js';
import { parseAddress, resolveTcpOptions, type ResolvedTcpOptions, type TcpTransportOptions } from '../options.js';
import type { PeerStats, SnapshotStreams, Transport, TransportHandlers, TransportLogger, TransportStats } from '../transport.js';
import type { Counters, InboundHandle, TcpContext } from './context.js';
import { InboundConnection } from './inbound.js';
import { OutboundPeer } from './peer.js';
import { UnreachableReports } from '../unreachable.js';

type Lifecycle = 'new' | 'listening' | 'started' | 'closing' | 'closed';

/**
 * The TCP transport. Connections: one per direction per peer pair. We dial every peer and only
 * write messages to that connection (the peer writes back nothing but a refusal); the peer dials
 * us for its messages. This needs no tie-break between two nodes dialling each other at once,
 * and each side's reconnect logic owns exactly one socket. A snapshot goes on a connection of
 * its own (see SnapshotSender). Wire format: wire.ts.
 */
export class TcpTransport implements Transport {
  readonly id: NodeId;
  readonly #options: ResolvedTcpOptions;
  readonly #log: TransportLogger;
  #lifecycle: Lifecycle = 'new';
  #server: Server | null = null;
  #listening: Promise<{ host: string; port: number }> | null = null;
  #closing: Promise<void> | null = null;
  #handlers: TransportHandlers | null = null;
  #snapshots: SnapshotStreams | null = null;
  #addresses: ReadonlyMap<NodeId, string>;
  readonly #peers = new Map<NodeId, OutboundPeer>();
  readonly #sockets = new Set<Socket>();
  /** Connections accepted before start(): held paused, handled once handlers exist. */
  readonly #pending: Socket[] = [];
  readonly #inbound = new Map<string, InboundHandle>();
  readonly #snapshotTurns = new Map<NodeId, Promise<unknown>>();
  readonly #unreachable = new UnreachableReports((id) => this.#handlers?.onUnreachable(id));
  readonly #counters: Counters = { received: 0, framesRejected: 0, handshakesRejected: 0, droppedUnknownPeer: 0, snapshotsReceived: 0, snapshotsRejected: 0 };
  readonly #ctx: TcpContext;

  constructor(options: TcpTransportOptions) {
    this.#options = resolveTcpOptions(options);
    this.id = this.#options.id;
    this.#log = this.#options.logger;
    this.#addresses = withoutSelf(this.#options.peers, this.id);
    this.#ctx = this.#makeContext();
  }

  /** Binds the listening socket (idempotent) and returns its address; start() calls it. */
  listen(): Promise<{ host: string; port: number }> {
    assert(this.#lifecycle === 'new' || this.#listening !== null, `listen() on a ${this.#lifecycle} transport`);
    this.#listening ??= this.#bind();
    return this.#listening;
  }

  /** The bound address (after listen() or start() resolved). */
  address(): { host: string; port: number } {
    const address = this.#server?.address();
    assert(typeof address === 'object' && address !== null, 'address() before the transport is listening');
    return { host: (address as AddressInfo).address, port: (address as AddressInfo).port };
  }

  async start(handlers: TransportHandlers, snapshots: SnapshotStreams): Promise<void> {
    assert(this.#handlers === null && this.#lifecycle !== 'closing' && this.#lifecycle !== 'closed', `start() on a ${this.#lifecycle} transport`);
    this.#handlers = handlers;
    this.#snapshots = snapshots;
    await this.listen();
    if (this.#lifecycle !== 'listening') return; // closed meanwhile
    this.#lifecycle = 'started';
    this.setPeers(this.#addresses);
    for (const socket of this.#pending.splice(0)) this.#accept(socket);
  }

  send(message: Message): void {
    if (this.#lifecycle !== 'started') return;
    assert(message.from === this.id, `message from ${message.from} sent through the transport of ${this.id}`);
    const peer = this.#peers.get(message.to);
    if (peer === undefined) {
      this.#counters.droppedUnknownPeer++;
      this.#ctx.reportUnreachable(message.to);
      // Every MsgSnap gets an outcome (bar a duplicate of one in flight), so the leader never waits on it.
      if (message.type === 'MsgSnap') setImmediate(() => this.#handlers?.onSnapshotStatus(message.to, false));
      return;
    }
    if (message.type === 'MsgSnap') peer.sendSnapshot(message);
    else peer.enqueue(message);
  }

  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    for (const [id, address] of peers) parseAddress(address, `peer ${id}`); // all or nothing
    this.#addresses = withoutSelf(peers, this.id);
    if (this.#lifecycle !== 'started') return;
    for (const [id, peer] of this.#peers) {
      if (this.#addresses.has(id)) continue;
      peer.close();
      this.#peers.delete(id);
      for (const handle of this.#inbound.values()) if (handle.peer === id) handle.destroy();
    }
    for (const [id, address] of this.#addresses) {
      const peer = this.#peers.get(id);
      if (peer !== undefined) {
        peer.setAddress(address);
        continue;
      }
      const created = new OutboundPeer(this.#ctx, id, address);
      this.#peers.set(id, created);
      created.start();
    }
  }

  stats(): TransportStats {
    const peers = new Map<NodeId, PeerStats>();
    for (const [id, peer] of this.#peers) peers.set(id, peer.stats());
    return { ...this.#counters, peers };
  }

  /** Stops listening, closes every connection and resolves once all are closed; no timer survives it. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#lifecycle = 'closing';
    this.#handlers = null;
    this.#snapshots = null;
    for (const peer of this.#peers.values()) peer.close();
    await this.#listening?.catch(() => {}); // a bind in progress finishes first, so that it is closed too
    const server = this.#server;
    const serverClosed = server === null || !server.listening ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    for (const socket of this.#pending.splice(0)) socket.destroy();
    // A socket leaves #sockets on its 'close' event, which net.Socket emits once the handle is
    // really closed (`socket.closed` turns true earlier, at destroy()).
    await Promise.all([...this.#sockets].map((s) => once(s, 'close')));
    await serverClosed;
    this.#lifecycle = 'closed';
  }

  async #bind(): Promise<{ host: string; port: number }> {
    const server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.#onConnection(socket));
    this.#server = server;
    server.maxConnections = this.#options.inboundConnectionsMax;
    server.on('drop', (info) => this.#log.warn({ remote: `${info?.remoteAddress ?? '?'}:${info?.remotePort ?? '?'}` }, TransportLog.inboundLimit));
    const { host, port } = this.#options.listen;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // After the bind, an accept error (EMFILE, ...) is logged; the server keeps listening.
    server.on('error', (error) => this.#log.warn({ err: error }, TransportLog.acceptFailed));
    if (this.#lifecycle === 'new') this.#lifecycle = 'listening';
    return this.address();
  }

  #onConnection(socket: Socket): void {
    if (this.#lifecycle === 'started') return this.#accept(socket);
    if (this.#lifecycle === 'listening' || this.#lifecycle === 'new') {
      socket.on('error', () => {});
      this.#pending.push(socket);
      return;
    }
    socket.destroy();
  }

  #accept(socket: Socket): void {
    if (socket.destroyed) return;
    new InboundConnection(this.#ctx, socket);
  }

  #makeContext(): TcpContext {
    return {
      id: this.id,
      options: this.#options,
      log: this.#log,
      counters: this.#counters,
      handlers: () => this.#handlers,
      snapshots: () => this.#snapshots,
      isKnownPeer: (id) => this.#addresses.has(id),
      track: (socket) => {
        if (this.#lifecycle === 'closing' || this.#lifecycle === 'closed') socket.destroy();
        this.#sockets.add(socket);
        socket.once('close', () => this.#sockets.delete(socket));
      },
      reportUnreachable: (id) => this.#unreachable.add(id),
      claimInbound: (handle) => {
        const key = `${handle.peer ?? ''}\u0000${handle.stream ?? ''}`;
        const previous = this.#inbound.get(key);
        this.#inbound.set(key, handle);
        if (previous !== undefined && previous !== handle) previous.destroy();
      },
      releaseInbound: (handle) => {
        const key = `${handle.peer ?? ''}\u0000${handle.stream ?? ''}`;
        if (this.#inbound.get(key) === handle) this.#inbound.delete(key);
      },
      takeSnapshotTurn: (peer, done) => {
        const previous = this.#snapshotTurns.get(peer) ?? Promise.resolve();
        const turn = done.then(
          () => {},
          () => {},
        );
        this.#snapshotTurns.set(peer, turn);
        void turn.then(() => {
          if (this.#snapshotTurns.get(peer) === turn) this.#snapshotTurns.delete(peer);
        });
        return previous;
      },
    };
  }
}

function withoutSelf(peers: ReadonlyMap<NodeId, string>, self: NodeId): ReadonlyMap<NodeId, string> {
  const copy = new Map(peers);
  copy.delete(self);
  return copy;
}

