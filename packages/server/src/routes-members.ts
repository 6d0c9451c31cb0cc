/**
 * The membership routes (docs/http-api.md#membership): list the members, add a learner, promote
 * one, remove a member, hand leadership over. Changes are the leader's to make: on a follower
 * each route answers NOT_LEADER naming the leader, and the server forwards the request there
 * exactly as it forwards a key-value write (the plans returned by `registerMemberRoutes`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MemberView } from '@raftkv/node';
import { ErrorCode, RaftKvError, Role, type NodeId } from '@raftkv/raft';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { httpError, ServerErrorCode } from './errors.js';
import type { ForwardPlan } from './forward.js';
import { canonicalEncode, canonicalQuery, onlyParams, RequestError, single } from './request.js';
import type { ServedNode } from './server.js';

export const MEMBERS_ROUTE = '/v1/members';
export const MEMBER_ROUTE = '/v1/members/:id';
export const PROMOTE_ROUTE = '/v1/members/:id/promote';
export const TRANSFER_ROUTE = '/v1/leader/transfer';

export const TRANSFER_TIMEOUT_MS_DEFAULT = 5_000;
/** How often a transfer in progress is checked for its outcome. */
const TRANSFER_POLL_MS = 10;
/**
 * The most of a membership answer a forward relays: a listing of every member. A member is
 * under 3 KB (an id of at most 256 characters, addresses of at most 1024), so this is room for
 * over a thousand members, far more than a cluster has.
 */
const MEMBERS_ANSWER_BYTES_MAX = 4 * 1024 * 1024;
/** The node refuses longer ids (`RaftKvNode.addLearner`). */
const NODE_ID_LENGTH_MAX = 256;
/**
 * A new member's id: it becomes a file name (`raftkv cluster` keeps `<dir>/<id>`) and a URL path
 * segment, so it is kept plain. The same rule as `raftkv start --id`.
 */
const NEW_NODE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
/** What a member's change records of an address (the state machine keeps at most that). */
const ADDRESS_LENGTH_MAX = 1024;

/** `POST /v1/members`: the JSON body, refused (400) when it has any other property or type. */
const ADD_MEMBER_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'peerAddress'],
  properties: {
    id: { type: 'string', pattern: NEW_NODE_ID_PATTERN },
    peerAddress: { type: 'string', minLength: 1, maxLength: ADDRESS_LENGTH_MAX },
    httpAddress: { type: 'string', minLength: 1, maxLength: ADDRESS_LENGTH_MAX },
    uid: { type: 'string', minLength: 1, maxLength: 128 },
    autoPromote: { type: 'boolean' },
  },
} as const;

interface AddMemberBody {
  readonly id: NodeId;
  readonly peerAddress: string;
  readonly httpAddress?: string;
  readonly uid?: string;
  readonly autoPromote?: boolean;
}

/** One member as the routes answer it. `match`, `lag` and `replication` are null except on the leader. */
export interface MemberJson {
  readonly id: NodeId;
  readonly role: 'voter' | 'learner';
  readonly peerAddress: string | null;
  readonly httpAddress: string | null;
  readonly isLeader: boolean;
  readonly autoPromote: boolean;
  readonly match: number | null;
  readonly lag: number | null;
  readonly replication: 'probe' | 'replicate' | 'snapshot' | null;
}

/** The answer of every membership route but the transfer: the configuration as this node sees it. */
export interface MembersJson {
  readonly leader: NodeId | null;
  readonly members: readonly MemberJson[];
}

export interface MemberRoutesContext {
  readonly node: ServedNode;
  /** The configured HTTP addresses (founding members are known only there). */
  readonly httpAddresses: Readonly<Record<NodeId, string>>;
  readonly transferTimeoutMs: number;
}

type Query = Readonly<Record<string, unknown>>;

/**
 * Registers the routes in their own fastify scope, where every body is parsed as JSON (the rest
 * of the API reads bodies as raw bytes). Returns how each route that changes something is
 * forwarded to the leader.
 */
export function registerMemberRoutes(app: FastifyInstance, ctx: MemberRoutesContext): Map<string, ForwardPlan> {
  const { node } = ctx;
  const listing = (): MembersJson => membersJson(ctx);

  void app.register(async (scope) => {
    // Any content type, so that `curl -d '{...}'` (form-encoded by default) works as well as `--json`.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'string' }, (_request, text, done) => {
      // An empty body is no body: the route's schema then says what is missing.
      if (text === '') return done(null, undefined);
      try {
        done(null, JSON.parse(text as string));
      } catch (error) {
        done(new RequestError(httpError(ServerErrorCode.BAD_REQUEST, `the body is not JSON: ${error instanceof Error ? error.message : String(error)}`)), undefined);
      }
    });

    scope.get(MEMBERS_ROUTE, async (request) => {
      onlyParams(request.query as Query, []);
      return listing();
    });

    scope.post(MEMBERS_ROUTE, { schema: { body: ADD_MEMBER_BODY } }, async (request) => {
      onlyParams(request.query as Query, []);
      const body = request.body as AddMemberBody;
      const httpAddress = body.httpAddress === undefined ? undefined : httpBaseUrl(body.httpAddress);
      requireLeader(node);
      await node.addLearner(body.id, {
        peerAddress: body.peerAddress,
        ...(httpAddress === undefined ? {} : { httpAddress }),
        ...(body.uid === undefined ? {} : { uid: body.uid }),
        autoPromote: body.autoPromote ?? false,
      });
      return listing();
    });

    scope.post(PROMOTE_ROUTE, async (request) => {
      onlyParams(request.query as Query, []);
      const id = memberIdFromUrl(request.url);
      requireLeader(node);
      await node.promote(id);
      return listing();
    });

    scope.delete(MEMBER_ROUTE, async (request) => {
      onlyParams(request.query as Query, []);
      const id = memberIdFromUrl(request.url);
      requireLeader(node);
      await node.removeMember(id);
      return listing();
    });

    scope.post(TRANSFER_ROUTE, async (request) => {
      const query = request.query as Query;
      onlyParams(query, ['to']);
      const to = single(query, 'to');
      if (to === '') throw new RequestError(httpError(ServerErrorCode.BAD_REQUEST, 'to must name a voter'));
      requireLeader(node);
      return transfer(ctx, to);
    });
  });

  const plan =
    (path: (request: FastifyRequest) => string): ForwardPlan =>
    (request) => ({ path: `${path(request)}${canonicalQuery(request.query as Query)}`, answerBytesMax: MEMBERS_ANSWER_BYTES_MAX });
  const memberPath = (request: FastifyRequest): string => `${MEMBERS_ROUTE}/${canonicalEncode(memberIdFromUrl(request.url))}`;
  return new Map<string, ForwardPlan>([
    // The body the leader gets is the one this node parsed and checked, re-encoded.
    [MEMBERS_ROUTE, (request) => ({ ...plan(() => MEMBERS_ROUTE)(request), body: { bytes: Buffer.from(JSON.stringify(request.body)), contentType: 'application/json' } })],
    [MEMBER_ROUTE, plan(memberPath)],
    [PROMOTE_ROUTE, plan((request) => `${memberPath(request)}/promote`)],
    [TRANSFER_ROUTE, plan(() => TRANSFER_ROUTE)],
  ]);
}

/** The members as this node sees them, with the HTTP addresses the options gave when the log did not say. */
export function membersJson(ctx: Pick<MemberRoutesContext, 'node' | 'httpAddresses'>): MembersJson {
  const { node, httpAddresses } = ctx;
  const status = node.status();
  return {
    leader: status.lead,
    members: node.members().map((m) => memberJson(m, httpAddresses[m.id] ?? null, m.id === node.id ? status.peerAddress : null)),
  };
}

function memberJson(m: MemberView, configuredHttp: string | null, ownPeer: string | null): MemberJson {
  return {
    id: m.id,
    role: m.role,
    peerAddress: m.peerAddress ?? (ownPeer === '' ? null : ownPeer),
    httpAddress: m.httpAddress ?? configuredHttp,
    isLeader: m.isLeader,
    autoPromote: m.autoPromote,
    match: m.match ?? null,
    lag: m.lag ?? null,
    replication: m.replication ?? null,
  };
}

/**
 * Membership changes and transfers are decided by the leader. Checked before the node is asked,
 * so that a follower changes nothing of its own (addLearner records the new member's addresses
 * first) and its NOT_LEADER names the leader to forward to.
 */
function requireLeader(node: ServedNode): void {
  if (node.role !== Role.Leader) throw new RaftKvError(ErrorCode.NOT_LEADER, `node ${node.id} is not the leader`, { leaderHint: node.leader });
}

/**
 * Starts a leadership transfer (to `to`, or to the voter whose log is furthest on) and waits for
 * its outcome: this node a follower of another leader. A transfer the leader abandons (the target
 * did not catch up or did not answer within an election timeout) or that does not end within
 * `transferTimeoutMs` is a 504 TIMEOUT; the old leader then still leads.
 */
async function transfer(ctx: MemberRoutesContext, to: NodeId | undefined): Promise<{ from: NodeId; to: NodeId; leader: NodeId }> {
  const { node } = ctx;
  const from = node.id;
  if (to === from) return { from, to, leader: from };
  const target = node.transferLeadership(to);
  const deadline = performance.now() + ctx.transferTimeoutMs;
  let seenTransferring = false;
  for (;;) {
    const leader = node.leader;
    if (node.role !== Role.Leader && leader !== null && leader !== from) return { from, to: target, leader };
    if (node.role === Role.Leader) {
      const transferring = node.status().leadTransferee !== null;
      // Started, then no longer in progress while this node still leads: the core gave up.
      if (seenTransferring && !transferring) {
        throw new RaftKvError(ErrorCode.TIMEOUT, `the transfer of leadership from ${from} to ${target} was abandoned (${target} did not catch up or answer within an election timeout); ${from} still leads`);
      }
      seenTransferring ||= transferring;
    }
    if (performance.now() > deadline) {
      throw new RaftKvError(ErrorCode.TIMEOUT, `leadership did not move from ${from} to ${target} within ${ctx.transferTimeoutMs} ms (leader now: ${leader ?? 'none known'})`);
    }
    await sleep(TRANSFER_POLL_MS);
  }
}

/**
 * The member id of a `/v1/members/<id>[/promote]` request, from the raw URL: the path segment
 * after the prefix, percent-decoded once (so `%2F` is part of an id, never a separator).
 */
export function memberIdFromUrl(rawUrl: string): NodeId {
  const queryAt = rawUrl.indexOf('?');
  const path = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
  const prefix = `${MEMBERS_ROUTE}/`;
  if (!path.startsWith(prefix)) throw bad(`member routes start with ${prefix}`);
  const encoded = path.slice(prefix.length).split('/', 1)[0]!;
  if (encoded.length > 3 * NODE_ID_LENGTH_MAX) throw bad(`a node id is at most ${NODE_ID_LENGTH_MAX} characters`);
  let id: string;
  try {
    id = decodeURIComponent(encoded);
  } catch {
    throw bad('the node id is not valid percent-encoded UTF-8');
  }
  if (id === '' || id.length > NODE_ID_LENGTH_MAX) throw bad(`a node id is 1 to ${NODE_ID_LENGTH_MAX} characters`);
  return id;
}

/** An `http://` or `https://` base URL (no path, query or fragment), as its origin. */
function httpBaseUrl(text: string): string {
  const url = URL.canParse(text) ? new URL(text) : null;
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw bad(`httpAddress ${JSON.stringify(text)} is not an http:// URL`);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw bad(`httpAddress ${JSON.stringify(text)} must be a base URL such as http://10.0.0.4:8001 (no path, query, fragment or credentials)`);
  }
  return url.origin;
}

function bad(message: string): RequestError {
  return new RequestError(httpError(ServerErrorCode.BAD_REQUEST, message));
}
