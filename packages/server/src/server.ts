import { constants as bufferConstants } from 'node:buffer';
import { KV_LIMITS_DEFAULT, type KvLimits } from '@raftkv/kv';
import type { KvItem, NodeStatus, RaftKvNode } from '@raftkv/node';
import { ErrorCode, isRaftKvError, RaftKvError, type NodeId } from '@raftkv/raft';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import pino from 'pino';
import { httpError, ServerErrorCode, toHttpError, type HttpError } from './errors.js';
import { createForwardAgent, ForwardError, forwardToLeader, isForwarded, type ForwardPlan } from './forward.js';
import { createMetrics } from './metrics.js';
import { registerBackupRoutes, type BackupNode } from './routes-backup.js';
import { registerMemberRoutes, TRANSFER_TIMEOUT_MS_DEFAULT } from './routes-members.js';
import {
  canonicalPath,
  canonicalQuery,
  casParam,
  consistencyParam,
  KEY_ROUTE_PREFIX,
  keyFromUrl,
  onlyParams,
  RequestError,
  scanParams,
  writeOptions,
} from './request.js';

/** What the server needs of a node; a RaftKvNode has it, and tests pass a fake. */
export type ServedNode = Pick<
  RaftKvNode,
  'id' | 'role' | 'leader' | 'put' | 'get' | 'delete' | 'cas' | 'scan' | 'status' | 'members' | 'addLearner' | 'promote' | 'removeMember' | 'transferLeadership' | 'httpAddressOf'
> & {
  /** The node's own limits, when it exposes them (RaftKvNode does): the server enforces the same. */
  readonly limits?: Pick<RaftKvNode['limits'], 'keyBytesMax' | 'valueBytesMax' | 'scanCountMax'>;
} & Partial<Pick<BackupNode, 'backup' | 'stateHash'>>;

export type ServerLimits = Pick<KvLimits, 'keyBytesMax' | 'valueBytesMax' | 'scanCountMax'>;

export interface ServerOptions {
  readonly node: ServedNode;
  /**
   * Base URL ("http://host:port") of every node's HTTP API, by node id, for forwarding to the
   * leader. Read when a request is forwarded, so it may be filled in after the servers listen.
   */
  readonly httpAddresses: Readonly<Record<NodeId, string>>;
  /** Should equal the node's `kvLimits` (the node checks them again). Default: KV_LIMITS_DEFAULT. */
  readonly limits?: Partial<ServerLimits>;
  /** The server logs through a child bound to `{ nodeId }`. Default: silent. */
  readonly logger?: FastifyBaseLogger;
  /** How long a forwarded request may take at the leader (default 10 s). */
  readonly forwardTimeoutMs?: number;
  /** How long `POST /v1/leader/transfer` waits for the new leader (default 5 s; keep it under forwardTimeoutMs). */
  readonly transferTimeoutMs?: number;
}

export const FORWARD_TIMEOUT_MS_DEFAULT = 10_000;
/** Room above `valueBytesMax` in the body limit, so a value just over it gets the precise error. */
export const BODY_OVERHEAD_BYTES = 1024;
export const MOD_INDEX_HEADER = 'x-raftkv-mod-index';

type Query = Readonly<Record<string, unknown>>;

const KEY_ROUTE = '/v1/kv/*';
const LIST_ROUTE = '/v1/kv';
/** Room for the fields around each listed item (`{"key":,"value":,"encoding":"base64","modIndex":}`). */
const ITEM_OVERHEAD_BYTES = 128;
/** JSON escapes a control character as `\u001f`: six bytes for one. */
const JSON_ESCAPE_BYTES_MAX = 6;

/**
 * The HTTP API of one node (docs/http-api.md): a fastify instance, not yet listening. Any node
 * accepts any request; a write reaching a follower is forwarded once to the leader.
 */
export function createServer(options: ServerOptions): FastifyInstance {
  const { node, httpAddresses } = options;
  const limits: ServerLimits = {
    keyBytesMax: options.limits?.keyBytesMax ?? options.node.limits?.keyBytesMax ?? KV_LIMITS_DEFAULT.keyBytesMax,
    valueBytesMax: options.limits?.valueBytesMax ?? options.node.limits?.valueBytesMax ?? KV_LIMITS_DEFAULT.valueBytesMax,
    scanCountMax: options.limits?.scanCountMax ?? options.node.limits?.scanCountMax ?? KV_LIMITS_DEFAULT.scanCountMax,
  };
  const forwardTimeoutMs = options.forwardTimeoutMs ?? FORWARD_TIMEOUT_MS_DEFAULT;
  const base: FastifyBaseLogger = options.logger ?? pino({ level: 'silent' });
  const app = Fastify({
    loggerInstance: base.child({ nodeId: node.id }),
    bodyLimit: limits.valueBytesMax + BODY_OVERHEAD_BYTES,
    // A percent-encoded key takes up to three characters per byte.
    routerOptions: { maxParamLength: 3 * limits.keyBytesMax + 16 },
    exposeHeadRoutes: false,
    return503OnClosing: true,
    // fastify's two lines per request at info would bury the node's own log under health
    // checks, metric scrapes and the supervisor's polling; requests are counted in /metrics.
    logController: new LogController({ disableRequestLogging: true }),
    // Request schemas refuse what they do not describe: fastify's defaults would drop an
    // unknown property (a typo such as "peerAdress") and turn "true" into true.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    // The router refuses a path with a bad percent-escape before any route runs; under
    // /v1/kv/ that path is a key, and the error says so.
    frameworkErrors: (error, request, reply) => {
      const inKey = error.code === 'FST_ERR_BAD_URL' && request.url.startsWith(KEY_ROUTE_PREFIX);
      void sendError(reply, inKey ? httpError(ErrorCode.KEY_INVALID, 'key is not valid percent-encoded UTF-8') : toHttpError(error));
    },
  });
  const metrics = createMetrics(() => node.status());
  const forwardAgent = createForwardAgent();
  app.addHook('onClose', (_app, done) => {
    forwardAgent.destroy();
    done();
  });
  // The most of a leader's answer a forward buffers: what a well-behaved leader with the same
  // limits can send, so that a wrong or broken peer cannot make this node buffer without end.
  // A key route answers with a value or with an error that quotes the key (JSON-escaped, then
  // escaped again as part of the message).
  const keyAnswerBytesMax = limits.valueBytesMax + 2 * JSON_ESCAPE_BYTES_MAX * limits.keyBytesMax + BODY_OVERHEAD_BYTES;
  // A listing holds up to scanCountMax items, keys and values JSON-escaped. The leader builds
  // it as one JS string, so it is also at most three UTF-8 bytes per character of the longest
  // string there can be.
  const listAnswerBytesMax = Math.min(
    limits.scanCountMax * (JSON_ESCAPE_BYTES_MAX * (limits.keyBytesMax + limits.valueBytesMax) + ITEM_OVERHEAD_BYTES),
    3 * bufferConstants.MAX_STRING_LENGTH,
  );

  // Values are opaque bytes: every content type (or none) is read as one Buffer.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeRequest({ route: request.routeOptions.url ?? 'unmatched', method: request.method, status: reply.statusCode }, reply.elapsedTime / 1000);
    done();
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    return sendError(reply, httpError(ServerErrorCode.ROUTE_NOT_FOUND, `no route for ${request.method} ${path.slice(0, 200)}`));
  });

  // Routes whose NOT_LEADER answer is forwarded to the leader, and how; status pages describe
  // this node and are not among them. Each plan rebuilds the request from what this node parsed,
  // never the client's spelling of it: the leader then decodes exactly what this node did.
  const forwarded = new Map<string, ForwardPlan>([
    // keyFromUrl succeeded in the route before it threw NOT_LEADER.
    [KEY_ROUTE, (request) => ({ path: `${canonicalPath(keyFromUrl(request.url, limits.keyBytesMax))}${canonicalQuery(request.query as Query)}`, answerBytesMax: keyAnswerBytesMax })],
    [LIST_ROUTE, (request) => ({ path: `${LIST_ROUTE}${canonicalQuery(request.query as Query)}`, answerBytesMax: listAnswerBytesMax })],
  ]);

  app.setErrorHandler(async (error, request, reply) => {
    if (error instanceof RequestError) return sendError(reply, error.error);
    const plan = forwarded.get(request.routeOptions.url ?? '');
    if (isRaftKvError(error, ErrorCode.NOT_LEADER) && error.leaderHint !== null && plan !== undefined) {
      return forward(request, reply, error.leaderHint, plan);
    }
    const mapped = toHttpError(error);
    if (mapped.unexpected) request.log.error({ err: error, route: request.routeOptions.url }, 'request failed unexpectedly');
    return sendError(reply, mapped);
  });

  async function forward(request: FastifyRequest, reply: FastifyReply, leader: NodeId, plan: ForwardPlan): Promise<FastifyReply> {
    const notLeader = (message: string): HttpError => httpError(ErrorCode.NOT_LEADER, message, { leaderHint: leader });
    // Loop protection: a forwarded request is forwarded no further.
    if (isForwarded(request)) return sendError(reply, notLeader(`node ${node.id} is not the leader either (request was already forwarded); retry at ${leader}`));
    // A member added at run time is not in the configured book; its membership change said where it serves.
    const address = httpAddresses[leader] ?? node.httpAddressOf(leader) ?? undefined;
    if (address === undefined || leader === node.id) return sendError(reply, notLeader(`node ${node.id} is not the leader and has no HTTP address for ${leader}`));
    const baseUrl = URL.canParse(address) ? new URL(address) : null;
    if (baseUrl?.protocol !== 'http:') return sendError(reply, notLeader(`node ${node.id} is not the leader and its HTTP address for ${leader}, ${address}, is not an http:// URL`));
    try {
      return await forwardToLeader(request, reply, { id: leader, baseUrl }, { ...plan(request), agent: forwardAgent, timeoutMs: forwardTimeoutMs });
    } catch (error) {
      if (!(error instanceof ForwardError)) {
        request.log.error({ err: error, leader, route: request.routeOptions.url }, 'forwarding failed unexpectedly');
        return sendError(reply, toHttpError(error));
      }
      request.log.warn({ err: error, leader, baseUrl: address }, 'forwarding to the leader failed');
      // Only a connection never established proves the leader never saw the request. Any
      // failure after it opened (reset, closed mid-answer, no answer in time) leaves the
      // outcome unknown: the write may have been applied, so the client must not be told it
      // certainly was not.
      if (!error.connected) return sendError(reply, notLeader(`leader ${leader} at ${address} is unreachable from ${node.id}: ${error.message}`));
      const what =
        error.reason === 'timeout'
          ? `leader ${leader} did not answer within ${forwardTimeoutMs} ms`
          : error.reason === 'answer-too-large'
            ? `the answer of leader ${leader} was too large to relay (${error.message})`
            : `the connection to leader ${leader} failed before it answered`;
      return sendError(reply, httpError(ErrorCode.TIMEOUT, `${what}; a write may still take effect`));
    }
  }

  registerKvRoutes(app, node, limits);
  registerNodeRoutes(app, node, metrics.registry);
  // Backups and state hashes (routes-backup.ts), for a node that can take them (RaftKvNode can).
  const { backup, stateHash } = node;
  if (backup !== undefined && stateHash !== undefined) registerBackupRoutes(app, { id: node.id, backup: backup.bind(node), stateHash: stateHash.bind(node) });
  for (const [route, plan] of registerMemberRoutes(app, { node, httpAddresses, transferTimeoutMs: options.transferTimeoutMs ?? TRANSFER_TIMEOUT_MS_DEFAULT })) forwarded.set(route, plan);
  return app;
}

function sendError(reply: FastifyReply, error: HttpError): FastifyReply {
  return reply.code(error.status).headers(error.headers).type('application/json; charset=utf-8').send(error.body);
}

function registerKvRoutes(app: FastifyInstance, node: ServedNode, limits: ServerLimits): void {
  app.get(KEY_ROUTE, async (request, reply) => {
    const key = keyFromUrl(request.url, limits.keyBytesMax);
    const query = request.query as Query;
    onlyParams(query, ['consistency']);
    const item = await node.get(key, { consistency: consistencyParam(query) });
    if (item === null) throw new RequestError(httpError(ServerErrorCode.KEY_NOT_FOUND, `key ${JSON.stringify(key)} does not exist`));
    const value = item.value;
    return reply
      .header(MOD_INDEX_HEADER, String(item.modIndex))
      .type('application/octet-stream')
      .send(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  });

  app.put(KEY_ROUTE, async (request) => {
    const key = keyFromUrl(request.url, limits.keyBytesMax);
    const query = request.query as Query;
    onlyParams(query, ['cas']);
    const expect = casParam(query);
    const options = writeOptions(request.headers);
    const value = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    if (value.byteLength > limits.valueBytesMax) {
      throw new RaftKvError(ErrorCode.VALUE_TOO_LARGE, `value of ${value.byteLength} bytes is larger than the limit of ${limits.valueBytesMax} bytes`);
    }
    if (expect === undefined) return { modIndex: (await node.put(key, value, options)).modIndex };
    const result = await node.cas(key, value, expect, options);
    if (result.ok) return { modIndex: result.modIndex };
    const currentModIndex = result.current === null ? null : result.current.modIndex;
    const wanted = 'absent' in expect ? 'absent' : `at modification index ${expect.modIndex}`;
    const found = currentModIndex === null ? 'absent' : `at modification index ${currentModIndex}`;
    throw new RequestError(httpError(ServerErrorCode.COMPARE_FAILED, `key ${JSON.stringify(key)} is ${found}, not ${wanted}`, { currentModIndex }));
  });

  app.delete(KEY_ROUTE, async (request) => {
    const key = keyFromUrl(request.url, limits.keyBytesMax);
    onlyParams(request.query as Query, []);
    const result = await node.delete(key, writeOptions(request.headers));
    return { modIndex: result.modIndex, existed: result.existed };
  });

  app.get(LIST_ROUTE, async (request) => {
    const query = request.query as Query;
    onlyParams(query, ['prefix', 'limit', 'consistency']);
    const { prefix, limit } = scanParams(query, limits.scanCountMax);
    const items = await node.scan(prefix, { limit, consistency: consistencyParam(query) });
    return { items: items.map(itemJson) };
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A value as JSON: UTF-8 text when it is valid UTF-8, else base64 (`encoding` says which). */
export function itemJson(item: KvItem): { key: string; value: string; encoding: 'utf8' | 'base64'; modIndex: number } {
  const { key, value, modIndex } = item;
  try {
    return { key, value: utf8.decode(value), encoding: 'utf8', modIndex };
  } catch {
    return { key, value: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'), encoding: 'base64', modIndex };
  }
}

function registerNodeRoutes(app: FastifyInstance, node: ServedNode, registry: ReturnType<typeof createMetrics>['registry']): void {
  app.get('/health', async () => ({ status: 'ok', id: node.id }));

  app.get('/ready', async (_request, reply) => {
    const s = node.status();
    const reason = s.lead === null ? 'no leader known' : s.appliedIndexKv < s.commit ? 'applied index is behind the commit index' : null;
    return reply.code(reason === null ? 200 : 503).send({ ready: reason === null, ...(reason === null ? {} : { reason }), leader: s.lead, commit: s.commit, applied: s.appliedIndexKv });
  });

  app.get('/v1/status', async () => statusJson(node.status()));

  app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
}

export function statusJson(s: NodeStatus): Record<string, unknown> {
  return {
    id: s.id,
    clusterId: s.clusterId,
    role: s.role,
    term: s.term,
    vote: s.vote,
    leader: s.lead,
    leadTransferee: s.leadTransferee,
    commit: s.commit,
    applied: s.appliedIndexKv,
    firstIndex: s.firstIndex,
    lastIndex: s.lastIndex,
    voters: s.confState.voters,
    learners: s.confState.learners,
    peerAddress: s.peerAddress,
    pendingWrites: s.pendingWrites,
    pendingReads: s.pendingReads,
    // Only the leader tracks its peers' progress.
    progress: s.progress === null ? null : Object.fromEntries(s.progress),
  };
}
