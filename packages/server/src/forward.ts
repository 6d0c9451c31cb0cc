import type { NodeId } from '@raftkv/raft';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const FORWARDED_HEADER = 'x-raftkv-forwarded';
export const FORWARDED_TO_HEADER = 'x-raftkv-forwarded-to';

/** Response headers carried back from the leader; everything else is the leader's business. */
const RELAYED_HEADERS = ['content-type', 'x-raftkv-mod-index', 'retry-after'] as const;
/** Request headers carried to the leader. */
const SENT_HEADERS = ['content-type', 'x-raftkv-client-id', 'x-raftkv-seq', 'accept'] as const;

export function isForwarded(request: FastifyRequest): boolean {
  return request.headers[FORWARDED_HEADER] !== undefined;
}

/**
 * Sends the request on to the leader's HTTP API once (never again: the leader sees the
 * forwarded header and answers 503 itself rather than forwarding further), and relays the
 * answer. A network failure or timeout rejects; the caller maps it to an error response.
 */
export async function forwardToLeader(
  request: FastifyRequest,
  reply: FastifyReply,
  leader: { readonly id: NodeId; readonly baseUrl: string },
  timeoutMs: number,
): Promise<FastifyReply> {
  const headers: Record<string, string> = { [FORWARDED_HEADER]: '1' };
  for (const name of SENT_HEADERS) {
    const value = request.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const body = Buffer.isBuffer(request.body) ? request.body : undefined;
  const response = await fetch(leaderUrl(leader.baseUrl, request.raw.url ?? '/'), {
    method: request.method,
    headers,
    ...(body === undefined ? {} : { body }),
    redirect: 'manual',
    signal: AbortSignal.timeout(timeoutMs),
  });
  const payload = Buffer.from(await response.arrayBuffer());
  reply.code(response.status);
  for (const name of RELAYED_HEADERS) {
    const value = response.headers.get(name);
    if (value !== null) reply.header(name, value);
  }
  reply.header(FORWARDED_TO_HEADER, leader.id);
  return reply.send(payload);
}

/**
 * The leader's URL for a request path. Concatenated, not resolved with `new URL(path, base)`:
 * a path like `//other-host/x` would otherwise send the request to another host.
 */
export function leaderUrl(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${path.startsWith('/') ? path : `/${path}`}`;
}
