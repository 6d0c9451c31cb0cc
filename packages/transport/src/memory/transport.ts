import { assert, type Message, type MsgSnap, type NodeId, type RaftKvError } from '@raftkv/raft';
import type { PeerStats, SnapshotStreams, Transport, TransportHandlers, TransportStats } from '../transport.js';
import type { Endpoint, Fabric } from './fabric.js';
import { UnreachableReports } from '../unreachable.js';

interface PeerCounters {
  sent: number;
  dropped: number;
  snapshotsSent: number;
  snapshotsFailed: number;
}

/**
 * One node's end of a MemoryNetwork (create it with `network.transport(id)`). It routes by node
 * id through its network, so `setPeers` has nothing to do: addresses mean nothing here. Every
 * message goes through the same encode, decode and validation as on the TCP wire, so what would
 * not survive TCP does not survive here either.
 */
export class MemoryTransport implements Transport {
  readonly id: NodeId;
  readonly #fabric: Fabric;
  #state: 'new' | 'started' | 'closed' = 'new';
  #handlers: TransportHandlers | null = null;
  #snapshots: SnapshotStreams | null = null;
  readonly #peers = new Map<NodeId, PeerCounters>();
  readonly #snapshotsInFlight = new Set<NodeId>();
  readonly #unreachable = new UnreachableReports((id) => this.#handlers?.onUnreachable(id));
  #received = 0;
  #framesRejected = 0;
  #droppedUnknownPeer = 0;
  #snapshotsReceived = 0;
  #snapshotsRejected = 0;
  readonly #endpoint: Endpoint;

  /** Use `MemoryNetwork.transport(id)`. */
  constructor(id: NodeId, fabric: Fabric) {
    this.id = id;
    this.#fabric = fabric;
    this.#endpoint = {
      id,
      isUp: () => this.#state === 'started',
      deliver: (message) => this.#deliver(message),
      rejectFrame: (error) => this.#rejectFrame(error),
      snapshots: () => this.#snapshots,
      snapshotRejected: () => this.#snapshotsRejected++,
      snapshotReceived: () => this.#snapshotsReceived++,
    };
    fabric.attach(this.#endpoint);
  }

  start(handlers: TransportHandlers, snapshots: SnapshotStreams): Promise<void> {
    assert(this.#state === 'new', `start() on a ${this.#state} memory transport`);
    this.#handlers = handlers;
    this.#snapshots = snapshots;
    this.#state = 'started';
    return Promise.resolve();
  }

  send(message: Message): void {
    if (this.#state !== 'started') return;
    assert(message.from === this.id, `message from ${message.from} sent through the transport of ${this.id}`);
    if (message.type === 'MsgSnap') return this.#sendSnapshot(message);
    const counters = this.#counters(message.to);
    const outcome = this.#fabric.route(this.id, message);
    switch (outcome) {
      case 'scheduled':
        counters.sent++;
        return;
      case 'lost':
        counters.dropped++;
        return;
      case 'unknown':
        this.#peers.delete(message.to);
        this.#droppedUnknownPeer++;
        return this.#unreachable.add(message.to);
      case 'full':
      case 'unreachable':
        counters.dropped++;
        return this.#unreachable.add(message.to);
    }
  }

  /** Nothing to do: the network routes by id. */
  setPeers(_peers: ReadonlyMap<NodeId, string>): void {}

  stats(): TransportStats {
    const peers = new Map<NodeId, PeerStats>();
    for (const id of this.#fabric.peerIds(this.id)) {
      const c = this.#counters(id);
      const queued = this.#fabric.inFlight(this.id, id);
      peers.set(id, { ...c, queued, queuedBytes: 0, connected: this.#fabric.linkUp(this.id, id), reconnects: 0, refused: 0 });
    }
    return {
      peers,
      received: this.#received,
      framesRejected: this.#framesRejected,
      handshakesRejected: 0,
      droppedUnknownPeer: this.#droppedUnknownPeer,
      snapshotsReceived: this.#snapshotsReceived,
      snapshotsRejected: this.#snapshotsRejected,
    };
  }

  close(): Promise<void> {
    if (this.#state !== 'closed') {
      this.#state = 'closed';
      this.#handlers = null;
      this.#snapshots = null;
      this.#fabric.detach(this.#endpoint);
    }
    return Promise.resolve();
  }

  #sendSnapshot(message: MsgSnap): void {
    const counters = this.#counters(message.to);
    const snapshots = this.#snapshots;
    // At most one snapshot in flight per peer; the first one's outcome is reported.
    if (snapshots === null || this.#snapshotsInFlight.has(message.to)) {
      counters.dropped++;
      return;
    }
    this.#snapshotsInFlight.add(message.to);
    void this.#fabric
      .transfer(this.id, message, snapshots)
      .catch(() => false)
      .then((ok) => {
        this.#snapshotsInFlight.delete(message.to);
        if (ok) counters.snapshotsSent++;
        else counters.snapshotsFailed++;
        this.#handlers?.onSnapshotStatus(message.to, ok);
      });
  }

  #deliver(message: Message): void {
    this.#received++;
    this.#handlers?.onMessage(message);
  }

  #rejectFrame(_error: RaftKvError): void {
    this.#framesRejected++;
  }

  #counters(id: NodeId): PeerCounters {
    let c = this.#peers.get(id);
    if (c === undefined) {
      c = { sent: 0, dropped: 0, snapshotsSent: 0, snapshotsFailed: 0 };
      this.#peers.set(id, c);
    }
    return c;
  }

}
