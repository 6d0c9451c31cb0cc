import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createServer } from '../src/index.js';
import { FakeNode, notLeader } from './fake-node.js';

// A follower forwards what it decoded, not the client's URL: a URL library between the two
// (fetch normalises like a browser) must not turn `tmp/%2e%2e/victim` into `victim`. Requests
// go over real sockets with node:http, which sends a path byte for byte; `app.inject` would
// normalise the URL itself before the server saw it.

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** One request with `path` sent exactly as given, on a fresh connection. */
function send(baseUrl: string, method: string, path: string, body?: string): Promise<Answer> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: url.hostname, port: url.port, method, path, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString() }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

let leaderNode: FakeNode;
let leader: FastifyInstance;
let follower: FastifyInstance;
let leaderUrl: string;
let followerUrl: string;

beforeAll(async () => {
  leaderNode = new FakeNode('n1', 'n1');
  leader = createServer({ node: leaderNode, httpAddresses: {} });
  leaderUrl = await leader.listen({ host: '127.0.0.1', port: 0 });
  const followerNode = new FakeNode('n2', 'n1');
  followerNode.failWith = notLeader('n1');
  followerNode.sticky = true; // every data call: NOT_LEADER with the hint n1
  follower = createServer({ node: followerNode, httpAddresses: { n1: leaderUrl } });
  followerUrl = await follower.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await Promise.all([follower.close(), leader.close()]);
});

/** Forgets every key, call and index, so that each check starts from an empty leader. */
function resetLeader(): void {
  leaderNode.data.clear();
  leaderNode.calls.length = 0;
  leaderNode.index = 0;
}

beforeEach(resetLeader);

/** The leader's answer, keys and calls after `method path` sent straight to it; the leader is emptied again. */
async function direct(method: string, path: string, body?: string): Promise<{ answer: Answer; keys: string[]; calls: FakeNode['calls'] }> {
  const answer = await send(leaderUrl, method, path, body);
  const keys = [...leaderNode.data.keys()];
  const calls = [...leaderNode.calls];
  resetLeader();
  return { answer, keys, calls };
}

const errorCode = (answer: Answer): string | null => (answer.headers['content-type']?.includes('json') === true ? ((JSON.parse(answer.body) as { code?: string }).code ?? null) : null);

describe('a key forwarded by a follower is the key the follower decoded', () => {
  it.each([
    ['an encoded dot-dot segment', 'tmp/%2e%2e/victim', 'tmp/../victim'],
    ['a dot segment', 'a/./b', 'a/./b'],
    ['an escaped backslash', 'a%5Cb', 'a\\b'],
    ['a raw backslash', 'a\\b', 'a\\b'],
    ['a leading upper-case %2E%2E segment', '%2E%2E/x', '../x'],
    ['a trailing dot-dot segment', 'x/..', 'x/..'],
    ['escaped ?, #, %, space and non-ASCII', 'q%3Fh%23p%25s%20%C3%A9%E2%82%AC', 'q?h#p%s é€'],
    ['a raw # at the end', 'frag#', 'frag#'],
    ['a leading slash', '/lead', '/lead'],
  ])('PUT, GET and DELETE of a key with %s (%s)', async (_what, encoded, key) => {
    const path = `/v1/kv/${encoded}`;
    // The oracle: what the leader makes of the same URL sent to it directly.
    const reference = await direct('PUT', path, 'v');
    expect({ status: reference.answer.status, keys: reference.keys }).toEqual({ status: 200, keys: [key] });

    const put = await send(followerUrl, 'PUT', path, 'via-follower');
    expect({ status: put.status, forwardedTo: put.headers['x-raftkv-forwarded-to'], body: put.body }).toEqual({ status: 200, forwardedTo: 'n1', body: '{"modIndex":1}' });
    expect([...leaderNode.data.keys()]).toEqual([key]); // that key and no other
    expect(new TextDecoder().decode(leaderNode.data.get(key)?.value)).toBe('via-follower');

    const get = await send(followerUrl, 'GET', path);
    expect({ status: get.status, body: get.body, modIndex: get.headers['x-raftkv-mod-index'] }).toEqual({ status: 200, body: 'via-follower', modIndex: '1' });

    const del = await send(followerUrl, 'DELETE', path);
    expect({ status: del.status, body: del.body }).toEqual({ status: 200, body: '{"modIndex":2,"existed":true}' });
    expect(leaderNode.data.size).toBe(0);
    expect(leaderNode.calls.map((c) => `${c.op} ${c.key}`)).toEqual([`put ${key}`, `get ${key}`, `delete ${key}`]);
  });

  it('forwards the query parameters as parsed: CAS, consistency, and a listing prefix with dots and escapes', async () => {
    const cas = await send(followerUrl, 'PUT', '/v1/kv/lock?cas=absent', 'v');
    expect(cas.status).toBe(200);
    expect(leaderNode.calls[0]).toMatchObject({ op: 'cas', key: 'lock', options: { expect: { absent: true } } });
    expect((await send(followerUrl, 'PUT', '/v1/kv/lock?cas=absent', 'v')).status).toBe(409);

    expect((await send(followerUrl, 'GET', '/v1/kv/lock?consistency=lease')).status).toBe(200);
    expect(leaderNode.calls.at(-1)).toMatchObject({ op: 'get', key: 'lock', options: { consistency: 'lease' } });

    resetLeader();
    // The leader must parse the forwarded query as it parses the client's: `+` is a space, %2e
    // stays a dot, and a value with a bad escape (%ZZ) is left as written, whole.
    for (const [query, prefix] of [
      ['prefix=tmp%2F%2e%2e%2F+a%26b&limit=5&consistency=stale', 'tmp/../ a&b'],
      ['prefix=tmp%2F%2e%2e%2F+a%ZZ%26b&limit=5&consistency=stale', 'tmp%2F%2e%2e%2F a%ZZ%26b'],
    ] as const) {
      const reference = await direct('GET', `/v1/kv?${query}`);
      expect(reference.calls).toEqual([{ op: 'scan', key: prefix, options: { limit: 5, consistency: 'stale' } }]);
      const list = await send(followerUrl, 'GET', `/v1/kv?${query}`);
      expect(list.status).toBe(200);
      expect(leaderNode.calls).toEqual(reference.calls);
      resetLeader();
    }
  });

  it('agrees with the leader on any path built from dots, slashes, backslashes and escapes (property)', async () => {
    const piece = fc.constantFrom('a', 'B', '.', '..', '%2e', '%2E', '%2e%2E', '/', '//', '\\', '%5C', '%5c', '%2F', '%25', '%3F', '%23', '#', '%20', '%C3%A9', '%F0%9F%98%80', '~', '!', "'", '(', '*', ':', '@', ';', '=', '&', '$', ',', '+', '%', '%E2%82');
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 8 }), async (pieces) => {
        const path = `/v1/kv/${pieces.join('')}`;
        const reference = await direct('PUT', path, 'v');
        const viaFollower = await send(followerUrl, 'PUT', path, 'v');
        const keys = [...leaderNode.data.keys()];
        resetLeader();
        expect({ path, status: viaFollower.status, code: errorCode(viaFollower), keys }).toEqual({
          path,
          status: reference.answer.status,
          code: errorCode(reference.answer),
          keys: reference.keys,
        });
      }),
      { numRuns: 150 },
    );
  });
});
