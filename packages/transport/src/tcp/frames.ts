import type { Socket } from 'node:net';
import { ErrorCode, isRaftKvError, type RaftKvError } from '@raftkv/raft';
import { decodeBody, FrameDecoder } from '../wire.js';

/**
 * Feeds a socket's bytes through a FrameDecoder and hands each decoded (but not yet validated)
 * frame body to `onFrame`. A FRAME_INVALID RaftKvError thrown while decoding or by `onFrame`
 * goes to `onInvalid` and stops the reading; `onEnd` hears about EOF with the bytes of a
 * truncated frame, if any. Other exceptions are bugs and propagate.
 */
export function readFrames(
  socket: Socket,
  frameBytesMax: number,
  onFrame: (value: unknown) => void,
  onInvalid: (error: RaftKvError) => void,
  onEnd: (truncatedBytes: number) => void,
): void {
  const decoder = new FrameDecoder(frameBytesMax);
  let stopped = false;
  socket.on('data', (data: Buffer) => {
    if (stopped) return;
    try {
      for (const body of decoder.push(data)) {
        onFrame(decodeBody(body));
        if (stopped || socket.destroyed) return;
      }
    } catch (error) {
      if (!isRaftKvError(error, ErrorCode.FRAME_INVALID)) throw error;
      stopped = true;
      onInvalid(error);
    }
  });
  socket.on('end', () => {
    if (!stopped) onEnd(decoder.bufferedBytes);
  });
}
