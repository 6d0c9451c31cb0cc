/**
 * `raftkv start`: one node and its HTTP API in this process, until SIGINT or SIGTERM (or, when
 * started by `raftkv cluster`, until the supervisor's IPC channel closes: a supervisor killed
 * with -9 leaves no node behind).
 */
import { startNode, type RaftKvNode } from '@raftkv/node';
import { isRaftKvError } from '@raftkv/raft';
import { createServer } from '@raftkv/server';
import pino, { type Logger } from 'pino';
import { EXIT_FAILURE, EXIT_OK, type StartConfig } from './args.js';
import type { Output } from './output.js';

type StopReason = { readonly kind: 'signal'; readonly signal: NodeJS.Signals } | { readonly kind: 'disconnect' } | { readonly kind: 'error'; readonly error: Error };

export async function runStart(config: StartConfig, out: Output): Promise<number> {
  // Synchronous writes: the last lines before an exit are never lost.
  const logger = pino({ level: config.logLevel }, pino.destination({ fd: 1, sync: true }));
  let node: RaftKvNode;
  try {
    node = await startNode({
      id: config.id,
      dataDir: config.dataDir,
      members: config.members,
      peers: config.peers,
      listen: config.peerListen,
      logger,
      ...(config.clusterId === undefined ? {} : { clusterId: config.clusterId }),
      ...(config.tickMs === undefined ? {} : { tickMs: config.tickMs }),
      ...(config.electionTimeoutMs === undefined ? {} : { electionTimeoutMs: config.electionTimeoutMs }),
      ...(config.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: config.heartbeatIntervalMs }),
      ...(config.snapshotEveryEntries === undefined ? {} : { snapshotEveryEntries: config.snapshotEveryEntries }),
    });
  } catch (error) {
    return fail(out, logger, 'node failed to start', error);
  }
  // Listen for failures at once: without a listener, a node error ends the process.
  const stopped = stopReason(node);
  const app = createServer({ node, httpAddresses: config.httpPeers, logger });
  try {
    await app.listen({ host: config.httpListen.host, port: config.httpListen.port });
  } catch (error) {
    await node.close();
    return fail(out, logger, 'HTTP server failed to start', error);
  }
  const http = config.httpPeers[config.id];
  out.err(`raftkv node ${config.id}: peers on ${node.peerAddress}, HTTP on ${http} (listening on ${formatHostPort(config.httpListen)}), data in ${config.dataDir}, pid ${process.pid}`);

  const reason = await stopped;
  const forced = (): void => {
    out.err(`raftkv node ${config.id}: second signal, exiting without a clean stop`);
    process.exit(EXIT_FAILURE);
  };
  process.once('SIGINT', forced).once('SIGTERM', forced);
  logger.info({ nodeId: config.id, reason: reason.kind === 'signal' ? reason.signal : reason.kind }, 'stopping');
  // HTTP first, so that no request reaches a closing node; then the node (flushes its log).
  await app.close();
  await node.close();
  if (reason.kind === 'error') return fail(out, logger, 'node stopped on an error', reason.error);
  logger.info({ nodeId: config.id }, 'stopped');
  return EXIT_OK;
}

function stopReason(node: RaftKvNode): Promise<StopReason> {
  return new Promise((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve({ kind: 'signal', signal }));
    node.once('error', (error) => resolve({ kind: 'error', error }));
    // Started by `raftkv cluster` (an IPC channel): the supervisor's end closing means it is gone.
    if (process.connected) process.once('disconnect', () => resolve({ kind: 'disconnect' }));
  });
}

function fail(out: Output, logger: Logger, message: string, error: unknown): number {
  logger.error({ err: error }, message);
  out.err(`raftkv: ${describeError(error)}`);
  return EXIT_FAILURE;
}

/** `RAFTKV_STORAGE_CORRUPT: <message>` for our errors, `<code>: <message>` for Node's (EADDRINUSE, ...). */
export function describeError(error: unknown): string {
  if (isRaftKvError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : `${error.name}: ${error.message}`;
  }
  return String(error);
}

function formatHostPort({ host, port }: { host: string; port: number }): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
