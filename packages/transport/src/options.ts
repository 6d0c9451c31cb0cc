import { DECODE_BYTES_MAX } from '@raftkv/codec';
import { ErrorCode, RaftKvError, type NodeId } from '@raftkv/raft';
import type { TransportLogger } from './transport.js';
import { FRAME_LENGTH_LIMIT } from './wire.js';

export interface TcpTransportOptions {
  readonly id: NodeId;
  /** Every node of one cluster has the same cluster id; connections from another cluster are refused. */
  readonly clusterId: string;
  /** Where to accept peer connections; port 0 lets the OS choose (see `address()`). */
  readonly listen: { readonly host: string; readonly port: number };
  /** Peer ids and their "host:port" addresses; our own id is ignored. */
  readonly peers?: ReadonlyMap<NodeId, string>;
  /** Largest frame body accepted or sent (default 16 MiB). A larger declared length closes the connection. */
  readonly frameBytesMax?: number;
  /** Messages queued per peer (default 4096); beyond it new messages are dropped. */
  readonly sendQueueMax?: number;
  /** Encoded bytes queued per peer (default 64 MiB); beyond it new messages are dropped. */
  readonly sendQueueBytesMax?: number;
  /** Bytes of queued frames concatenated into one socket write (default 1 MiB). */
  readonly writeBatchBytesMax?: number;
  /** Largest snapshot chunk per frame (default 1 MiB); larger chunks from `open()` are split. */
  readonly snapshotChunkBytes?: number;
  /** Received snapshot bytes buffered for a busy consumer before the socket is paused (default 4 MiB). */
  readonly snapshotBufferBytesMax?: number;
  /** A snapshot transfer with no progress in either direction for this long fails (default 30 s). */
  readonly snapshotIdleTimeoutMs?: number;
  /** Reconnect back-off: the first retry waits about this long (default 100 ms). */
  readonly reconnectBackoffMinMs?: number;
  /** Reconnect back-off: the ceiling (default 5 s). */
  readonly reconnectBackoffMaxMs?: number;
  /** A connection attempt that has not completed by then fails (default 5 s). */
  readonly dialTimeoutMs?: number;
  /** An accepted connection that sends no handshake within this time is closed (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** Accepted connections at most, handshaken or not (default 1024). */
  readonly inboundConnectionsMax?: number;
  /** Source of back-off jitter in [0, 1) (default Math.random). */
  readonly random?: () => number;
  /** A pino-compatible logger (default: silent). */
  readonly logger?: TransportLogger;
  /**
   * Identities (default: none checked). This node presents `uid` (its data directory's random
   * id) in every handshake; a peer's is recorded the first time it is seen (`peers.remember`)
   * and any later handshake under that peer id with another one is refused: a node whose data
   * directory was wiped forgot its votes and its log, and must not take part under its old id.
   */
  readonly identity?: TransportIdentity;
}

/** Where a transport keeps the identities it has seen (the node's log store). */
export interface PeerIdentityBook {
  known(peer: NodeId): string | undefined;
  /** Records `uid` for `peer` durably; resolves 'mismatch' if another was recorded meanwhile. */
  remember(peer: NodeId, uid: string): Promise<'ok' | 'mismatch'>;
}

export interface TransportIdentity {
  readonly uid: string;
  readonly peers: PeerIdentityBook;
}

export const TCP_DEFAULTS = {
  frameBytesMax: 16 * 1024 * 1024,
  sendQueueMax: 4096,
  sendQueueBytesMax: 64 * 1024 * 1024,
  writeBatchBytesMax: 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  snapshotBufferBytesMax: 4 * 1024 * 1024,
  snapshotIdleTimeoutMs: 30_000,
  reconnectBackoffMinMs: 100,
  reconnectBackoffMaxMs: 5_000,
  dialTimeoutMs: 5_000,
  handshakeTimeoutMs: 10_000,
  inboundConnectionsMax: 1024,
} as const;

/** Room for the msgpack wrapping of a snapshot chunk inside a frame. */
export const CHUNK_FRAME_OVERHEAD_BYTES = 64;
/** Longest data-directory id accepted in a handshake. */
export const UID_LENGTH_MAX = 128;
/** Smallest frameBytesMax that leaves room for a handshake and ordinary messages. */
export const FRAME_BYTES_MIN = 4096;

export interface ResolvedTcpOptions extends Required<Omit<TcpTransportOptions, 'peers' | 'logger' | 'snapshotChunkBytes' | 'identity'>> {
  snapshotChunkBytes: number;
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly logger: TransportLogger;
  readonly identity: TransportIdentity | null;
}

const silent = (): void => {};
export const SILENT_LOGGER: TransportLogger = { warn: silent, info: silent, debug: silent };

function fail(message: string): never {
  throw new RaftKvError(ErrorCode.INVALID_CONFIG, message);
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!(Number.isInteger(value) && value >= min && value <= max)) fail(`${name} must be an integer in [${min}, ${max}], got ${value}`);
}

export function resolveTcpOptions(options: TcpTransportOptions): ResolvedTcpOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<ResolvedTcpOptions>;
  const r: ResolvedTcpOptions = {
    ...TCP_DEFAULTS,
    random: Math.random,
    logger: SILENT_LOGGER,
    peers: new Map(),
    identity: null,
    id: options.id,
    clusterId: options.clusterId,
    listen: options.listen,
    ...defined,
  };
  // An unset chunk size follows a small frameBytesMax down rather than failing the check below.
  if (options.snapshotChunkBytes === undefined) {
    r.snapshotChunkBytes = Math.min(TCP_DEFAULTS.snapshotChunkBytes, r.frameBytesMax - CHUNK_FRAME_OVERHEAD_BYTES);
  }
  if (r.id === '') fail('id must not be empty');
  if (r.clusterId === '') fail('clusterId must not be empty');
  checkInteger('listen.port', r.listen.port, 0, 65535);
  checkInteger('frameBytesMax', r.frameBytesMax, FRAME_BYTES_MIN, Math.min(FRAME_LENGTH_LIMIT, DECODE_BYTES_MAX));
  checkInteger('sendQueueMax', r.sendQueueMax, 1, 1 << 24);
  checkInteger('sendQueueBytesMax', r.sendQueueBytesMax, r.frameBytesMax, Number.MAX_SAFE_INTEGER);
  checkInteger('writeBatchBytesMax', r.writeBatchBytesMax, 1, Number.MAX_SAFE_INTEGER);
  checkInteger('snapshotChunkBytes', r.snapshotChunkBytes, 1, r.frameBytesMax - CHUNK_FRAME_OVERHEAD_BYTES);
  checkInteger('snapshotBufferBytesMax', r.snapshotBufferBytesMax, 1, Number.MAX_SAFE_INTEGER);
  checkInteger('snapshotIdleTimeoutMs', r.snapshotIdleTimeoutMs, 1, 2 ** 31 - 1);
  checkInteger('reconnectBackoffMinMs', r.reconnectBackoffMinMs, 1, 2 ** 31 - 1);
  checkInteger('reconnectBackoffMaxMs', r.reconnectBackoffMaxMs, r.reconnectBackoffMinMs, 2 ** 31 - 1);
  checkInteger('dialTimeoutMs', r.dialTimeoutMs, 1, 2 ** 31 - 1);
  checkInteger('handshakeTimeoutMs', r.handshakeTimeoutMs, 1, 2 ** 31 - 1);
  checkInteger('inboundConnectionsMax', r.inboundConnectionsMax, 1, 1 << 20);
  if (r.identity !== null && !(r.identity.uid !== '' && r.identity.uid.length <= UID_LENGTH_MAX)) fail(`identity.uid must be 1 to ${UID_LENGTH_MAX} characters`);
  for (const [peer, address] of r.peers) parseAddress(address, `peers.${peer}`);
  return r;
}

/** "host:port", "[v6]:port" -> parts; throws INVALID_CONFIG. */
export function parseAddress(address: string, what: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  let host = colon > 0 ? address.slice(0, colon) : '';
  const portText = address.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(portText);
  if (host === '' || !/^\d+$/.test(portText) || !(port >= 1 && port <= 65535)) fail(`${what}: "${address}" is not a host:port address`);
  return { host, port };
}

/** The inverse of parseAddress. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
