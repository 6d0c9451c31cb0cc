import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, RaftKvError, Role } from '@raftkv/raft';
import { createServer, HTTP_STATUS, type ServerOptions } from '../src/index.js';
import { FakeNode, notLeader } from './fake-node.js';

let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

function serve(node: FakeNode, options: Partial<ServerOptions> = {}): FastifyInstance {
  app = createServer({ node, httpAddresses: {}, ...options });
  return app;
}

describe('key routes', () => {
  it('puts, gets and deletes a value as raw bytes with its modification index', async () => {
    const node = new FakeNode();
    const s = serve(node);
    const put = await s.inject({ method: 'PUT', url: '/v1/kv/users/alice', payload: Buffer.from([0, 1, 255]), headers: { 'content-type': 'image/png' } });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ modIndex: 1 });
    const get = await s.inject({ method: 'GET', url: '/v1/kv/users/alice' });
    expect(get.statusCode).toBe(200);
    expect(get.headers['content-type']).toBe('application/octet-stream');
    expect(get.headers['x-raftkv-mod-index']).toBe('1');
    expect([...get.rawPayload]).toEqual([0, 1, 255]);
    const del = await s.inject({ method: 'DELETE', url: '/v1/kv/users/alice' });
    expect(del.json()).toEqual({ modIndex: 2, existed: true });
    const again = await s.inject({ method: 'DELETE', url: '/v1/kv/users/alice' });
    expect(again.json()).toEqual({ modIndex: 3, existed: false });
    const gone = await s.inject({ method: 'GET', url: '/v1/kv/users/alice' });
    expect(gone.statusCode).toBe(404);
    expect(gone.json()).toMatchObject({ code: 'RAFTKV_KEY_NOT_FOUND' });
  });

  it('accepts any content type, or none, and an empty body', async () => {
    const node = new FakeNode();
    const s = serve(node);
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/j', payload: '{"not":"parsed"}', headers: { 'content-type': 'application/json' } })).statusCode).toBe(200);
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/n', payload: 'plain' })).statusCode).toBe(200);
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/e' })).statusCode).toBe(200);
    expect(new TextDecoder().decode(node.data.get('j')?.value)).toBe('{"not":"parsed"}');
    expect(node.data.get('e')?.value.byteLength).toBe(0);
  });

  it('takes the key from the path: slashes kept, percent-escapes decoded once as UTF-8', async () => {
    const node = new FakeNode();
    const s = serve(node);
    for (const [url, key] of [
      ['/v1/kv/a/b/c', 'a/b/c'],
      ['/v1/kv/x%2Fy', 'x/y'],
      ['/v1/kv/q%3Fz%20w', 'q?z w'],
      ['/v1/kv/%E2%82%AC', '€'],
      ['/v1/kv/100%25', '100%'],
    ] as const) {
      expect((await s.inject({ method: 'PUT', url, payload: key })).statusCode).toBe(200);
      expect(node.calls.at(-1)).toMatchObject({ op: 'put', key });
    }
  });

  it('refuses empty, badly escaped and non-UTF-8 keys with 400 KEY_INVALID, and long keys with 413', async () => {
    const s = serve(new FakeNode(), { limits: { keyBytesMax: 8 } });
    for (const url of ['/v1/kv/', '/v1/kv/%ZZ', '/v1/kv/%FF', '/v1/kv/%ED%A0%80', '/v1/kv/%']) {
      const r = await s.inject({ method: 'GET', url });
      expect({ url, status: r.statusCode, code: r.json<{ code: string }>().code }).toEqual({ url, status: 400, code: 'RAFTKV_KEY_INVALID' });
    }
    for (const url of ['/v1/kv/123456789', `/v1/kv/${'%E2%82%AC'.repeat(3)}`, `/v1/kv/${'a'.repeat(5000)}`]) {
      const r = await s.inject({ method: 'PUT', url, payload: 'v' });
      expect(r.statusCode).toBe(413);
      expect(r.json()).toMatchObject({ code: 'RAFTKV_KEY_TOO_LARGE' });
    }
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/12345678', payload: 'v' })).statusCode).toBe(200);
  });

  it('refuses a value over valueBytesMax with 413 JSON, whether fastify or the route sees it first', async () => {
    const node = new FakeNode();
    const s = serve(node, { limits: { valueBytesMax: 100 } });
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/k', payload: Buffer.alloc(100) })).statusCode).toBe(200);
    for (const size of [101, 100 + 1024 + 1, 1_000_000]) {
      const r = await s.inject({ method: 'PUT', url: '/v1/kv/k', payload: Buffer.alloc(size) });
      expect(r.statusCode).toBe(413);
      expect(r.headers['content-type']).toContain('application/json');
      expect(r.json()).toMatchObject({ code: 'RAFTKV_VALUE_TOO_LARGE' });
    }
  });

  it('parses consistency: linearizable by default, lease and stale, anything else 400', async () => {
    const node = new FakeNode();
    node.data.set('k', { value: new Uint8Array([1]), modIndex: 1 });
    const s = serve(node);
    for (const [query, consistency] of [['', 'linearizable'], ['?consistency=lease', 'lease'], ['?consistency=stale', 'stale'], ['?consistency=linearizable', 'linearizable']] as const) {
      expect((await s.inject({ method: 'GET', url: `/v1/kv/k${query}` })).statusCode).toBe(200);
      expect(node.calls.at(-1)?.options).toEqual({ consistency });
    }
    for (const query of ['?consistency=strong', '?consistency=', '?consistency=stale&consistency=lease', '?consistancy=stale']) {
      const r = await s.inject({ method: 'GET', url: `/v1/kv/k${query}` });
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({ code: 'RAFTKV_BAD_REQUEST' });
    }
  });

  it('compare-and-set: ?cas=absent and ?cas=<modIndex>; a mismatch is 409 COMPARE_FAILED with the current index', async () => {
    const node = new FakeNode();
    const s = serve(node);
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/lock?cas=absent', payload: 'a' })).json()).toEqual({ modIndex: 1 });
    const taken = await s.inject({ method: 'PUT', url: '/v1/kv/lock?cas=absent', payload: 'b' });
    expect(taken.statusCode).toBe(409);
    expect(taken.json()).toMatchObject({ code: 'RAFTKV_COMPARE_FAILED', currentModIndex: 1 });
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/lock?cas=1', payload: 'c' })).json()).toEqual({ modIndex: 2 });
    const stale = await s.inject({ method: 'PUT', url: '/v1/kv/lock?cas=1', payload: 'd' });
    expect(stale.statusCode).toBe(409);
    expect(stale.json()).toMatchObject({ currentModIndex: 2 });
    const missing = await s.inject({ method: 'PUT', url: '/v1/kv/none?cas=5', payload: 'e' });
    expect(missing.json()).toMatchObject({ code: 'RAFTKV_COMPARE_FAILED', currentModIndex: null });
    for (const cas of ['', '-1', '1.5', '01', 'x', '99999999999999999', 'ABSENT']) {
      const r = await s.inject({ method: 'PUT', url: `/v1/kv/lock?cas=${cas}`, payload: 'f' });
      expect({ cas, status: r.statusCode }).toEqual({ cas, status: 400 });
    }
    expect(new TextDecoder().decode(node.data.get('lock')?.value)).toBe('c');
  });

  it('passes a client session from X-Raftkv-Client-Id and X-Raftkv-Seq; one without the other is 400', async () => {
    const node = new FakeNode();
    const s = serve(node);
    const ok = await s.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v', headers: { 'x-raftkv-client-id': 'c1', 'x-raftkv-seq': '7' } });
    expect(ok.statusCode).toBe(200);
    expect(node.calls.at(-1)?.options).toEqual({ session: { clientId: 'c1', seq: 7 } });
    expect((await s.inject({ method: 'DELETE', url: '/v1/kv/k', headers: { 'x-raftkv-seq': '7' } })).statusCode).toBe(400);
    expect((await s.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'v', headers: { 'x-raftkv-client-id': 'c1', 'x-raftkv-seq': 'x' } })).statusCode).toBe(400);
  });
});

describe('prefix listing', () => {
  it('lists keys under a prefix with UTF-8 values as text and other values as base64', async () => {
    const node = new FakeNode();
    node.data.set('app/a', { value: new TextEncoder().encode('héllo'), modIndex: 4 });
    node.data.set('app/b', { value: new Uint8Array([0xff, 0xfe]), modIndex: 5 });
    node.data.set('other', { value: new Uint8Array([1]), modIndex: 6 });
    const s = serve(node);
    const r = await s.inject({ method: 'GET', url: '/v1/kv?prefix=app%2F' });
    expect(r.json()).toEqual({
      items: [
        { key: 'app/a', value: 'héllo', encoding: 'utf8', modIndex: 4 },
        { key: 'app/b', value: Buffer.from([0xff, 0xfe]).toString('base64'), encoding: 'base64', modIndex: 5 },
      ],
    });
    expect(node.calls.at(-1)).toMatchObject({ op: 'scan', key: 'app/', options: { limit: 10_000, consistency: 'linearizable' } });
    expect((await s.inject({ method: 'GET', url: '/v1/kv?limit=1&consistency=stale' })).json<{ items: unknown[] }>().items).toHaveLength(1);
    expect(node.calls.at(-1)).toMatchObject({ key: '', options: { limit: 1, consistency: 'stale' } });
  });

  it('refuses a limit outside [1, scanCountMax] and unknown parameters', async () => {
    const s = serve(new FakeNode(), { limits: { scanCountMax: 10 } });
    for (const query of ['limit=0', 'limit=11', 'limit=-1', 'limit=abc', 'limit=', 'prefix=a&prefix=b', 'start=a']) {
      const r = await s.inject({ method: 'GET', url: `/v1/kv?${query}` });
      expect({ query, status: r.statusCode, code: r.json<{ code: string }>().code }).toEqual({ query, status: 400, code: 'RAFTKV_BAD_REQUEST' });
    }
    expect((await s.inject({ method: 'GET', url: '/v1/kv?limit=10' })).statusCode).toBe(200);
  });
});

describe('errors', () => {
  const cases: [Error, number, string, string | undefined][] = [
    [notLeader(null), 503, 'RAFTKV_NOT_LEADER', '1'],
    [new RaftKvError(ErrorCode.PROPOSAL_DROPPED, 'busy'), 503, 'RAFTKV_PROPOSAL_DROPPED', '1'],
    [new RaftKvError(ErrorCode.SHUTTING_DOWN, 'bye'), 503, 'RAFTKV_SHUTTING_DOWN', undefined],
    [new RaftKvError(ErrorCode.TIMEOUT, 'slow'), 504, 'RAFTKV_TIMEOUT', undefined],
    [new RaftKvError(ErrorCode.VALUE_TOO_LARGE, 'big'), 413, 'RAFTKV_VALUE_TOO_LARGE', undefined],
    [new RaftKvError(ErrorCode.KEY_TOO_LARGE, 'big'), 413, 'RAFTKV_KEY_TOO_LARGE', undefined],
    [new RaftKvError(ErrorCode.ENTRY_TOO_LARGE, 'big'), 413, 'RAFTKV_ENTRY_TOO_LARGE', undefined],
    [new RaftKvError(ErrorCode.KEY_INVALID, 'bad'), 400, 'RAFTKV_KEY_INVALID', undefined],
    [new RaftKvError(ErrorCode.INVALID_CONFIG, 'bad'), 400, 'RAFTKV_INVALID_CONFIG', undefined],
    [new RaftKvError(ErrorCode.COMMAND_INVALID, 'bad'), 400, 'RAFTKV_COMMAND_INVALID', undefined],
    [new RaftKvError(ErrorCode.STORAGE_CORRUPT, 'disk'), 500, 'RAFTKV_STORAGE_CORRUPT', undefined],
    [new TypeError('a bug'), 500, 'RAFTKV_INTERNAL', undefined],
  ];

  it.each(cases)('maps %s to its status', async (error, status, code, retryAfter) => {
    const node = new FakeNode();
    const s = serve(node);
    for (const request of [
      { method: 'PUT', url: '/v1/kv/k', payload: 'v' },
      { method: 'GET', url: '/v1/kv/k' },
      { method: 'DELETE', url: '/v1/kv/k' },
      { method: 'GET', url: '/v1/kv?prefix=k' },
    ] as const) {
      node.failWith = error;
      const r = await s.inject(request);
      expect(r.statusCode).toBe(status);
      expect(r.headers['retry-after']).toBe(retryAfter);
      expect(r.json()).toMatchObject({ code });
      if (code === 'RAFTKV_INTERNAL') expect(r.json<{ message: string }>().message).not.toContain('a bug');
    }
  });

  it('logs an unexpected error with its stack through a child logger bound to the node id', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const node = new FakeNode('n7');
    const s = serve(node, { logger });
    node.failWith = new TypeError('a bug');
    expect((await s.inject({ method: 'GET', url: '/v1/kv/k' })).statusCode).toBe(500);
    const logged = lines.find((l) => l['msg'] === 'request failed unexpectedly');
    expect(logged).toMatchObject({ level: 50, nodeId: 'n7', route: '/v1/kv/*', err: { type: 'TypeError', message: 'a bug' } });
    node.failWith = new RaftKvError(ErrorCode.TIMEOUT, 'slow');
    await s.inject({ method: 'GET', url: '/v1/kv/k' });
    expect(lines.filter((l) => l['level'] === 50)).toHaveLength(1);
  });

  it('gives every code one status in one table', () => {
    for (const code of Object.values(ErrorCode)) expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400);
    expect(HTTP_STATUS.RAFTKV_COMPARE_FAILED).toBe(409);
  });

  it('answers unknown routes and methods with 404 JSON', async () => {
    const s = serve(new FakeNode());
    for (const [method, url] of [['GET', '/nope'], ['PATCH', '/v1/kv/k'], ['POST', '/v1/kv'], ['GET', '/v2/kv/k']] as const) {
      const r = await s.inject({ method, url });
      expect(r.statusCode).toBe(404);
      expect(r.json()).toMatchObject({ code: 'RAFTKV_ROUTE_NOT_FOUND' });
    }
  });

  it('answers malformed requests with 400 JSON, never 500', async () => {
    const s = serve(new FakeNode());
    const badLength = await s.inject({ method: 'PUT', url: '/v1/kv/k', payload: 'abc', headers: { 'content-length': '10' } });
    expect(badLength.statusCode).toBe(400);
    expect(badLength.json()).toMatchObject({ code: 'RAFTKV_BAD_REQUEST' });
    const badUrl = await s.inject({ method: 'GET', url: '/%zz' });
    expect(badUrl.statusCode).toBe(400);
    expect(badUrl.json()).toMatchObject({ code: 'RAFTKV_BAD_REQUEST' });
    const unknownDelete = await s.inject({ method: 'DELETE', url: '/v1/kv/k?cas=1' });
    expect(unknownDelete.statusCode).toBe(400);
  });
});

describe('node routes', () => {
  it('/health is 200 while the process runs', async () => {
    const r = await serve(new FakeNode()).inject({ method: 'GET', url: '/health' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ status: 'ok', id: 'n1' });
  });

  it('/ready is 200 only with a known leader and the commit index applied', async () => {
    const node = new FakeNode('n2', null);
    const s = serve(node);
    expect((await s.inject({ method: 'GET', url: '/ready' })).json()).toMatchObject({ ready: false, reason: 'no leader known' });
    node.leader = 'n1';
    node.commit = 5;
    node.applied = 4;
    const behind = await s.inject({ method: 'GET', url: '/ready' });
    expect(behind.statusCode).toBe(503);
    expect(behind.json()).toMatchObject({ ready: false, leader: 'n1', commit: 5, applied: 4 });
    node.applied = 5;
    const ready = await s.inject({ method: 'GET', url: '/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ ready: true, leader: 'n1', commit: 5, applied: 5 });
  });

  it('/v1/status shows the node and, on the leader, its peers’ progress as an object', async () => {
    const node = new FakeNode();
    node.commit = 7;
    node.applied = 7;
    const r = await serve(node).inject({ method: 'GET', url: '/v1/status' });
    expect(r.json()).toMatchObject({ id: 'n1', role: 'leader', term: 3, leader: 'n1', commit: 7, applied: 7, voters: ['n1', 'n2', 'n3'], progress: { n2: { match: 7, state: 'replicate' } } });
    node.role = Role.Follower;
    expect((await app!.inject({ method: 'GET', url: '/v1/status' })).json()).toMatchObject({ role: 'follower', progress: null });
  });

  it('answers status calls on a closing node with 503 SHUTTING_DOWN', async () => {
    const node = new FakeNode();
    node.failWith = new RaftKvError(ErrorCode.SHUTTING_DOWN, 'bye');
    node.sticky = true;
    const s = serve(node);
    for (const url of ['/ready', '/v1/status']) expect((await s.inject({ method: 'GET', url })).json()).toMatchObject({ code: 'RAFTKV_SHUTTING_DOWN' });
    expect((await s.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
  });

  it('/metrics counts requests by route and status and reads raft gauges from status()', async () => {
    const node = new FakeNode();
    node.commit = 9;
    node.applied = 8;
    const s = serve(node);
    await s.inject({ method: 'PUT', url: '/v1/kv/a', payload: 'v' });
    await s.inject({ method: 'GET', url: '/v1/kv/missing' });
    await s.inject({ method: 'GET', url: '/nope' });
    const text = (await s.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('raftkv_http_requests_total{route="/v1/kv/*",method="PUT",status="200"} 1');
    expect(text).toContain('raftkv_http_requests_total{route="/v1/kv/*",method="GET",status="404"} 1');
    expect(text).toContain('raftkv_http_requests_total{route="unmatched",method="GET",status="404"} 1');
    expect(text).toContain('raftkv_http_request_duration_seconds_bucket{le="0.00025",route="/v1/kv/*",method="PUT",status="200"}');
    expect(text).toContain('raftkv_raft_term 3');
    expect(text).toContain('raftkv_raft_commit_index 9');
    expect(text).toContain('raftkv_raft_applied_index 8');
    expect(text).toContain('raftkv_raft_role{role="leader"} 1');
    expect(text).toContain('raftkv_raft_role{role="follower"} 0');
  });

  it('keeps one registry per server: two servers in one process do not collide', async () => {
    const a = createServer({ node: new FakeNode('n1'), httpAddresses: {} });
    const b = createServer({ node: new FakeNode('n2'), httpAddresses: {} });
    try {
      await a.inject({ method: 'GET', url: '/health' });
      const text = (await b.inject({ method: 'GET', url: '/metrics' })).body;
      expect(text).not.toContain('route="/health"');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
