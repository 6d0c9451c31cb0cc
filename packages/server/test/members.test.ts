import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, RaftKvError, Role } from '@raftkv/raft';
import { createServer, type ServerOptions } from '../src/index.js';
import { FakeNode } from './fake-node.js';

const open: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((a) => a.close()));
});

function serve(node: FakeNode, options: Partial<ServerOptions> = {}): FastifyInstance {
  const app = createServer({ node, httpAddresses: {}, ...options });
  open.push(app);
  return app;
}

const NEW_MEMBER = { id: 'n4', peerAddress: '127.0.0.1:7004', httpAddress: 'http://127.0.0.1:8004', uid: 'u-4', autoPromote: true };

describe('membership routes on the leader', () => {
  it('lists every member with its role, addresses and, on the leader, its progress', async () => {
    const node = new FakeNode();
    node.commit = 7;
    const app = serve(node, { httpAddresses: { n1: 'http://127.0.0.1:8001', n2: 'http://127.0.0.1:8002' } });
    const r = await app.inject({ method: 'GET', url: '/v1/members' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({
      leader: 'n1',
      members: [
        { id: 'n1', role: 'voter', peerAddress: '127.0.0.1:7001', httpAddress: 'http://127.0.0.1:8001', isLeader: true, autoPromote: false, match: 7, lag: 0, replication: 'replicate' },
        { id: 'n2', role: 'voter', peerAddress: '127.0.0.1:7002', httpAddress: 'http://127.0.0.1:8002', isLeader: false, autoPromote: false, match: 7, lag: 0, replication: 'replicate' },
        { id: 'n3', role: 'voter', peerAddress: '127.0.0.1:7003', httpAddress: null, isLeader: false, autoPromote: false, match: 7, lag: 0, replication: 'replicate' },
      ],
    });
  });

  it('answers on a follower itself, with its own view: no progress', async () => {
    const node = new FakeNode('n2', 'n1');
    node.role = Role.Follower;
    const r = await serve(node).inject({ method: 'GET', url: '/v1/members' });
    expect(r.statusCode).toBe(200);
    const body = r.json<{ leader: string; members: { id: string; isLeader: boolean; match: unknown; lag: unknown; replication: unknown }[] }>();
    expect(body.leader).toBe('n1');
    expect(body.members.find((m) => m.id === 'n1')?.isLeader).toBe(true);
    for (const m of body.members) expect([m.match, m.lag, m.replication]).toEqual([null, null, null]);
  });

  it('adds a learner from a JSON body, whatever its content type, and answers the new membership', async () => {
    const node = new FakeNode();
    const app = serve(node);
    const r = await app.inject({ method: 'POST', url: '/v1/members', payload: JSON.stringify(NEW_MEMBER), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json<{ members: unknown[] }>().members).toContainEqual(expect.objectContaining({ id: 'n4', role: 'learner', peerAddress: '127.0.0.1:7004', httpAddress: 'http://127.0.0.1:8004', autoPromote: true }));
    expect(node.calls).toContainEqual({ op: 'addLearner', key: 'n4', options: { peerAddress: '127.0.0.1:7004', httpAddress: 'http://127.0.0.1:8004', uid: 'u-4', autoPromote: true } });
    // Only id and peerAddress are required; autoPromote defaults to false.
    const plain = await app.inject({ method: 'POST', url: '/v1/members', payload: { id: 'n5', peerAddress: 'h5:7005' } });
    expect(plain.statusCode, plain.body).toBe(200);
    expect(node.calls.at(-1)).toEqual({ op: 'addLearner', key: 'n5', options: { peerAddress: 'h5:7005', autoPromote: false } });
  });

  it.each([
    ['no body', undefined, 'body must be object'],
    ['not JSON', '{"id":', 'the body is not JSON'],
    ['no peerAddress', { id: 'n4' }, "must have required property 'peerAddress'"],
    ['an unknown property', { ...NEW_MEMBER, peerAdress: 'x' }, 'must NOT have additional properties'],
    ['a string for a boolean', { ...NEW_MEMBER, autoPromote: 'true' }, 'body/autoPromote must be boolean'],
    ['a number for an id', { ...NEW_MEMBER, id: 4 }, 'body/id must be string'],
    ['an id with a slash', { ...NEW_MEMBER, id: 'n/4' }, 'body/id must match pattern'],
    ['an http address with a path', { ...NEW_MEMBER, httpAddress: 'http://h:1/api' }, 'must be a base URL'],
    ['an http address that is no URL', { ...NEW_MEMBER, httpAddress: 'h:1' }, 'is not an http:// URL'],
  ])('refuses %s with 400 RAFTKV_BAD_REQUEST, changing nothing', async (_what, payload, message) => {
    const node = new FakeNode();
    const r = await serve(node).inject({ method: 'POST', url: '/v1/members', ...(payload === undefined ? {} : { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) }), headers: { 'content-type': 'application/json' } });
    expect(r.statusCode).toBe(400);
    expect(r.json()).toEqual({ code: 'RAFTKV_BAD_REQUEST', message: expect.stringContaining(message) });
    expect(node.calls).toEqual([]);
  });

  it('maps refused changes: 409 CONF_CHANGE_INVALID, 409 CONF_CHANGE_PENDING with Retry-After, 400 for an address the node refuses', async () => {
    const node = new FakeNode();
    const app = serve(node);
    const twice = await app.inject({ method: 'POST', url: '/v1/members', payload: { id: 'n2', peerAddress: 'h:1' } });
    expect(twice.statusCode).toBe(409);
    expect(twice.json()).toEqual({ code: 'RAFTKV_CONF_CHANGE_INVALID', message: 'n2 is already a member' });
    node.failWith = new RaftKvError(ErrorCode.CONF_CHANGE_PENDING, 'the membership change at index 9 is not committed yet; retry');
    const pending = await app.inject({ method: 'DELETE', url: '/v1/members/n3' });
    expect(pending.statusCode).toBe(409);
    expect(pending.headers['retry-after']).toBe('1');
    expect(pending.json()).toMatchObject({ code: 'RAFTKV_CONF_CHANGE_PENDING' });
    node.failWith = new RaftKvError(ErrorCode.INVALID_CONFIG, 'address "h" is not host:port');
    const address = await app.inject({ method: 'POST', url: '/v1/members', payload: { id: 'n6', peerAddress: 'h' } });
    expect(address.statusCode).toBe(400);
    expect(address.json()).toMatchObject({ code: 'RAFTKV_INVALID_CONFIG' });
  });

  it('promotes and removes the member the path names, percent-decoded once', async () => {
    const node = new FakeNode();
    node.memberInfo.set('a/b', { role: 'learner', peerAddress: 'h:1', httpAddress: null, uid: null, autoPromote: false });
    const app = serve(node);
    const promoted = await app.inject({ method: 'POST', url: '/v1/members/a%2Fb/promote' });
    expect(promoted.statusCode, promoted.body).toBe(200);
    expect(promoted.json<{ members: { id: string; role: string }[] }>().members.find((m) => m.id === 'a/b')?.role).toBe('voter');
    const removed = await app.inject({ method: 'DELETE', url: '/v1/members/a%2Fb' });
    expect(removed.statusCode).toBe(200);
    expect(removed.json<{ members: { id: string }[] }>().members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
    expect(node.calls.map((c) => `${c.op} ${c.key}`)).toEqual(['promote a/b', 'removeMember a/b']);
    const unknownParam = await app.inject({ method: 'DELETE', url: '/v1/members/n3?force=1' });
    expect(unknownParam.statusCode).toBe(400);
    expect(unknownParam.json<{ message: string }>().message).toContain('unknown query parameter "force"');
    const badEscape = await app.inject({ method: 'POST', url: '/v1/members/%E2%82/promote' });
    expect(badEscape.statusCode).toBe(400);
  });

  it('transfers leadership and answers once this node follows the new leader', async () => {
    const node = new FakeNode();
    node.onTransfer = (target) => {
      setTimeout(() => {
        node.role = Role.Follower;
        node.leader = target;
      }, 30);
    };
    const app = serve(node);
    const r = await app.inject({ method: 'POST', url: '/v1/leader/transfer?to=n3' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toEqual({ from: 'n1', to: 'n3', leader: 'n3' });
    expect(node.transfers).toEqual(['n3']);
  });

  it('lets the node pick the target when none is named, and answers at once when the target already leads', async () => {
    const node = new FakeNode();
    node.onTransfer = (target) => {
      node.role = Role.Follower;
      node.leader = target;
    };
    const app = serve(node);
    expect((await app.inject({ method: 'POST', url: '/v1/leader/transfer' })).json()).toEqual({ from: 'n1', to: 'n2', leader: 'n2' });
    const self = new FakeNode();
    expect((await serve(self).inject({ method: 'POST', url: '/v1/leader/transfer?to=n1' })).json()).toEqual({ from: 'n1', to: 'n1', leader: 'n1' });
    expect(self.transfers).toEqual([]);
  });

  it('answers 409 TRANSFER_REJECTED for a target that is no voter, 504 for a transfer abandoned or too slow', async () => {
    const node = new FakeNode();
    node.memberInfo.set('n4', { role: 'learner', peerAddress: 'h:1', httpAddress: null, uid: null, autoPromote: false });
    const app = serve(node, { transferTimeoutMs: 200 });
    const learner = await app.inject({ method: 'POST', url: '/v1/leader/transfer?to=n4' });
    expect(learner.statusCode).toBe(409);
    expect(learner.json()).toMatchObject({ code: 'RAFTKV_TRANSFER_REJECTED' });
    const stuck = await app.inject({ method: 'POST', url: '/v1/leader/transfer?to=n2' });
    expect(stuck.statusCode).toBe(504);
    expect(stuck.json()).toMatchObject({ code: 'RAFTKV_TIMEOUT', message: expect.stringContaining('did not move from n1 to n2 within 200 ms') });
    node.onTransfer = () => setTimeout(() => (node.leadTransferee = null), 20);
    const abandoned = await app.inject({ method: 'POST', url: '/v1/leader/transfer?to=n3' });
    expect(abandoned.statusCode).toBe(504);
    expect(abandoned.json()).toMatchObject({ code: 'RAFTKV_TIMEOUT', message: expect.stringContaining('was abandoned') });
    expect((await app.inject({ method: 'POST', url: '/v1/leader/transfer?to=' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'POST', url: '/v1/leader/transfer?to=n2&to=n3' })).statusCode).toBe(400);
  });
});

interface Received {
  method: string;
  url: string;
  contentType: string | undefined;
  forwarded: string | undefined;
  body: string;
}

/** A stand-in leader that records what reaches it and answers every request with a fixed listing. */
async function fakeLeader(): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const leader = Fastify();
  leader.removeAllContentTypeParsers();
  leader.addContentTypeParser('*', { parseAs: 'string' }, (_r, body, done) => done(null, body));
  leader.all('/*', async (request, reply) => {
    received.push({
      method: request.method,
      url: request.url,
      contentType: request.headers['content-type'],
      forwarded: request.headers['x-raftkv-forwarded'] as string | undefined,
      body: typeof request.body === 'string' ? request.body : '',
    });
    return reply.type('application/json').send({ leader: 'n9', members: [] });
  });
  open.push(leader);
  return { url: await leader.listen({ host: '127.0.0.1', port: 0 }), received };
}

describe('membership routes on a follower', () => {
  it('forwards every change to the leader, canonically, and changes nothing itself', async () => {
    const leader = await fakeLeader();
    const node = new FakeNode('n2', 'n1');
    node.role = Role.Follower;
    const app = serve(node, { httpAddresses: { n1: leader.url } });
    const requests = [
      // Whitespace and key order in the client's body do not reach the leader: what this node parsed does.
      { method: 'POST', url: '/v1/members', payload: ` {"peerAddress":"h:1", "id":"n4","autoPromote":true} `, headers: { 'content-type': 'text/plain' } },
      { method: 'POST', url: '/v1/members/n%34/promote' },
      { method: 'DELETE', url: '/v1/members/a%2fb' },
      { method: 'POST', url: '/v1/leader/transfer?to=n%33' },
      { method: 'POST', url: '/v1/leader/transfer' },
    ] as const;
    for (const request of requests) {
      const r = await app.inject(request);
      expect(r.statusCode, `${request.method} ${request.url}: ${r.body}`).toBe(200);
      expect(r.headers['x-raftkv-forwarded-to']).toBe('n1');
    }
    expect(leader.received.map((x) => `${x.method} ${x.url}`)).toEqual([
      'POST /v1/members',
      'POST /v1/members/n4/promote',
      'DELETE /v1/members/a%2Fb',
      'POST /v1/leader/transfer?to=n3',
      'POST /v1/leader/transfer',
    ]);
    expect(leader.received[0]).toMatchObject({ contentType: 'application/json', forwarded: '1', body: '{"peerAddress":"h:1","id":"n4","autoPromote":true}' });
    expect(node.calls).toEqual([]);
    expect(node.memberInfo.has('n4')).toBe(false);
  });

  it('finds the HTTP address of a leader added at run time through the node, and never forwards a listing', async () => {
    const leader = await fakeLeader();
    const node = new FakeNode('n2', 'n4');
    node.role = Role.Follower;
    node.memberInfo.set('n4', { role: 'voter', peerAddress: 'h:1', httpAddress: leader.url, uid: null, autoPromote: true });
    const app = serve(node, { httpAddresses: { n1: 'http://127.0.0.1:1' } });
    const r = await app.inject({ method: 'DELETE', url: '/v1/members/n3' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.headers['x-raftkv-forwarded-to']).toBe('n4');
    expect((await app.inject({ method: 'GET', url: '/v1/members' })).json()).toMatchObject({ leader: 'n4' });
    expect(leader.received.map((x) => `${x.method} ${x.url}`)).toEqual(['DELETE /v1/members/n3']);
  });

  it('answers 503 NOT_LEADER when no leader is known, and a bad body 400 before any forwarding', async () => {
    const leader = await fakeLeader();
    const node = new FakeNode('n2', null);
    node.role = Role.Follower;
    const app = serve(node, { httpAddresses: { n1: leader.url } });
    const none = await app.inject({ method: 'POST', url: '/v1/members/n3/promote' });
    expect(none.statusCode).toBe(503);
    expect(none.headers['retry-after']).toBe('1');
    expect(none.json()).toMatchObject({ code: 'RAFTKV_NOT_LEADER' });
    node.leader = 'n1';
    const bad = await app.inject({ method: 'POST', url: '/v1/members', payload: { id: 'n4' } });
    expect(bad.statusCode).toBe(400);
    expect(leader.received).toEqual([]);
  });
});
