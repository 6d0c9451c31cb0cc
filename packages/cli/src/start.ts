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
import { prepareJoin, requestMembership, undoJoin, type JoinStart } from './join.js';
import type { Output } from './output.js';

type StopReason =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'disconnect' }
  | { readonly kind: 'error'; readonly error: Error }
  | { readonly kind: 'join-refused'; readonly error: Error };

export async function runStart(config: StartConfig, out: Output): Promise<number> {
  // Synchronous writes: the last lines before an exit are never lost.
  const logger = pino({ level: config.logLevel }, pino.destination({ fd: 1, sync: true }));
  let joining: JoinStart | null = null;
  if (config.join !== undefined) {
    try {
      joining = await prepareJoin(config, config.join, logger);
    } catch (error) {
      return fail(out, logger, 'could not learn the cluster to join', error);
    }
  }
  // This node's own entries (where the others reach it) win over what the cluster said.
  const peers = { ...joining?.peers, ...config.peers };
  const httpPeers = { ...joining?.httpPeers, ...config.httpPeers };
  const clusterId = config.clusterId ?? joining?.clusterId;
  let node: RaftKvNode;
  try {
    node = await startNode({
      id: config.id,
      dataDir: config.dataDir,
      ...(config.members === undefined ? {} : { members: config.members }),
      peers,
      listen: config.peerListen,
      logger,
      ...(clusterId === undefined ? {} : { clusterId }),
      ...(config.tickMs === undefined ? {} : { tickMs: config.tickMs }),
      ...(config.electionTimeoutMs === undefined ? {} : { electionTimeoutMs: config.electionTimeoutMs }),
      ...(config.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: config.heartbeatIntervalMs }),
      ...(config.snapshotEveryEntries === undefined ? {} : { snapshotEveryEntries: config.snapshotEveryEntries }),
      ...(config.snapshotCatchupEntries === undefined ? {} : { snapshotCatchupEntries: config.snapshotCatchupEntries }),
    });
  } catch (error) {
    return fail(out, logger, 'node failed to start', error);
  }
  // Listen for failures at once: without a listener, a node error ends the process.
  const stopped = stopReason(node);
  const app = createServer({ node, httpAddresses: httpPeers, logger });
  try {
    await app.listen({ host: config.httpListen.host, port: config.httpListen.port });
  } catch (error) {
    await node.close();
    return fail(out, logger, 'HTTP server failed to start', error);
  }
  const http = config.httpPeers[config.id];
  out.err(`raftkv node ${config.id}: peers on ${node.peerAddress}, HTTP on ${http} (listening on ${formatHostPort(config.httpListen)}), data in ${config.dataDir}, pid ${process.pid}`);

  // Asking to be added runs beside the node (the leader replicates to it meanwhile); a refusal stops the node.
  const joinAborted = new AbortController();
  const joinRefused = new Promise<StopReason>((resolve) => {
    if (config.join === undefined || joining === null) return;
    const settings = config.join;
    requestMembership(node, config, settings, joining, logger, joinAborted.signal).then(
      (outcome) => {
        if (outcome === 'added') {
          logger.info({ nodeId: config.id, autoPromote: settings.autoPromote }, 'added to the cluster as a learner');
          out.err(`raftkv node ${config.id}: added to the cluster as a learner${settings.autoPromote ? '; the leader makes it a voter once it has caught up' : ''}`);
        } else if (outcome === 'waiting') {
          out.err(`raftkv node ${config.id}: waiting to be added (raftkv member add ${config.id} ...; the command is in the log)`);
        }
      },
      (error: unknown) => {
        if (!joinAborted.signal.aborted) resolve({ kind: 'join-refused', error: error instanceof Error ? error : new Error(String(error)) });
      },
    );
  });

  const reason = await Promise.race([stopped, joinRefused]);
  joinAborted.abort();
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
  if (reason.kind === 'join-refused') {
    if (joining?.fresh === true) await undoJoin(config);
    return fail(out, logger, 'could not join the cluster', reason.error);
  }
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
