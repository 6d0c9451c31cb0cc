import type { MsgSnap, NodeId, Message, RaftKvError } from '@raftkv/raft';
import type { SnapshotStreams } from '../transport.js';

/** What a MemoryTransport shows its network. Internal to the memory transport. */
export interface Endpoint {
  readonly id: NodeId;
  /** Started and not closed. */
  isUp(): boolean;
  /** A message arrived: count it and hand it to onMessage. */
  deliver(message: Message): void;
  /** A frame failed validation on arrival (the sender built an invalid message). */
  rejectFrame(error: RaftKvError): void;
  snapshots(): SnapshotStreams | null;
  /** An incoming snapshot stream failed (receive rejected, or the stream broke off). */
  snapshotRejected(): void;
  /** An incoming snapshot stream was received whole (receive resolved). */
  snapshotReceived(): void;
}

/** What happened to one message at send time. */
export type RouteOutcome = 'scheduled' | 'lost' | 'full' | 'unreachable' | 'unknown';

/** The network as a MemoryTransport sees it. Internal to the memory transport. */
export interface Fabric {
  attach(endpoint: Endpoint): void;
  detach(endpoint: Endpoint): void;
  route(from: NodeId, message: Message): RouteOutcome;
  /** Streams a snapshot from `source` into the addressee's `receive`; resolves whether it was delivered. */
  transfer(from: NodeId, message: MsgSnap, source: SnapshotStreams): Promise<boolean>;
  /** Ids of the other endpoints. */
  peerIds(self: NodeId): NodeId[];
  /** Whether `to` is up and the link from -> to is not cut. */
  linkUp(from: NodeId, to: NodeId): boolean;
  /** Messages scheduled on from -> to and not yet arrived. */
  inFlight(from: NodeId, to: NodeId): number;
}
