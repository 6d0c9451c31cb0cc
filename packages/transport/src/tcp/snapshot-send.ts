import { connect, type Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { ErrorCode, RaftKvError, type MsgSnap, type NodeId } from '@raftkv/raft';
import { TransportLog } from '../log.js';
import { encodeBody, encodeFrame, frameHeader, parseAcceptorFrame, PROTOCOL_VERSION, type Hello } from '../wire.js';
import type { TcpContext } from './context.js';
import { readFrames } from './frames.js';

const EMPTY = new Uint8Array(0);

/**
 * Streams one snapshot to one peer. It uses a connection of its own, never the messages stream:
 * a snapshot is megabytes long and paced by the receiver's disk, and heartbeats queued behind it
 * on a shared connection would arrive late enough for the follower to start an election.
 *
 * Protocol (see wire.ts): hello(stream: 'snapshot'), snap-begin, snap-chunk*, snap-end with
 * chunkCount, byteCount and the CRC-32 of all data; then the receiver answers snap-ack once
 * `receive` resolved and it delivered the MsgSnap, or snap-nack. `run()` resolves on snap-ack and
 * rejects on anything else: a refusal, a broken connection, `open()` failing, or no progress in
 * either direction for snapshotIdleTimeoutMs.
 */
export class SnapshotSender {
  readonly #ctx: TcpContext;
  readonly #peer: NodeId;
  readonly #address: { host: string; port: number };
  readonly #message: MsgSnap;
  #socket: Socket | null = null;
  #failure: RaftKvError | null = null;
  #fail: (error: RaftKvError) => void = () => {};
  readonly #failed: Promise<never>;
  #succeeded = false;
  #ack: (index: number) => void = () => {};
  readonly #acked: Promise<number>;

  constructor(ctx: TcpContext, peer: NodeId, address: { host: string; port: number }, message: MsgSnap) {
    this.#ctx = ctx;
    this.#peer = peer;
    this.#address = address;
    this.#message = message;
    this.#failed = new Promise<never>((_, reject) => {
      this.#fail = (error) => {
        if (this.#failure !== null || this.#succeeded) return;
        this.#failure = error;
        this.#socket?.destroy();
        reject(error);
      };
    });
    this.#failed.catch(() => {});
    this.#acked = new Promise<number>((resolve) => (this.#ack = resolve));
  }

  abort(reason: string): void {
    this.#fail(failed(`snapshot to ${this.#peer} aborted: ${reason}`));
  }

  async run(): Promise<void> {
    const meta = this.#message.snapshot.meta;
    const fields = { peer: this.#peer, index: meta.index, term: meta.term };
    try {
      const socket = await this.#race(this.#connect());
      const stats = await this.#race(this.#stream(socket));
      const index = await this.#race(this.#acked);
      if (index !== meta.index) throw failed(`snapshot to ${this.#peer}: acknowledged index ${index}, sent ${meta.index}`);
      this.#succeeded = true;
      socket.end();
      this.#ctx.log.info({ ...fields, ...stats }, TransportLog.snapshotSent);
    } catch (error) {
      this.#fail(error instanceof RaftKvError ? error : failed(`snapshot to ${this.#peer} failed`, error));
      this.#ctx.log.warn({ ...fields, err: this.#failure }, TransportLog.snapshotSendFailed);
      throw this.#failure;
    }
  }

  /** Waits for `work` unless the transfer fails first. */
  #race<T>(work: Promise<T>): Promise<T> {
    work.catch(() => {});
    return Promise.race([work, this.#failed]);
  }

  #connect(): Promise<Socket> {
    const { options } = this.#ctx;
    const socket = connect({ host: this.#address.host, port: this.#address.port, noDelay: true });
    this.#socket = socket;
    this.#ctx.track(socket);
    if (this.#failure !== null) socket.destroy();
    socket.setTimeout(options.snapshotIdleTimeoutMs, () => this.#fail(failed(`snapshot to ${this.#peer}: no progress for ${options.snapshotIdleTimeoutMs} ms`)));
    socket.on('error', (error) => this.#fail(failed(`snapshot to ${this.#peer}: connection error`, error)));
    socket.on('close', () => this.#fail(failed(`snapshot to ${this.#peer}: connection closed`)));
    readFrames(
      socket,
      options.frameBytesMax,
      (value) => {
        const frame = parseAcceptorFrame(value);
        if (frame.t === 'snap-ack') return this.#ack(frame.index);
        if (frame.t === 'reject') this.#ctx.log.warn({ peer: this.#peer, reason: frame.reason, code: frame.code }, TransportLog.refusedByPeer);
        this.#fail(failed(`snapshot to ${this.#peer}: peer answered ${frame.t}: ${'reason' in frame ? frame.reason : ''}`));
      },
      (error) => {
        this.#ctx.counters.framesRejected++;
        this.#ctx.log.warn({ peer: this.#peer, code: error.code, reason: error.message }, TransportLog.frameRejected);
        this.#fail(failed(`snapshot to ${this.#peer}: invalid answer`, error));
      },
      () => this.#fail(failed(`snapshot to ${this.#peer}: connection ended`)),
    );
    return new Promise<Socket>((resolve) => socket.once('connect', () => resolve(socket)));
  }

  async #stream(socket: Socket): Promise<{ chunkCount: number; byteCount: number }> {
    const { id, options } = this.#ctx;
    const snapshots = this.#ctx.snapshots();
    if (snapshots === null) throw failed('transport closed');
    const message: MsgSnap = { ...this.#message, snapshot: { meta: this.#message.snapshot.meta, data: EMPTY } };
    const hello: Hello = { v: PROTOCOL_VERSION, clusterId: options.clusterId, from: id, to: this.#peer, stream: 'snapshot', ...(options.identity === null ? {} : { uid: options.identity.uid }) };
    socket.write(encodeFrame(hello, options.frameBytesMax));
    await this.#write(socket, encodeFrame({ t: 'snap-begin', m: message }, options.frameBytesMax));
    let chunkCount = 0;
    let byteCount = 0;
    let crc = 0;
    const iterator = snapshots.open(message.snapshot.meta)[Symbol.asyncIterator]();
    try {
      while (true) {
        const next = await this.#race(iterator.next());
        if (next.done === true) break;
        const piece = next.value;
        for (let offset = 0; offset < piece.byteLength; offset += options.snapshotChunkBytes) {
          const chunk = piece.subarray(offset, offset + options.snapshotChunkBytes);
          crc = crc32(chunk, crc);
          chunkCount++;
          byteCount += chunk.byteLength;
          const body = encodeBody({ t: 'snap-chunk', d: chunk }, options.frameBytesMax);
          await this.#write(socket, frameHeader(body.byteLength), body);
        }
      }
    } catch (error) {
      // Let the producer release what it holds; do not wait for it.
      iterator.return?.().catch(() => {});
      throw error;
    }
    await this.#write(socket, encodeFrame({ t: 'snap-end', chunkCount, byteCount, crc32: crc }, options.frameBytesMax));
    return { chunkCount, byteCount };
  }

  /** Writes, then waits for 'drain' when the socket's buffer is full (back-pressure). */
  async #write(socket: Socket, ...buffers: Buffer[]): Promise<void> {
    if (this.#failure !== null) throw this.#failure;
    let ok = true;
    for (const buffer of buffers) ok = socket.write(buffer);
    if (!ok) await this.#race(new Promise<void>((resolve) => socket.once('drain', resolve)));
  }
}

function failed(message: string, cause?: unknown): RaftKvError {
  return new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, message, cause === undefined ? {} : { cause });
}
