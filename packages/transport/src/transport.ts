import type { Message, MsgSnap, NodeId, SnapshotMeta } from '@raftkv/raft';

/**
 * Where a snapshot's bytes come from and go to. The transport never holds a whole snapshot in
 * memory: the sender pulls chunks one by one and the receiver consumes them as they arrive.
 */
export interface SnapshotStreams {
  /** Sender side: the state machine's data for the snapshot at meta.index, as chunks (back-pressure: pulled one by one). */
  open(meta: SnapshotMeta): AsyncIterable<Uint8Array>;
  /**
   * Receiver side: consume the chunks into a fresh place; resolve when complete and durable,
   * reject on any failure. The iterable throws a `SNAPSHOT_TRANSFER_FAILED` RaftKvError when the
   * stream breaks off or does not verify; `receive` must then reject and discard what it wrote.
   * `receive` must consume the chunks to the end before it resolves. `message` is the MsgSnap
   * the stream belongs to (its `snapshot.data` is empty); it is never handed to `onMessage`:
   * the receiver steps it into its core itself, once the image is in place.
   */
  receive(message: MsgSnap, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

/**
 * What the transport tells its owner. Handlers are called from I/O callbacks, never from inside
 * `send`. An exception thrown by a handler is a bug of the caller and is not caught.
 */
export interface TransportHandlers {
  /** A message arrived. Never a MsgSnap: those go to `snapshots.receive` with their stream. */
  onMessage(message: Message): void;
  /** Outcome of sending a MsgSnap to a peer (the node calls RawNode.reportSnapshot). */
  onSnapshotStatus(to: NodeId, ok: boolean): void;
  /** A peer could not be reached (the node calls RawNode.reportUnreachable). */
  onUnreachable(to: NodeId): void;
}

/** Counters of one peer link, as seen by the sender. */
export interface PeerStats {
  /** Messages waiting in the send queue (never above `sendQueueMax`). */
  readonly queued: number;
  /** Encoded bytes waiting in the send queue (never above `sendQueueBytesMax`). */
  readonly queuedBytes: number;
  /** Messages handed to the connection. */
  readonly sent: number;
  /** Messages dropped: queue full, too large, or discarded after a failed connection attempt. */
  readonly dropped: number;
  /** Whether the outgoing link is up now. */
  readonly connected: boolean;
  /** Connections established after the first one. */
  readonly reconnects: number;
  readonly snapshotsSent: number;
  readonly snapshotsFailed: number;
  /** Our handshakes the peer refused (another cluster id, or it does not know us). */
  readonly refused: number;
}

export interface TransportStats {
  /** One entry per known peer. */
  readonly peers: ReadonlyMap<NodeId, PeerStats>;
  /** Messages handed to `onMessage`. */
  readonly received: number;
  /** Connections closed for a bad frame: garbage, truncated, oversized, or an invalid message. */
  readonly framesRejected: number;
  /** Connections refused at the handshake: another cluster, another node, or an unknown peer. */
  readonly handshakesRejected: number;
  /** Messages for a node that is not a known peer (dropped). */
  readonly droppedUnknownPeer: number;
  readonly snapshotsReceived: number;
  /** Incoming snapshot streams that broke off, did not verify, or whose `receive` rejected. */
  readonly snapshotsRejected: number;
}

/**
 * Moves Raft messages between nodes. Delivery is best effort: messages may be lost, delayed or
 * (in fault-injecting implementations) duplicated and reordered, all of which Raft tolerates.
 */
export interface Transport {
  readonly id: NodeId;
  start(handlers: TransportHandlers, snapshots: SnapshotStreams): Promise<void>;
  /** Never blocks, never throws for network reasons: a message that cannot be queued is dropped (Raft tolerates loss) and counted. */
  send(message: Message): void;
  /** Replaces the set of peers and their addresses ("host:port"); our own id is ignored. */
  setPeers(peers: ReadonlyMap<NodeId, string>): void;
  stats(): TransportStats;
  close(): Promise<void>;
}

/** The subset of a pino logger the transport uses: fixed message strings, fields first. */
export interface TransportLogger {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}
