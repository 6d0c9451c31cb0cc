import type { Socket } from 'node:net';
import { assertNever, ErrorCode, isRaftKvError, type Message, type NodeId, type RaftKvError } from '@raftkv/raft';
import { TransportLog } from '../log.js';
import { invalid } from '../validate.js';
import { encodeFrame, parseHello, parseMessageFrame, type Hello, type RejectReason, type StreamKind } from '../wire.js';
import type { InboundHandle, TcpContext } from './context.js';
import { readFrames } from './frames.js';
import { SnapshotReceiver } from './snapshot-receive.js';

/** How long a refused connection may stay open for its reject frame to reach the dialer. */
const REFUSE_LINGER_MS = 2_000;

/**
 * One accepted connection. It must open with a Hello; the cluster id, the addressee (us) and
 * the sender (a known peer) are checked, and a failed check is answered with a reject frame and
 * a close. After the Hello, a messages stream delivers validated messages from that peer only;
 * a snapshot stream is handed to a SnapshotReceiver. A bad frame closes the connection; nothing
 * here throws out of a socket callback for anything the peer sent.
 */
export class InboundConnection implements InboundHandle {
  peer: NodeId | null = null;
  stream: StreamKind | null = null;
  readonly #ctx: TcpContext;
  readonly #socket: Socket;
  readonly #remote: string;
  #state: 'hello' | 'checking' | 'open' | 'refused' = 'hello';
  /** Frames that arrived while a new peer's identity was being recorded, replayed after. */
  #held: unknown[] = [];
  #snapshot: SnapshotReceiver | null = null;

  constructor(ctx: TcpContext, socket: Socket) {
    this.#ctx = ctx;
    this.#socket = socket;
    this.#remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    ctx.track(socket);
    socket.setNoDelay(true);
    socket.setTimeout(ctx.options.handshakeTimeoutMs);
    socket.on('timeout', () => this.#onTimeout());
    socket.on('error', (error) => ctx.log.debug({ remote: this.#remote, peer: this.peer, err: error }, TransportLog.connectionLost));
    socket.on('close', () => {
      ctx.releaseInbound(this);
      this.#snapshot?.onClose();
    });
    readFrames(
      socket,
      ctx.options.frameBytesMax,
      (value) => this.#onFrame(value),
      (error) => this.#onInvalid(error),
      (truncatedBytes) => this.#onEnd(truncatedBytes),
    );
    socket.resume(); // accepted paused (pauseOnConnect) until the transport started
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #onFrame(value: unknown): void {
    switch (this.#state) {
      case 'hello':
        return this.#onHello(value);
      case 'checking':
        this.#held.push(value);
        return;
      case 'open':
        if (this.#snapshot !== null) return this.#snapshot.onFrame(value);
        return this.#onMessage(parseMessageFrame(value));
      case 'refused':
        return; // draining until the dialer hangs up
      default:
        return assertNever(this.#state, 'inbound state');
    }
  }

  #onHello(value: unknown): void {
    const hello = parseHello(value);
    const reason = typeof hello === 'string' ? hello : this.#check(hello);
    if (reason !== null) return this.#refuse(reason, typeof hello === 'string' ? null : hello);
    const h = hello as Hello;
    const identity = this.#ctx.options.identity;
    if (identity === null || identity.peers.known(h.from) !== undefined) return this.#open(h);
    // A peer seen for the first time: its identity is recorded, durably, before anything it
    // sends is believed. Frames that arrive meanwhile wait.
    this.#state = 'checking';
    this.#socket.pause();
    identity.peers.remember(h.from, h.uid!).then(
      (outcome) => {
        if (this.#state !== 'checking') return;
        if (outcome !== 'ok') return this.#refuse('identity-mismatch', h);
        this.#open(h);
        this.#replayHeld();
        this.#socket.resume();
      },
      (error: unknown) => {
        this.#ctx.log.warn({ remote: this.#remote, from: h.from, err: error }, TransportLog.handshakeRejected);
        this.#socket.destroy();
      },
    );
  }

  /** Frames that waited for the identity check, as `readFrames` would have handed them. */
  #replayHeld(): void {
    const held = this.#held;
    this.#held = [];
    try {
      for (const frame of held) {
        if (this.#socket.destroyed || this.#state === 'refused') return;
        this.#onFrame(frame);
      }
    } catch (error) {
      if (!isRaftKvError(error, ErrorCode.FRAME_INVALID)) throw error;
      this.#onInvalid(error);
    }
  }

  #open(h: Hello): void {
    this.peer = h.from;
    this.stream = h.stream;
    this.#state = 'open';
    if (h.stream === 'snapshot') {
      this.#snapshot = new SnapshotReceiver(this.#ctx, h.from, this.#socket);
      this.#socket.setTimeout(this.#ctx.options.snapshotIdleTimeoutMs);
    } else {
      this.#socket.setTimeout(0); // a quiet link (no leader, no traffic) is not a dead one
    }
    this.#ctx.claimInbound(this);
  }

  #check(hello: Hello): RejectReason | null {
    if (hello.clusterId !== this.#ctx.options.clusterId) return 'cluster-mismatch';
    if (hello.to !== this.#ctx.id) return 'wrong-node';
    if (!this.#ctx.isKnownPeer(hello.from)) return 'unknown-peer';
    const identity = this.#ctx.options.identity;
    if (identity !== null) {
      if (hello.uid === undefined) return 'identity-missing';
      const known = identity.peers.known(hello.from);
      if (known !== undefined && known !== hello.uid) return 'identity-mismatch';
    }
    return null;
  }

  #refuse(reason: RejectReason, hello: Hello | null): void {
    this.#ctx.counters.handshakesRejected++;
    this.#ctx.log.warn(
      { remote: this.#remote, reason, from: hello?.from, to: hello?.to, clusterId: hello?.clusterId, code: ErrorCode.PEER_REJECTED },
      TransportLog.handshakeRejected,
    );
    this.#state = 'refused';
    this.#socket.setTimeout(REFUSE_LINGER_MS);
    this.#socket.end(encodeFrame({ t: 'reject', code: ErrorCode.PEER_REJECTED, reason }, this.#ctx.options.frameBytesMax));
  }

  #onMessage(message: Message): void {
    if (message.from !== this.peer) invalid('message.from', `${this.peer} (the handshaken sender)`);
    if (message.to !== this.#ctx.id) invalid('message.to', this.#ctx.id);
    // A snapshot travels on a stream of its own, with its image; on the messages stream it is forged.
    if (message.type === 'MsgSnap') invalid('message.type', 'no MsgSnap on the messages stream (snapshots have their own stream)');
    const handlers = this.#ctx.handlers();
    if (handlers === null) return;
    this.#ctx.counters.received++;
    handlers.onMessage(message);
  }

  #onInvalid(error: RaftKvError): void {
    this.#ctx.counters.framesRejected++;
    this.#ctx.log.warn({ remote: this.#remote, peer: this.peer, code: error.code, reason: error.message }, TransportLog.frameRejected);
    this.#socket.destroy();
  }

  #onEnd(truncatedBytes: number): void {
    if (truncatedBytes === 0 || this.#state === 'refused') return;
    this.#ctx.counters.framesRejected++;
    this.#ctx.log.warn(
      { remote: this.#remote, peer: this.peer, code: ErrorCode.FRAME_INVALID, reason: `connection ended inside a frame (${truncatedBytes} bytes held)` },
      TransportLog.frameRejected,
    );
    this.#socket.destroy();
  }

  #onTimeout(): void {
    switch (this.#state) {
      case 'hello':
        this.#ctx.counters.handshakesRejected++;
        this.#ctx.log.warn({ remote: this.#remote, timeoutMs: this.#ctx.options.handshakeTimeoutMs }, TransportLog.handshakeTimeout);
        this.#socket.destroy();
        return;
      case 'open':
        return this.#snapshot?.onTimeout();
      case 'checking':
      case 'refused':
        this.#socket.destroy();
        return;
      default:
        return assertNever(this.#state, 'inbound state');
    }
  }
}
