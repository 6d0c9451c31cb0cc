import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { ScriptedSnapshotStreams, TransportRecorder } from '@raftkv/testing/contracts';
import type { Message, NodeId } from '@raftkv/raft';
import { formatAddress, TcpTransport, type TcpTransportOptions, type TransportLogger } from '../src/index.js';

/** The contract suite's recorder and scripted snapshot streams, under shorter names. */
export { ScriptedSnapshotStreams as Streams, TransportRecorder as Recorder } from '@raftkv/testing/contracts';

export interface LogLine {
  readonly level: 'warn' | 'info' | 'debug';
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

/** A pino-shaped logger that keeps every line. */
export class CaptureLogger implements TransportLogger {
  readonly lines: LogLine[] = [];
  warn(fields: Record<string, unknown>, message: string): void {
    this.lines.push({ level: 'warn', fields, message });
  }
  info(fields: Record<string, unknown>, message: string): void {
    this.lines.push({ level: 'info', fields, message });
  }
  debug(fields: Record<string, unknown>, message: string): void {
    this.lines.push({ level: 'debug', fields, message });
  }
  warnings(message: string): LogLine[] {
    return this.lines.filter((l) => l.level === 'warn' && l.message === message);
  }
}

export const LOCALHOST = '127.0.0.1';

export interface TcpNode {
  readonly transport: TcpTransport;
  readonly recorder: TransportRecorder;
  readonly streams: ScriptedSnapshotStreams;
  readonly logger: CaptureLogger;
  readonly port: number;
}

type NodeOptions = Partial<Omit<TcpTransportOptions, 'id' | 'listen' | 'peers' | 'logger'>>;

/** Builds, binds and starts TCP transports that know each other (plus `extraPeers`). */
export async function startTcpNodes(ids: readonly NodeId[], options: NodeOptions = {}, extraPeers: ReadonlyMap<NodeId, string> = new Map()): Promise<TcpNode[]> {
  const built = ids.map((id) => {
    const logger = new CaptureLogger();
    const transport = new TcpTransport({ clusterId: 'test', reconnectBackoffMinMs: 5, reconnectBackoffMaxMs: 50, ...options, id, listen: { host: LOCALHOST, port: 0 }, logger });
    return { transport, logger, recorder: new TransportRecorder(), streams: new ScriptedSnapshotStreams() };
  });
  const addresses = await Promise.all(built.map((n) => n.transport.listen()));
  const peers = new Map(extraPeers);
  ids.forEach((id, k) => peers.set(id, formatAddress(LOCALHOST, addresses[k]!.port)));
  for (const n of built) n.transport.setPeers(peers);
  await Promise.all(built.map((n) => n.transport.start(n.recorder, n.streams)));
  return built.map((n, k) => ({ ...n, port: addresses[k]!.port }));
}

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, LOCALHOST, resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return address.port;
}

/** A raw client: connects, writes `chunks`, optionally half-closes, and resolves with all it read once the server closed. */
export async function rawExchange(port: number, chunks: readonly Uint8Array[], options: { end: boolean }): Promise<Buffer> {
  const socket: Socket = connect({ host: LOCALHOST, port });
  socket.on('error', () => {}); // a reset from the server is an expected outcome
  const received: Buffer[] = [];
  socket.on('data', (data: Buffer) => received.push(data));
  await once(socket, 'connect');
  for (const chunk of chunks) socket.write(chunk);
  if (options.end) socket.end();
  if (!socket.closed) await once(socket, 'close');
  return Buffer.concat(received);
}

export function heartbeat(from: NodeId, to: NodeId, readRound: number): Message {
  return { type: 'MsgHeartbeat', from, to, term: 1, commit: 0, commitTerm: 0, readRound, leaseTick: 0 };
}

/** Sends a heartbeat each way and waits for both: the link between two nodes works. */
export async function expectLinkWorks(x: TcpNode, y: TcpNode, readRound: number): Promise<void> {
  const seen = (r: TransportRecorder, from: NodeId): boolean => r.messages.some((m) => m.type === 'MsgHeartbeat' && m.from === from && m.readRound === readRound);
  x.transport.send(heartbeat(x.transport.id, y.transport.id, readRound));
  y.transport.send(heartbeat(y.transport.id, x.transport.id, readRound));
  await y.recorder.until(() => seen(y.recorder, x.transport.id));
  await x.recorder.until(() => seen(x.recorder, y.transport.id));
}

export async function closeAll(nodes: readonly TcpNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.transport.close()));
}
