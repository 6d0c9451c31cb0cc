/**
 * The contract between the nemesis and whatever carries traffic between nodes. A *link* is
 * directed: `from -> to` is everything node `from` sends to node `to` — its Raft connection to
 * `to` (the dialer writes, the acceptor only answers handshakes and snapshot acks) and its HTTP
 * requests forwarded to `to`. A fault on a link applies to every byte of those connections, in
 * both directions, and never to the connections `to` opens towards `from`: that is the link
 * `to -> from`. A one-way partition is a fault on one of the two links of a pair.
 *
 * Two implementations: ProxyNetwork (proxy.ts, a TCP proxy per link, no privileges needed) and
 * NetnsNetwork (netns.ts, a network namespace per node and packet filters, root only).
 */
import type { NodeId } from '@raftkv/raft';

/**
 * What a faulty link does.
 * - `drop`: a blackhole. Bytes sent on the link vanish; connections stay open (or, for new ones,
 *   are accepted) and the sender learns nothing until the fault is lifted.
 * - `reset`: open connections are reset and new ones fail at once (the proxy accepts and resets
 *   them: ECONNRESET; packet filters refuse them: ECONNREFUSED).
 */
export type LinkFaultMode = 'drop' | 'reset';

export interface LinkDelay {
  /** Added to every chunk of bytes crossing the link, in ms (>= 0). */
  readonly delayMs: number;
  /** Each chunk waits delayMs plus a uniform draw from [0, jitterMs] (>= 0); byte order is kept. */
  readonly jitterMs: number;
}

/** The state of one directed link. */
export interface LinkState {
  readonly from: NodeId;
  readonly to: NodeId;
  /** null: the link carries traffic. */
  readonly fault: LinkFaultMode | null;
  readonly delay: LinkDelay | null;
}

export interface LinkControl {
  /** The node ids this network connects. */
  readonly nodes: readonly NodeId[];
  /** Whether `delay` works on this implementation (the namespace one may lack it). */
  readonly supportsDelay: boolean;
  /** Puts a fault on the directed link `from -> to` (replacing any fault it had). */
  cut(from: NodeId, to: NodeId, mode: LinkFaultMode): Promise<void>;
  /** Adds (or with null removes) delay and jitter on the directed link `from -> to`. */
  delay(from: NodeId, to: NodeId, delay: LinkDelay | null): Promise<void>;
  /** Lifts every fault and delay on every link. */
  healAll(): Promise<void>;
  /** The state of every directed link, in a stable order. */
  links(): LinkState[];
  /** Adds a node with links to and from every other (a machine joining); absent where the network is fixed at its start. */
  addNode?(id: NodeId): Promise<void>;
  /** Releases everything the network holds (listeners, namespaces, rules). Idempotent. */
  close(): Promise<void>;
}
