import { Agent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { NodeId } from '@raftkv/raft';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const FORWARDED_HEADER = 'x-raftkv-forwarded';
export const FORWARDED_TO_HEADER = 'x-raftkv-forwarded-to';

/** Response headers carried back from the leader; everything else is the leader's business. */
const RELAYED_HEADERS = ['content-type', 'x-raftkv-mod-index', 'retry-after'] as const;
/** Request headers carried to the leader. */
const SENT_HEADERS = ['content-type', 'x-raftkv-client-id', 'x-raftkv-seq', 'accept'] as const;

/**
 * How long a connection to the leader may sit idle before this node closes it. Well under the
 * leader's keep-alive timeout (fastify's default is 72 s), so that it is this node that closes
 * an idle connection: a request written just as the leader closes one fails after the
 * connection was open, which must be answered "outcome unknown" although the leader never
 * read it.
 */
export const FORWARD_IDLE_TIMEOUT_MS = 4_000;

export function isForwarded(request: FastifyRequest): boolean {
  return request.headers[FORWARDED_HEADER] !== undefined;
}

/**
 * The connections one server forwards over: kept open between requests, so that forwarded
 * traffic does not pay a TCP handshake per request. Destroy it when the server closes.
 */
export function createForwardAgent(): Agent {
  return new Agent({ keepAlive: true, timeout: FORWARD_IDLE_TIMEOUT_MS });
}

/**
 * Why forwarding failed. `connected` is what the caller must tell the client: false means the
 * connection to the leader was never established (refused, unroutable, unknown host, or not
 * within the deadline), so no byte of the request left and the leader certainly never saw it;
 * true means the request may have reached the leader and a write may have taken effect.
 */
export class ForwardError extends Error {
  override readonly name = 'ForwardError';
  readonly connected: boolean;
  readonly reason: 'failed' | 'timeout' | 'answer-too-large';

  constructor(reason: ForwardError['reason'], connected: boolean, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.reason = reason;
    this.connected = connected;
  }
}

export interface ForwardTarget {
  readonly id: NodeId;
  /** The leader's base URL, "http://host:port" (a path after it is kept as a prefix). */
  readonly baseUrl: URL;
}

export interface ForwardOptions {
  /** Path and query to ask the leader for, already canonical (see `canonicalPath`): sent byte for byte. */
  readonly path: string;
  readonly agent: Agent;
  /** Deadline for the whole exchange, from connecting to the last byte of the answer. */
  readonly timeoutMs: number;
  /** Largest answer buffered; a longer one fails with `answer-too-large`. */
  readonly answerBytesMax: number;
  /**
   * The body to send instead of the request's raw bytes: a route whose body this node parsed
   * (JSON) sends what it parsed, re-encoded, so that the leader reads what this node read.
   */
  readonly body?: { readonly bytes: Buffer; readonly contentType: string };
}

/**
 * What a follower sends the leader for one request of a route that forwards: the path and query
 * (canonical, rebuilt from what this node parsed), the body when the route parsed it, and the
 * most of an answer a well-behaved leader sends for that route.
 */
export type ForwardPlan = (request: FastifyRequest) => Pick<ForwardOptions, 'path' | 'answerBytesMax' | 'body'>;

/**
 * Sends the request on to the leader's HTTP API once (never again: the leader sees the
 * forwarded header and answers 503 itself rather than forwarding further), and relays the
 * answer. Rejects with a ForwardError; the caller maps it to an error response.
 */
export async function forwardToLeader(request: FastifyRequest, reply: FastifyReply, leader: ForwardTarget, options: ForwardOptions): Promise<FastifyReply> {
  const headers: OutgoingHttpHeaders = { [FORWARDED_HEADER]: '1' };
  for (const name of SENT_HEADERS) {
    const value = request.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  let body = Buffer.isBuffer(request.body) ? request.body : undefined;
  if (options.body !== undefined) {
    body = options.body.bytes;
    headers['content-type'] = options.body.contentType;
  }
  const answer = await exchange(leader.baseUrl, request.method, headers, body, options);
  reply.code(answer.status);
  for (const name of RELAYED_HEADERS) {
    const value = answer.headers[name];
    if (typeof value === 'string') reply.header(name, value);
  }
  reply.header(FORWARDED_TO_HEADER, leader.id);
  return reply.send(answer.body);
}

export interface Answer {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

/**
 * One request with node:http, which sends `path` as given. (fetch would parse it as a WHATWG
 * URL first, which removes dot segments, `%2e%2e` included, and turns `\` into `/`: another
 * key.) Whether the socket had connected when something failed decides `connected`. Rejects
 * only with a ForwardError.
 */
export function exchange(baseUrl: URL, method: string, headers: OutgoingHttpHeaders, body: Buffer | undefined, options: ForwardOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let request: ClientRequest;
    try {
      request = httpRequest({
        agent: options.agent,
        // URL keeps the brackets of an IPv6 literal; a socket address has none.
        host: baseUrl.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: baseUrl.port === '' ? 80 : Number(baseUrl.port),
        method,
        path: `${baseUrl.pathname.replace(/\/+$/, '')}${options.path}`,
        headers,
      });
    } catch (error) {
      // Refused before any socket was made (a bad option): nothing was sent.
      reject(new ForwardError('failed', false, `could not send to the leader: ${errorMessage(error)}`, error));
      return;
    }
    let connected = false;
    let settled = false;
    const finish = (outcome: { answer: Answer } | { error: ForwardError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if ('answer' in outcome) return resolve(outcome.answer);
      // A connection left mid-request or mid-answer cannot carry another request.
      request.destroy();
      reject(outcome.error);
    };
    const failed = (error: unknown): void => {
      const what = connected ? 'the connection to the leader failed' : 'could not connect to the leader';
      finish({ error: new ForwardError('failed', connected, `${what}: ${errorMessage(error)}`, error) });
    };
    const timer = setTimeout(() => {
      const message = connected ? `no answer within ${options.timeoutMs} ms` : `no connection within ${options.timeoutMs} ms`;
      finish({ error: new ForwardError('timeout', connected, message) });
    }, options.timeoutMs);

    request.on('socket', (socket) => {
      // A kept-alive socket is connected already; a new one says so with 'connect', before
      // which nothing written to it has left this process.
      if (request.reusedSocket || !socket.connecting) connected = true;
      else socket.once('connect', () => void (connected = true));
    });
    request.on('error', failed);
    request.on('close', () => failed(new Error('connection closed before the answer')));
    request.on('response', (response) => {
      const status = response.statusCode;
      if (status === undefined) return failed(new Error('an answer without a status code'));
      const tooLarge = (): void =>
        finish({ error: new ForwardError('answer-too-large', true, `the leader's answer is larger than ${options.answerBytesMax} bytes`) });
      if (Number(response.headers['content-length']) > options.answerBytesMax) return tooLarge();
      const chunks: Buffer[] = [];
      let received = 0;
      response.on('data', (chunk: Buffer) => {
        received += chunk.byteLength;
        if (received > options.answerBytesMax) return tooLarge();
        chunks.push(chunk);
      });
      response.on('end', () => finish({ answer: { status, headers: response.headers, body: Buffer.concat(chunks, received) } }));
      response.on('error', failed);
      response.on('close', () => failed(new Error('connection closed before the end of the answer')));
    });
    request.end(body);
  });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
