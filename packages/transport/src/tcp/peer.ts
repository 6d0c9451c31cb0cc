import { connect, type Socket } from 'node:net';
import { assert, type Message, type MsgSnap, type NodeId } from '@raftkv/raft';
import { Backoff } from '../backoff.js';
import { TransportLog } from '../log.js';
import { parseAddress } from '../options.js';
import { FrameQueue } from '../queue.js';
import type { PeerStats } from '../transport.js';
import { invalid } from '../validate.js';
import { encodeBody, encodeFrame, frameHeader, parseAcceptorFrame, PROTOCOL_VERSION, type Hello } from '../wire.js';
import type { TcpContext } from './context.js';
import { readFrames } from './frames.js';
import { SnapshotSender } from './snapshot-send.js';

type LinkState = 'idle' | 'dialing' | 'connected' | 'backoff' | 'closed';

/**
 * Our outgoing link to one peer: the messages stream (one connection, which we dial and only
 * write to; the peer dials us for the other direction) plus at most one snapshot transfer on a
 * connection of its own.
 *
 * The send queue is bounded by count and bytes and drops the *newest* message when full. Raft
 * retransmits anyway; dropping the newest keeps the queued run of appends contiguous, so
 * everything already queued is still accepted by the follower, whereas dropping the oldest would
 * punch a hole at the front and make every queued append after it fail the log-matching check
 * (paper section 5.3). A connection attempt that fails discards what was queued before it began:
 * those messages have waited out a whole attempt and Raft has sent fresher ones since.
 */
export class OutboundPeer {
  readonly id: NodeId;
  readonly #ctx: TcpContext;
  #address: { host: string; port: number };
  readonly #queue: FrameQueue;
  readonly #backoff: Backoff;
  #state: LinkState = 'idle';
  #socket: Socket | null = null;
  /** False while the socket's buffer is over its high-water mark (until 'drain'). */
  #writable = false;
  #flushScheduled = false;
  #timer: NodeJS.Timeout | null = null;
  /** Frames queued before the current connection attempt began have seq below this. */
  #attemptSeq = 0;
  #overflowReported = false;
  #snapshot: SnapshotSender | null = null;
  #sent = 0;
  #dropped = 0;
  #connectionCount = 0;
  #snapshotsSent = 0;
  #snapshotsFailed = 0;
  #refused = 0;

  constructor(ctx: TcpContext, id: NodeId, address: string) {
    this.#ctx = ctx;
    this.id = id;
    this.#address = parseAddress(address, `peer ${id}`);
    this.#queue = new FrameQueue(ctx.options.sendQueueMax, ctx.options.sendQueueBytesMax);
    this.#backoff = new Backoff(ctx.options.reconnectBackoffMinMs, ctx.options.reconnectBackoffMaxMs, ctx.options.random);
  }

  get address(): string {
    return `${this.#address.host}:${this.#address.port}`;
  }

  start(): void {
    if (this.#state === 'idle') this.#dial();
  }

  /** A new address: drop the current connection and dial the new one at once. */
  setAddress(address: string): void {
    const parsed = parseAddress(address, `peer ${this.id}`);
    if (parsed.host === this.#address.host && parsed.port === this.#address.port) return;
    this.#address = parsed;
    if (this.#state === 'closed' || this.#state === 'idle') return;
    this.#backoff.reset();
    this.#clearTimer();
    const socket = this.#socket;
    this.#socket = null;
    socket?.destroy();
    this.#dial();
  }

  enqueue(message: Message): void {
    if (this.#state === 'closed') return;
    if (this.#queue.isFull()) return this.#overflow();
    let body: Buffer;
    try {
      body = encodeBody({ t: 'msg', m: message }, this.#ctx.options.frameBytesMax);
    } catch (error) {
      this.#dropped++;
      this.#ctx.log.warn({ peer: this.id, type: message.type, err: error }, TransportLog.messageTooLarge);
      return;
    }
    if (!this.#queue.offer(body)) return this.#overflow();
    this.#scheduleFlush();
  }

  /** At most one snapshot in flight: a second MsgSnap meanwhile is dropped; the first one's outcome is reported. */
  sendSnapshot(message: MsgSnap): void {
    if (this.#state === 'closed') return;
    if (this.#snapshot !== null) {
      this.#dropped++;
      this.#ctx.log.debug({ peer: this.id, index: message.snapshot.meta.index }, TransportLog.snapshotSendFailed);
      return;
    }
    const sender = new SnapshotSender(this.#ctx, this.id, this.#address, message);
    this.#snapshot = sender;
    sender.run().then(
      () => this.#snapshotDone(sender, true),
      () => this.#snapshotDone(sender, false),
    );
  }

  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#clearTimer();
    this.#socket?.destroy();
    this.#socket = null;
    this.#snapshot?.abort('transport closed');
    this.#dropped += this.#queue.clear();
  }

  stats(): PeerStats {
    return {
      queued: this.#queue.length,
      queuedBytes: this.#queue.bytes,
      sent: this.#sent,
      dropped: this.#dropped,
      connected: this.#state === 'connected',
      reconnects: Math.max(0, this.#connectionCount - 1),
      snapshotsSent: this.#snapshotsSent,
      snapshotsFailed: this.#snapshotsFailed,
      refused: this.#refused,
    };
  }

  #snapshotDone(sender: SnapshotSender, ok: boolean): void {
    assert(this.#snapshot === sender, `snapshot to ${this.id}: a different transfer finished`);
    this.#snapshot = null;
    if (ok) this.#snapshotsSent++;
    else this.#snapshotsFailed++;
    this.#ctx.handlers()?.onSnapshotStatus(this.id, ok);
  }

  #overflow(): void {
    this.#dropped++;
    if (this.#overflowReported) return;
    this.#overflowReported = true;
    this.#ctx.log.warn({ peer: this.id, queued: this.#queue.length, queuedBytes: this.#queue.bytes }, TransportLog.queueFull);
    this.#ctx.reportUnreachable(this.id);
  }

  #dial(): void {
    assert(this.#socket === null, `dial ${this.id} with a socket open`);
    this.#state = 'dialing';
    this.#writable = false;
    this.#attemptSeq = this.#queue.nextSeq;
    const { dialTimeoutMs, frameBytesMax } = this.#ctx.options;
    const socket = connect({ host: this.#address.host, port: this.#address.port, noDelay: true, keepAlive: true });
    this.#socket = socket;
    this.#ctx.track(socket);
    socket.setTimeout(dialTimeoutMs, () => socket.destroy());
    socket.once('connect', () => this.#onConnect(socket));
    socket.on('drain', () => {
      if (socket !== this.#socket) return;
      this.#writable = true;
      this.#scheduleFlush();
    });
    let lastError: Error | null = null;
    socket.on('error', (error) => (lastError = error));
    socket.on('close', () => this.#onClose(socket, lastError));
    // The acceptor writes to this connection only to refuse it.
    readFrames(
      socket,
      frameBytesMax,
      (value) => {
        const frame = parseAcceptorFrame(value);
        if (frame.t !== 'reject') invalid('frame.t', "'reject', the only frame an acceptor sends on a messages stream");
        this.#refused++;
        this.#ctx.log.warn({ peer: this.id, remote: this.address, reason: frame.reason, code: frame.code }, TransportLog.refusedByPeer);
        socket.destroy();
      },
      (error) => {
        this.#ctx.counters.framesRejected++;
        this.#ctx.log.warn({ peer: this.id, remote: this.address, code: error.code, reason: error.message }, TransportLog.frameRejected);
        socket.destroy();
      },
      () => socket.destroy(),
    );
  }

  #onConnect(socket: Socket): void {
    if (socket !== this.#socket || this.#state === 'closed') return;
    socket.setTimeout(0);
    this.#state = 'connected';
    this.#writable = true;
    this.#connectionCount++;
    this.#overflowReported = false;
    this.#backoff.reset();
    this.#ctx.log.info({ peer: this.id, remote: this.address }, TransportLog.connected);
    const { id, options } = this.#ctx;
    const hello: Hello = { v: PROTOCOL_VERSION, clusterId: options.clusterId, from: id, to: this.id, stream: 'messages', ...(options.identity === null ? {} : { uid: options.identity.uid }) };
    this.#writable = socket.write(encodeFrame(hello, options.frameBytesMax));
    this.#flush();
  }

  #onClose(socket: Socket, error: Error | null): void {
    if (socket !== this.#socket) return;
    this.#socket = null;
    if (this.#state === 'closed') return;
    if (this.#state === 'connected') {
      this.#ctx.log.info({ peer: this.id, remote: this.address, err: error }, TransportLog.connectionLost);
    } else {
      const dropped = this.#queue.dropBefore(this.#attemptSeq);
      this.#dropped += dropped;
      this.#ctx.log.debug({ peer: this.id, remote: this.address, err: error, dropped }, TransportLog.dialFailed);
    }
    this.#state = 'backoff';
    this.#writable = false;
    this.#ctx.reportUnreachable(this.id);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#state === 'backoff') this.#dial();
    }, this.#backoff.nextDelayMs());
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Sends are accumulated and written once per event-loop turn, in batches. */
  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#state !== 'connected' || !this.#writable) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Writes queued frames, concatenated up to writeBatchBytesMax per write, until the socket pushes back. */
  #flush(): void {
    const socket = this.#socket;
    const batchBytesMax = this.#ctx.options.writeBatchBytesMax;
    while (socket !== null && this.#state === 'connected' && this.#writable && this.#queue.length > 0) {
      const parts: Buffer[] = [];
      let bytes = 0;
      for (let f = this.#queue.peek(); f !== undefined; f = this.#queue.peek()) {
        const frameBytes = f.body.byteLength + 4;
        if (parts.length > 0 && bytes + frameBytes > batchBytesMax) break;
        this.#queue.shift();
        parts.push(frameHeader(f.body.byteLength), f.body);
        bytes += frameBytes;
      }
      this.#sent += parts.length / 2;
      this.#writable = socket.write(Buffer.concat(parts, bytes));
    }
    if (this.#queue.length === 0) this.#overflowReported = false;
  }
}
