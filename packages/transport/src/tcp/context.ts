import type { Socket } from 'node:net';
import type { NodeId } from '@raftkv/raft';
import type { ResolvedTcpOptions } from '../options.js';
import type { SnapshotStreams, TransportHandlers, TransportLogger } from '../transport.js';
import type { StreamKind } from '../wire.js';

/** Transport-wide counters (per-peer counters live on each OutboundPeer). */
export interface Counters {
  received: number;
  framesRejected: number;
  handshakesRejected: number;
  droppedUnknownPeer: number;
  snapshotsReceived: number;
  snapshotsRejected: number;
}

/** Something that owns one accepted connection and can be told to go away. */
export interface InboundHandle {
  readonly peer: NodeId | null;
  readonly stream: StreamKind | null;
  destroy(): void;
}

/** What the pieces of the TCP transport share; implemented by TcpTransport. */
export interface TcpContext {
  readonly id: NodeId;
  readonly options: ResolvedTcpOptions;
  readonly log: TransportLogger;
  readonly counters: Counters;
  /** Null before start() and from the moment close() begins: nothing is reported then. */
  handlers(): TransportHandlers | null;
  snapshots(): SnapshotStreams | null;
  isKnownPeer(id: NodeId): boolean;
  /** Registers a socket so that close() destroys it and waits for it. */
  track(socket: Socket): void;
  /** Tells the owner, once per event-loop turn and never from inside send(), that `id` is unreachable. */
  reportUnreachable(id: NodeId): void;
  /** A handshake succeeded: the connection becomes the one stream of its kind from that peer (an older one is closed). */
  claimInbound(handle: InboundHandle): void;
  releaseInbound(handle: InboundHandle): void;
  /**
   * Snapshots from one peer are received one at a time: `receive` for a new stream starts only
   * once the previous one from that peer has settled. Returns the previous turn's end.
   */
  takeSnapshotTurn(peer: NodeId, done: Promise<unknown>): Promise<unknown>;
}
