/**
 * Entry point of a node process: runs ONE raftkv node in this OS process and serves a parent's
 * requests over the IPC channel (see protocol.ts). Started by NodeChild with
 * `child_process.fork(entry, [JSON config])`; not meant to be imported.
 *
 * Exit statuses: 0 after a `close` request or when the parent goes away; EXIT_START_FAILED (2)
 * when the node does not start, after one line on stderr naming the error code and message;
 * EXIT_NODE_FAILED (3) when the running node stops on an error; EXIT_USAGE (64) without an IPC
 * channel or a readable configuration. An assertion failure is a bug: it is rethrown and kills
 * the process (status 1), never turned into a reply.
 */
import { startNode, type KvItem, type NodeOptions, type RaftKvNode } from '@raftkv/node';
import { assertNever, isRaftKvError, RaftAssertionError, type NodeId } from '@raftkv/raft';
import { createServer } from '@raftkv/server';

type FastifyInstance = ReturnType<typeof createServer>;
import {
  EXIT_NODE_FAILED,
  EXIT_START_FAILED,
  EXIT_USAGE,
  isRequest,
  LOG_LEVELS,
  type Announcement,
  type NodeProcessConfig,
  type OpResults,
  type ProcessKvItem,
  type Reply,
  type Request,
} from './protocol.js';

const decoder = new TextDecoder('utf-8', { fatal: false });
/** After SIGTERM, the process exits on its own by then even if the node has not finished stopping. */
const STOP_TIMEOUT_MS = 10_000;

async function main(): Promise<void> {
  if (process.send === undefined) return exitWith(EXIT_USAGE, 'node-process: started without an IPC channel; start it with child_process.fork');
  // The parent holds the other end of the IPC channel: when it goes (even by kill -9), so do we.
  process.on('disconnect', () => process.exit());
  const config = readConfig(process.argv[2]);
  if (typeof config === 'string') return exitWith(EXIT_USAGE, `node-process: ${config}`);

  let node: RaftKvNode;
  try {
    node = await startNode(nodeOptions(config));
  } catch (error) {
    if (error instanceof RaftAssertionError) throw error;
    const code = isRaftKvError(error) ? error.code : null;
    const message = error instanceof Error ? error.message : String(error);
    await announce({ type: 'failed', code, message });
    return exitWith(EXIT_START_FAILED, `raftkv node ${config.id} failed to start: ${code ?? 'error'}: ${message}`);
  }
  node.on('error', (error) => {
    const code = isRaftKvError(error) ? error.code : 'error';
    exitWith(EXIT_NODE_FAILED, `raftkv node ${config.id} stopped: ${code}: ${error.message}`);
  });
  // Filled in by setPeers; the server reads it at each forward.
  const httpPeers: Record<NodeId, string> = {};
  let server: FastifyInstance | null = null;
  if (config.http !== undefined) {
    try {
      server = createServer({ node, httpAddresses: httpPeers, ...(config.requestTimeoutMs === undefined ? {} : { forwardTimeoutMs: config.requestTimeoutMs }) });
      await server.listen({ host: config.http.host, port: config.http.port });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await announce({ type: 'failed', code: null, message: `HTTP server: ${message}` });
      return exitWith(EXIT_START_FAILED, `raftkv node ${config.id} failed to start its HTTP server: ${message}`);
    }
  }
  // SIGTERM stops the node as `raftkv start` does: the HTTP server, then the node (a leader
  // hands leadership over first), then exit 0. A second SIGTERM while stopping is ignored.
  process.once('SIGTERM', () => {
    const stop = async (): Promise<void> => {
      await server?.close();
      await node.close();
    };
    setTimeout(() => exitWith(EXIT_NODE_FAILED, `raftkv node ${config.id} did not stop within ${STOP_TIMEOUT_MS} ms of SIGTERM`), STOP_TIMEOUT_MS).unref();
    stop().then(
      () => process.exit(0),
      (error: unknown) => exitWith(EXIT_NODE_FAILED, `raftkv node ${config.id} failed to stop: ${error instanceof Error ? error.message : String(error)}`),
    );
  });
  process.on('message', (value: unknown) => {
    if (!isRequest(value)) {
      exitWith(EXIT_USAGE, `node-process: not a request: ${JSON.stringify(value)}`);
      return;
    }
    void serve(node, server, httpPeers, value);
  });
  await announce({ type: 'ready', peerAddress: node.peerAddress, httpAddress: server === null ? null : serverAddress(server) });
}

function readConfig(argument: string | undefined): NodeProcessConfig | string {
  if (argument === undefined) return 'missing argument: the node configuration as JSON';
  let value: unknown;
  try {
    value = JSON.parse(argument);
  } catch {
    return 'the argument is not JSON';
  }
  if (typeof value !== 'object' || value === null) return 'the configuration is not an object';
  const c = value as Partial<NodeProcessConfig>;
  if (typeof c.id !== 'string' || typeof c.dataDir !== 'string') return 'the configuration lacks id or dataDir';
  if (c.members !== undefined && !Array.isArray(c.members)) return 'members, when given, is an array of node ids';
  if (typeof c.listen !== 'object' || typeof c.peers !== 'object') return 'the configuration lacks listen or peers';
  if (c.logLevel !== undefined && !LOG_LEVELS.includes(c.logLevel)) return `unknown logLevel ${JSON.stringify(c.logLevel)}`;
  return c as NodeProcessConfig;
}

function nodeOptions(config: NodeProcessConfig): NodeOptions {
  const { logLevel, ...options } = config;
  const logger = logLevel === undefined || logLevel === 'silent' ? undefined : stderrLogger(logLevel, {});
  return logger === undefined ? options : { ...options, logger };
}

function serverAddress(server: FastifyInstance): string {
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error(`HTTP server has no TCP address (${String(address)})`);
  return `${address.address}:${address.port}`;
}

async function serve(node: RaftKvNode, server: FastifyInstance | null, httpPeers: Record<NodeId, string>, request: Request): Promise<void> {
  let reply: Reply;
  try {
    reply = { id: request.id, ok: true, value: await execute(node, server, httpPeers, request) };
  } catch (error) {
    if (error instanceof RaftAssertionError) throw error; // a bug: crash, never reply
    reply = {
      id: request.id,
      ok: false,
      code: isRaftKvError(error) ? error.code : null,
      message: isRaftKvError(error) ? error.message : error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      leaderHint: isRaftKvError(error) ? error.leaderHint : null,
    };
  }
  if (request.op === 'close' && reply.ok) {
    process.send?.(reply, () => process.exit(0));
    return;
  }
  process.send?.(reply);
}

async function execute(node: RaftKvNode, server: FastifyInstance | null, httpPeers: Record<NodeId, string>, request: Request): Promise<OpResults[Request['op']]> {
  switch (request.op) {
    case 'put':
      return node.put(request.args.key, request.args.value);
    case 'get': {
      const item = await node.get(request.args.key, withConsistency(request.args.consistency));
      return item === null ? null : toProcessItem(item);
    }
    case 'delete':
      return node.delete(request.args.key);
    case 'cas':
      return node.cas(request.args.key, request.args.value, request.args.expect);
    case 'scan': {
      const { prefix, limit, consistency } = request.args;
      const items = await node.scan(prefix, { ...withConsistency(consistency), ...(limit === undefined ? {} : { limit }) });
      return items.map(toProcessItem);
    }
    case 'status': {
      const { progress, ...status } = node.status();
      return { ...status, progress: progress === null ? null : Object.fromEntries(progress) };
    }
    case 'transportStats': {
      const { peers, ...stats } = node.transport.stats();
      return { ...stats, peers: Object.fromEntries(peers) };
    }
    case 'setPeers':
      node.setPeers(request.args.peers);
      if (request.args.httpPeers !== undefined) Object.assign(httpPeers, request.args.httpPeers);
      return null;
    case 'close':
      await server?.close();
      await node.close();
      return null;
    case 'members':
      return node.members();
    case 'addLearner': {
      const { id, ...member } = request.args;
      await node.addLearner(id, member);
      return null;
    }
    case 'promote':
      await node.promote(request.args.id);
      return null;
    case 'removeMember':
      await node.removeMember(request.args.id);
      return null;
    case 'transferLeadership':
      return node.transferLeadership(request.args.to);
    default:
      return assertNever(request, 'node-process request');
  }
}

function withConsistency(consistency: 'linearizable' | 'lease' | 'stale' | undefined): { consistency?: 'linearizable' | 'lease' | 'stale' } {
  return consistency === undefined ? {} : { consistency };
}

function toProcessItem(item: KvItem): ProcessKvItem {
  return { key: item.key, value: decoder.decode(item.value), modIndex: item.modIndex };
}

/** Resolves once the message is handed to the IPC channel (or the channel is gone). */
function announce(message: Announcement): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(message, () => resolve());
  });
}

/** Writes one line to stderr, then exits with `status` once the line is written. */
function exitWith(status: number, line: string): void {
  process.exitCode = status;
  process.stderr.write(`${line.replace(/\n/g, ' ')}\n`, () => process.exit(status));
}

// ------------------------------------------------------------------------------------------
// A minimal pino-shaped logger writing JSON lines to stderr. pino itself is a dependency of
// @raftkv/node, not of @raftkv/testing; the node uses only child() and the level methods.

type Fields = Record<string, unknown>;
const LEVEL_RANK = { fatal: 60, error: 50, warn: 40, info: 30, debug: 20, trace: 10 } as const;

function stderrLogger(level: Exclude<NodeProcessConfig['logLevel'], undefined | 'silent'>, bindings: Fields): NonNullable<NodeOptions['logger']> {
  const threshold = LEVEL_RANK[level];
  const at =
    (name: keyof typeof LEVEL_RANK) =>
    (fields: Fields | string, message?: string): void => {
      if (LEVEL_RANK[name] < threshold) return;
      const body = typeof fields === 'string' ? { msg: fields } : { ...serializable(fields), msg: message };
      process.stderr.write(`${JSON.stringify({ level: name, time: Date.now(), ...bindings, ...body })}\n`);
    };
  const logger = {
    level,
    child: (more: Fields) => stderrLogger(level, { ...bindings, ...more }),
    fatal: at('fatal'),
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
  };
  return logger as unknown as NonNullable<NodeOptions['logger']>;
}

function serializable(fields: Fields): Fields {
  const out: Fields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? { type: value.name, message: value.message, code: (value as { code?: unknown }).code } : value;
  }
  return out;
}

// Last, so that every module-level constant above is initialised before it runs.
main().catch((error: unknown) => {
  // A failure outside the node (a bug here): crash loudly.
  setImmediate(() => {
    throw error;
  });
});
