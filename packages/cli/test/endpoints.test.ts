import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { call, callOk, NoAnswerError, OutcomeUnknownError, type Endpoints } from '@raftkv/cli';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void;

/** A member stand-in on a real port; records what it received. */
async function member(handler: Handler): Promise<{ url: string; received: string[] }> {
  const received: string[] = [];
  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      received.push(`${request.method} ${request.url} ${body}`);
      handler(request, body, response);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** A port nothing listens on. */
async function closedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

const endpoints = (...urls: string[]): Endpoints => ({ urls, source: '--endpoints' });
const soon = (ms = 5_000): number => performance.now() + ms;

describe('trying the endpoints in turn', () => {
  it('passes over an unreachable endpoint and one that knows no leader, to the first that answers', async () => {
    const dead = await closedUrl();
    const leaderless = await member((_q, _b, r) => json(r, 503, { code: 'RAFTKV_NOT_LEADER', message: 'no leader known' }));
    const good = await member((_q, body, r) => json(r, 200, { echo: JSON.parse(body) as unknown }));
    const answer = await callOk(endpoints(dead, leaderless.url, good.url), 'POST', '/v1/members', { body: { id: 'n4' }, deadlineMs: soon() });
    expect(answer).toEqual({ endpoint: good.url, status: 200, body: { echo: { id: 'n4' } } });
    expect(leaderless.received).toEqual(['POST /v1/members {"id":"n4"}']);
  });

  it('retries a change refused as pending, with back-off, until it goes through', async () => {
    let refusals = 2;
    const busy = await member((_q, _b, r) => (refusals-- > 0 ? json(r, 409, { code: 'RAFTKV_CONF_CHANGE_PENDING', message: 'retry' }) : json(r, 200, { ok: true })));
    const retried: string[] = [];
    const answer = await call(endpoints(busy.url), 'DELETE', '/v1/members/n3', { deadlineMs: soon(), onRetry: (why) => retried.push(why) });
    expect(answer.status).toBe(200);
    expect(busy.received).toHaveLength(3);
    expect(retried[0]).toContain('RAFTKV_CONF_CHANGE_PENDING: retry');
  });

  it('returns any other refusal as it is; callOk turns it into an error with its code', async () => {
    const refuses = await member((_q, _b, r) => json(r, 409, { code: 'RAFTKV_CONF_CHANGE_INVALID', message: 'n3 is not a member' }));
    expect((await call(endpoints(refuses.url), 'DELETE', '/v1/members/n3', { deadlineMs: soon() })).status).toBe(409);
    await expect(callOk(endpoints(refuses.url), 'DELETE', '/v1/members/n3', { deadlineMs: soon() })).rejects.toMatchObject({
      code: 'RAFTKV_CONF_CHANGE_INVALID',
      message: `n3 is not a member (answered by ${refuses.url})`,
    });
    expect(refuses.received).toHaveLength(2);
  });

  it('never sends a change again once it may have arrived: a dropped connection or a 504 is an outcome unknown', async () => {
    const drops = await member((request) => request.socket.destroy());
    const second = await member((_q, _b, r) => json(r, 200, {}));
    await expect(call(endpoints(drops.url, second.url), 'POST', '/v1/members', { body: {}, deadlineMs: soon() })).rejects.toBeInstanceOf(OutcomeUnknownError);
    const slow = await member((_q, _b, r) => json(r, 504, { code: 'RAFTKV_TIMEOUT', message: 'the leader did not answer' }));
    await expect(call(endpoints(slow.url, second.url), 'POST', '/v1/leader/transfer', { deadlineMs: soon() })).rejects.toThrow(/may or may not have been made/);
    expect(second.received).toEqual([]);
    // A read is safe to send again.
    expect((await call(endpoints(drops.url, second.url), 'GET', '/v1/members', { deadlineMs: soon() })).endpoint).toBe(second.url);
  });

  it('gives up at once when no endpoint can be reached, if asked to; else at the deadline', async () => {
    const dead = await closedUrl();
    const started = performance.now();
    await expect(call(endpoints(dead), 'GET', '/v1/members', { deadlineMs: soon(10_000), failWhenUnreachable: true })).rejects.toThrow(/ECONNREFUSED/);
    expect(performance.now() - started).toBeLessThan(2_000);
    const leaderless = await member((_q, _b, r) => json(r, 503, { code: 'RAFTKV_NOT_LEADER', message: 'no leader known' }));
    const error = await call(endpoints(leaderless.url), 'GET', '/v1/members', { deadlineMs: soon(300), failWhenUnreachable: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoAnswerError);
    expect((error as Error).message).toMatch(/answered GET \/v1\/members in time: .*RAFTKV_NOT_LEADER: no leader known/);
    expect(leaderless.received.length).toBeGreaterThan(1);
  });
});
