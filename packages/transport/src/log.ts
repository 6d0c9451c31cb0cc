/**
 * The transport's log lines. Messages are fixed strings (search for them); the variable parts
 * go in the fields: `peer`, `remote` (address of the other end), `reason`, `code`, and `err`
 * for an Error (pino's standard serializer key).
 */
export const TransportLog = {
  /** warn: a connection sent garbage, a truncated or oversized frame, or an invalid message; it was closed. */
  frameRejected: 'transport: invalid frame, connection closed',
  /** warn: an accepted connection failed the handshake (another cluster, another node, unknown peer); it was refused. */
  handshakeRejected: 'transport: handshake refused, connection closed',
  /** warn: a peer refused our handshake. */
  refusedByPeer: 'transport: peer refused our handshake',
  /** warn: the accept limit was reached; the new connection was closed. */
  inboundLimit: 'transport: too many inbound connections, connection closed',
  /** warn: an accepted connection sent no handshake in time. */
  handshakeTimeout: 'transport: no handshake in time, connection closed',
  /** info */
  connected: 'transport: connected to peer',
  /** info */
  connectionLost: 'transport: connection to peer lost',
  /** debug (repeats at the back-off rate while a peer is down) */
  dialFailed: 'transport: could not connect to peer',
  /** warn, once per episode: the send queue of a peer is full and new messages are dropped. */
  queueFull: 'transport: send queue full, dropping new messages',
  /** warn: a message does not fit in one frame (or does not encode). */
  messageTooLarge: 'transport: message larger than frameBytesMax dropped',
  /** warn: the listening socket failed to accept a connection (EMFILE, ...); it keeps listening. */
  acceptFailed: 'transport: accept failed',
  /** info */
  snapshotSent: 'transport: snapshot sent',
  /** warn */
  snapshotSendFailed: 'transport: snapshot send failed',
  /** info */
  snapshotReceived: 'transport: snapshot received',
  /** warn */
  snapshotReceiveFailed: 'transport: snapshot receive failed',
} as const;
