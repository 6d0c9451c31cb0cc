import type { Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { assertNever, ErrorCode, RaftKvError, type MsgSnap, type NodeId } from '@raftkv/raft';
import { TransportLog } from '../log.js';
import { invalid } from '../validate.js';
import { encodeFrame, parseSnapshotFrame } from '../wire.js';
import { ChunkChannel } from './chunk-channel.js';
import type { TcpContext } from './context.js';

const EMPTY = new Uint8Array(0);

/**
 * The receiving side of one snapshot stream (see SnapshotSender for the protocol). Chunks are
 * piped into `snapshots.receive` as they arrive, with back-pressure; the trailer is checked
 * (chunk count, byte count, CRC-32) before the consumer sees the end of the stream. `receive` gets
 * the MsgSnap with its stream and hands it to its core itself; when it resolved after consuming a
 * verified stream, snap-ack is sent. Any failure: snap-nack (when the connection is still up), no MsgSnap.
 */
export class SnapshotReceiver {
  readonly #ctx: TcpContext;
  readonly #peer: NodeId;
  readonly #socket: Socket;
  #state: 'begin' | 'chunks' | 'ended' = 'begin';
  #message: MsgSnap | null = null;
  #channel: ChunkChannel | null = null;
  #chunkCount = 0;
  #byteCount = 0;
  #crc = 0;

  constructor(ctx: TcpContext, peer: NodeId, socket: Socket) {
    this.#ctx = ctx;
    this.#peer = peer;
    this.#socket = socket;
  }

  /** One decoded frame; throws FRAME_INVALID on anything out of protocol. */
  onFrame(value: unknown): void {
    const frame = parseSnapshotFrame(value);
    switch (frame.t) {
      case 'snap-begin':
        if (this.#state !== 'begin') invalid('frame.t', 'one snap-begin per stream');
        if (frame.m.from !== this.#peer || frame.m.to !== this.#ctx.id) invalid('frame.m', `a MsgSnap from ${this.#peer} to ${this.#ctx.id}`);
        return this.#begin(frame.m);
      case 'snap-chunk': {
        if (this.#state !== 'chunks' || this.#channel === null) return invalid('frame.t', 'snap-chunk between snap-begin and snap-end');
        this.#chunkCount++;
        this.#byteCount += frame.d.byteLength;
        this.#crc = crc32(frame.d, this.#crc);
        return this.#channel.push(frame.d);
      }
      case 'snap-end': {
        if (this.#state !== 'chunks' || this.#channel === null) return invalid('frame.t', 'snap-end after snap-begin');
        this.#state = 'ended';
        this.#socket.setTimeout(0); // from here on we wait for our own consumer, not for the peer
        const expected = `${frame.chunkCount} chunks, ${frame.byteCount} bytes, crc ${frame.crc32}`;
        const actual = `${this.#chunkCount} chunks, ${this.#byteCount} bytes, crc ${this.#crc}`;
        if (expected === actual) return this.#channel.end();
        return this.#channel.fail(failed(`snapshot from ${this.#peer}: trailer says ${expected}, received ${actual}`));
      }
      default:
        return assertNever(frame, 'snapshot frame');
    }
  }

  /** The peer stopped sending for snapshotIdleTimeoutMs while we waited for its data. */
  onTimeout(): void {
    this.#channel?.fail(failed(`snapshot from ${this.#peer}: no data for ${this.#ctx.options.snapshotIdleTimeoutMs} ms`));
    this.#socket.destroy();
  }

  /** The connection is gone: a stream that had not ended broke off. */
  onClose(): void {
    this.#channel?.fail(failed(`snapshot from ${this.#peer}: the stream broke off`));
  }

  #begin(message: MsgSnap): void {
    const snapshots = this.#ctx.snapshots();
    if (snapshots === null) return void this.#socket.destroy();
    this.#state = 'chunks';
    this.#message = { ...message, snapshot: { meta: message.snapshot.meta, data: EMPTY } };
    const { snapshotBufferBytesMax, snapshotIdleTimeoutMs } = this.#ctx.options;
    const channel = new ChunkChannel(
      snapshotBufferBytesMax,
      () => {
        this.#socket.pause();
        this.#socket.setTimeout(0); // paused by us: the silence is not the peer's fault
      },
      () => {
        this.#socket.resume();
        if (this.#state === 'chunks') this.#socket.setTimeout(snapshotIdleTimeoutMs);
      },
    );
    this.#channel = channel;
    let release = (): void => {};
    const done = new Promise<void>((resolve) => (release = resolve));
    this.#ctx
      .takeSnapshotTurn(this.#peer, done)
      .then(() => {
        if (this.#ctx.handlers() === null) throw failed(`snapshot from ${this.#peer}: transport closed`);
        return snapshots.receive(this.#message!, channel);
      })
      .then(
        () => this.#received(channel),
        (error: unknown) => this.#rejected(error),
      )
      .finally(release);
  }

  #received(channel: ChunkChannel): void {
    if (!channel.finished) return this.#rejected(failed(`snapshot from ${this.#peer}: receive() resolved before the end of the stream`));
    const handlers = this.#ctx.handlers();
    const message = this.#message;
    if (handlers === null || message === null) return;
    const { meta } = message.snapshot;
    this.#ctx.counters.snapshotsReceived++;
    this.#ctx.log.info({ peer: this.#peer, index: meta.index, term: meta.term, chunkCount: this.#chunkCount, byteCount: this.#byteCount }, TransportLog.snapshotReceived);
    if (!this.#socket.destroyed) this.#socket.end(encodeFrame({ t: 'snap-ack', index: meta.index }, this.#ctx.options.frameBytesMax));
  }

  #rejected(error: unknown): void {
    if (this.#ctx.handlers() === null) return;
    // Whatever still arrives is dropped rather than queued for a consumer that is gone.
    this.#channel?.fail(failed(`snapshot from ${this.#peer}: refused`));
    this.#ctx.counters.snapshotsRejected++;
    this.#ctx.log.warn({ peer: this.#peer, index: this.#message?.snapshot.meta.index, err: error }, TransportLog.snapshotReceiveFailed);
    const reason = error instanceof Error ? error.message : String(error);
    if (this.#socket.destroyed) return;
    this.#socket.end(encodeFrame({ t: 'snap-nack', reason: reason.slice(0, 512) }, this.#ctx.options.frameBytesMax));
    // Keep reading (and discarding) until the sender hangs up, but not forever.
    this.#socket.resume();
    this.#socket.setTimeout(this.#ctx.options.snapshotIdleTimeoutMs);
  }
}

function failed(message: string): RaftKvError {
  return new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, message);
}
