import { once } from 'node:events';
import { Agent } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwardAgent, exchange, ForwardError } from '../src/forward.js';
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

/** A stand-in leader on a real socket that records every request and connection and answers 200 with a mod index. */
async function fakeLeader(): Promise<{ url: string; received: Received[]; connections: Socket[] }> {
  const received: Received[] = [];
  const connections: Socket[] = [];
  const leader = Fastify();
  leader.server.on('connection', (socket: Socket) => connections.push(socket));
  leader.removeAllContentTypeParsers();
  leader.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  leader.all('/*', async (request, reply) => {
    received.push({ method: request.method, url: request.url, headers: request.headers, body: Buffer.isBuffer(request.body) ? request.body.toString() : '' });
    return reply.header('x-raftkv-mod-index', '42').header('x-leader-secret', 'no').type('application/octet-stream').send(Buffer.from('from-leader'));
  });
  open.push(leader);
  return { url: await leader.listen({ host: '127.0.0.1', port: 0 }), received, connections };
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
    // The key a/b/c in its canonical spelling: the leader decodes the same key.
    expect(got).toMatchObject({ method: 'PUT', url: '/v1/kv/a/b/c?cas=absent', body: 'value-bytes' });
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

  it('keeps a path after the leader address as a prefix', async () => {
    const leader = await fakeLeader();
    const { node, app } = follower({ httpAddresses: { n1: `${leader.url}/raftkv/` } });
    node.failWith = notLeader('n1');
    expect((await app.inject({ method: 'GET', url: '/v1/kv/k?consistency=lease' })).statusCode).toBe(200);
    expect(leader.received[0]?.url).toBe('/raftkv/v1/kv/k?consistency=lease');
  });

  it('answers 503 for a leader address that is not an http:// URL, sending nothing', async () => {
    const { node, app } = follower({ httpAddresses: { tls: 'https://127.0.0.1:1', junk: 'not a url' } });
    for (const leader of ['tls', 'junk']) {
      node.failWith = notLeader(leader);
      const r = await app.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v' });
      expect(r.statusCode).toBe(503);
      expect(r.json()).toMatchObject({ code: 'RAFTKV_NOT_LEADER', leaderHint: leader });
      expect(r.json<{ message: string }>().message).toMatch(/not an http:\/\/ URL/);
    }
  });

  it('reuses one connection to the leader for sequential forwards, and closes it when the server closes', async () => {
    const leader = await fakeLeader();
    const node = new FakeNode('n2', 'n1');
    const app = createServer({ node, httpAddresses: { n1: leader.url } });
    try {
      for (let i = 0; i < 5; i++) {
        node.failWith = notLeader('n1');
        expect((await app.inject({ method: 'PUT', url: `/v1/kv/k${i}`, payload: 'v' })).statusCode).toBe(200);
      }
      expect(leader.received).toHaveLength(5);
      expect(leader.connections).toHaveLength(1);
    } finally {
      await app.close();
    }
    const [connection] = leader.connections;
    if (connection !== undefined && !connection.destroyed) await once(connection, 'close');
  });

  it('relays an answer as large as a value, and answers 504 for one larger than any leader sends', async () => {
    const valueBytesMax = 100;
    const leader = Fastify();
    leader.removeAllContentTypeParsers();
    leader.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
    // The key <n> answers n bytes with a Content-Length; <n>-chunked streams them without one.
    leader.all('/v1/kv/:size', async (request, reply) => {
      const [size = '', chunked] = (request.params as { size: string }).size.split('-');
      const body = Buffer.alloc(Number(size), 'x');
      return reply.type('application/octet-stream').send(chunked === undefined ? body : Readable.from([body.subarray(0, 10), body.subarray(10)]));
    });
    open.push(leader);
    const url = await leader.listen({ host: '127.0.0.1', port: 0 });
    const { node, app } = follower({ httpAddresses: { n1: url }, limits: { valueBytesMax, keyBytesMax: 16 } });
    for (const chunked of ['', '-chunked']) {
      node.failWith = notLeader('n1');
      const fits = await app.inject({ method: 'GET', url: `/v1/kv/${valueBytesMax}${chunked}` });
      expect({ chunked, status: fits.statusCode, bytes: fits.rawPayload.byteLength }).toEqual({ chunked, status: 200, bytes: valueBytesMax });
      node.failWith = notLeader('n1');
      const huge = await app.inject({ method: 'GET', url: `/v1/kv/100000${chunked}` });
      expect({ chunked, status: huge.statusCode }).toEqual({ chunked, status: 504 });
      expect(huge.json()).toMatchObject({ code: 'RAFTKV_TIMEOUT' });
      expect(huge.json<{ message: string }>().message).toMatch(/too large/);
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

describe('one exchange with the leader', () => {
  const options = { path: '/v1/kv/k', timeoutMs: 150, answerBytesMax: 1000 };

  it('fails as never connected when the connection is not made within the deadline', async () => {
    // A name lookup that never answers holds the socket before its connection attempt.
    const agent = new Agent({ lookup: () => undefined });
    try {
      const failure = exchange(new URL('http://leader.test:80'), 'PUT', {}, Buffer.from('v'), { ...options, agent });
      await expect(failure).rejects.toBeInstanceOf(ForwardError);
      await expect(failure).rejects.toMatchObject({ reason: 'timeout', connected: false });
    } finally {
      agent.destroy();
    }
  });

  it('fails as connected when the leader accepts the connection but does not answer in time', async () => {
    const sockets = new Set<Socket>();
    const silent = createNetServer((socket) => void sockets.add(socket.resume()));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const agent = createForwardAgent();
    try {
      const { port } = silent.address() as AddressInfo;
      const failure = exchange(new URL(`http://127.0.0.1:${port}`), 'PUT', {}, Buffer.from('v'), { ...options, agent });
      await expect(failure).rejects.toMatchObject({ reason: 'timeout', connected: true });
    } finally {
      agent.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('fails as never connected when the connection is refused', async () => {
    const closed = createNetServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const agent = createForwardAgent();
    try {
      const failure = exchange(new URL(`http://127.0.0.1:${port}`), 'GET', {}, undefined, { ...options, agent });
      await expect(failure).rejects.toMatchObject({ reason: 'failed', connected: false, cause: { code: 'ECONNREFUSED' } });
    } finally {
      agent.destroy();
    }
  });
});
