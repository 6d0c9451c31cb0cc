import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type ServerOptions } from '../src/index.js';
import { FakeNode, notLeader } from './fake-node.js';

interface Received {
  method: string;
  url: string;
  headers: Record<string, unknown>;
  body: string;
}

const open: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((a) => a.close()));
});

/** A stand-in leader on a real socket that records every request and answers 200 with a mod index. */
async function fakeLeader(): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const leader = Fastify();
  leader.removeAllContentTypeParsers();
  leader.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  leader.all('/*', async (request, reply) => {
    received.push({ method: request.method, url: request.url, headers: request.headers, body: Buffer.isBuffer(request.body) ? request.body.toString() : '' });
    return reply.header('x-raftkv-mod-index', '42').header('x-leader-secret', 'no').type('application/octet-stream').send(Buffer.from('from-leader'));
  });
  open.push(leader);
  return { url: await leader.listen({ host: '127.0.0.1', port: 0 }), received };
}

function follower(options: Partial<ServerOptions> & { httpAddresses: ServerOptions['httpAddresses'] }): { node: FakeNode; app: FastifyInstance } {
  const node = new FakeNode('n2', 'n1');
  const app = createServer({ node, ...options });
  open.push(app);
  return { node, app };
}

describe('forwarding to the leader', () => {
  it('forwards a write refused with NOT_LEADER to the hinted leader, once, with body, query and session', async () => {
    const leader = await fakeLeader();
    const { node, app } = follower({ httpAddresses: { n1: leader.url } });
    node.failWith = notLeader('n1');
    const r = await app.inject({
      method: 'PUT',
      url: '/v1/kv/a%2Fb/c?cas=absent',
      payload: 'value-bytes',
      headers: { 'content-type': 'text/plain', 'x-raftkv-client-id': 'c1', 'x-raftkv-seq': '3', cookie: 'not-forwarded' },
    });
    expect(r.statusCode).toBe(200);
    expect(r.body).toBe('from-leader');
    expect(r.headers['x-raftkv-mod-index']).toBe('42');
    expect(r.headers['x-raftkv-forwarded-to']).toBe('n1');
    expect(r.headers['x-leader-secret']).toBeUndefined();
    expect(leader.received).toHaveLength(1);
    const got = leader.received[0]!;
    expect(got).toMatchObject({ method: 'PUT', url: '/v1/kv/a%2Fb/c?cas=absent', body: 'value-bytes' });
    expect(got.headers).toMatchObject({ 'x-raftkv-forwarded': '1', 'content-type': 'text/plain', 'x-raftkv-client-id': 'c1', 'x-raftkv-seq': '3' });
    expect(got.headers['cookie']).toBeUndefined();
  });

  it('forwards deletes and reads that fail with a leader hint, but not status pages', async () => {
    const leader = await fakeLeader();
    const { node, app } = follower({ httpAddresses: { n1: `${leader.url}/` } });
    for (const request of [{ method: 'DELETE', url: '/v1/kv/k' }, { method: 'GET', url: '/v1/kv/k?consistency=lease' }, { method: 'GET', url: '/v1/kv?prefix=p' }] as const) {
      node.failWith = notLeader('n1');
      expect((await app.inject(request)).statusCode).toBe(200);
    }
    expect(leader.received.map((x) => `${x.method} ${x.url}`)).toEqual(['DELETE /v1/kv/k', 'GET /v1/kv/k?consistency=lease', 'GET /v1/kv?prefix=p']);
  });

  it('never forwards a request that was already forwarded: 503 NOT_LEADER with Retry-After instead', async () => {
    const leader = await fakeLeader();
    const { node, app } = follower({ httpAddresses: { n1: leader.url } });
    node.failWith = notLeader('n1');
    const r = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v', headers: { 'x-raftkv-forwarded': '1' } });
    expect(r.statusCode).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.json()).toMatchObject({ code: 'RAFTKV_NOT_LEADER', leaderHint: 'n1' });
    expect(leader.received).toHaveLength(0);
  });

  it('answers 503 when no leader is known or its address is not configured', async () => {
    const { node, app } = follower({ httpAddresses: {} });
    node.failWith = notLeader(null);
    const none = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' });
    expect(none.statusCode).toBe(503);
    expect(none.json()).toEqual({ code: 'RAFTKV_NOT_LEADER', message: 'not the leader' });
    node.failWith = notLeader('n9');
    const unknown = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' });
    expect(unknown.statusCode).toBe(503);
    expect(unknown.json()).toMatchObject({ leaderHint: 'n9' });
  });

  it('answers 503 when the leader is unreachable and 504 when it does not answer in time', async () => {
    const closed = Fastify();
    const deadUrl = await closed.listen({ host: '127.0.0.1', port: 0 });
    await closed.close();
    const slow = Fastify();
    slow.removeAllContentTypeParsers();
    slow.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
    slow.all('/*', () => new Promise(() => {})); // never answers
    open.push(slow);
    const slowUrl = await slow.listen({ host: '127.0.0.1', port: 0 });
    const { node, app } = follower({ httpAddresses: { dead: deadUrl, slow: slowUrl }, forwardTimeoutMs: 100 });
    node.failWith = notLeader('dead');
    const dead = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' });
    expect(dead.statusCode).toBe(503);
    expect(dead.json()).toMatchObject({ code: 'RAFTKV_NOT_LEADER', leaderHint: 'dead' });
    node.failWith = notLeader('slow');
    const late = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' });
    expect(late.statusCode).toBe(504);
    expect(late.json()).toMatchObject({ code: 'RAFTKV_TIMEOUT' });
    await slow.close().catch(() => undefined);
  });

  it('answers 504 (outcome unknown), not NOT_LEADER, when the leader drops the connection after the request was sent', async () => {
    // A leader that reads the request and then resets the connection may have applied the write.
    const sockets = new Set<Socket>();
    const rude = createNetServer((socket) => {
      sockets.add(socket);
      socket.once('data', () => socket.resetAndDestroy());
    });
    await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
    const { port } = rude.address() as AddressInfo;
    try {
      const { node, app } = follower({ httpAddresses: { rude: `http://127.0.0.1:${port}` }, forwardTimeoutMs: 2_000 });
      node.failWith = notLeader('rude');
      const r = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' });
      expect(r.statusCode).toBe(504);
      expect(r.json()).toMatchObject({ code: 'RAFTKV_TIMEOUT' });
      expect(r.json().message).toMatch(/may still take effect/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => rude.close(() => resolve()));
    }
  });

  it('keeps a forwarded path on the leader host even when it starts with //', async () => {
    const leader = await fakeLeader();
    const { node, app } = follower({ httpAddresses: { n1: leader.url } });
    node.failWith = notLeader('n1');
    expect((await app.inject({ method: 'GET', url: '/v1/kv//evil.example/x' })).statusCode).toBe(200);
    expect(leader.received[0]?.url).toBe('/v1/kv//evil.example/x');
  });
});
