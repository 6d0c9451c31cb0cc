import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, startNode, type LocalCluster, type RaftKvNode } from '@raftkv/node';
import { Role } from '@raftkv/raft';
import { createServer } from '../src/index.js';

// A short stable time keeps auto-promotion quick. The election timeout is not that short: the
// test follows where requests are forwarded, and on a busy machine a 200 ms timeout lets a
// stalled event loop start an election under it.
const FAST = { tickMs: 20, electionTimeoutMs: 600, heartbeatIntervalMs: 20, autoPromoteStableMs: 200 } as const;

let cluster: LocalCluster | null = null;
const extra: RaftKvNode[] = [];
let servers: FastifyInstance[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.allSettled(servers.map((s) => s.close()));
  servers = [];
  await Promise.allSettled(extra.splice(0).map((n) => n.close()));
  await cluster?.close();
  cluster = null;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function serve(node: RaftKvNode, httpAddresses: Record<string, string>): Promise<string> {
  const server = createServer({ node, httpAddresses });
  servers.push(server);
  return server.listen({ host: '127.0.0.1', port: 0 });
}

async function eventually<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) expect.unreachable(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Members {
  leader: string | null;
  members: { id: string; role: string; httpAddress: string | null; lag: number | null }[];
}

async function members(url: string): Promise<Members> {
  return (await fetch(`${url}/v1/members`)).json() as Promise<Members>;
}

/** A request retried while an election or a previous change settles (503, or 409 PENDING). */
async function send(url: string, init: RequestInit): Promise<Response> {
  return eventually(`${init.method} ${url}`, async () => {
    const r = await fetch(url, init);
    const pending = r.status === 409 && ((await r.clone().json()) as { code: string }).code === 'RAFTKV_CONF_CHANGE_PENDING';
    return r.status === 503 || pending ? null : r;
  });
}

describe('membership over HTTP, three real nodes', () => {
  it('adds a joining node through a follower, promotes it on its own, forwards to it once it leads, and removes a member', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    // Founding members are in each server's configured book; n4 will not be.
    const httpAddresses: Record<string, string> = {};
    for (const node of cluster.nodes) httpAddresses[node.id] = await serve(node, httpAddresses);
    // A leader that has committed in its term; an early re-election would move it under the test.
    await cluster.put('settle', 'x');
    await cluster.leader();
    const follower = cluster.nodes.find((n) => n.role !== Role.Leader)!;
    const followerUrl = httpAddresses[follower.id]!;

    // A new machine: no members, the founding members' peer addresses, its own HTTP server.
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-join-'));
    dirs.push(dir);
    const peers = Object.fromEntries(cluster.nodes.map((n) => [n.id, n.peerAddress]));
    const n4 = await startNode({ id: 'n4', dataDir: dir, peers, listen: { host: '127.0.0.1', port: 0 }, ...FAST });
    extra.push(n4);
    const n4Url = await serve(n4, { ...httpAddresses });

    const added = await send(`${followerUrl}/v1/members`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'n4', peerAddress: n4.peerAddress, httpAddress: n4Url, uid: n4.identity.uid, autoPromote: true }),
    });
    expect(added.status, await added.clone().text()).toBe(200);
    expect(added.headers.get('x-raftkv-forwarded-to')).toBe((await cluster.leader()).id);
    expect(((await added.json()) as Members).members).toContainEqual(expect.objectContaining({ id: 'n4', role: 'learner', httpAddress: n4Url }));

    // The leader promotes it once it has caught up; every node then lists it as a voter.
    await eventually('n4 promoted', async () => ((await members(followerUrl)).members.find((m) => m.id === 'n4')?.role === 'voter' ? true : null));

    // Leadership to n4 through a follower; then a write at a founding follower is forwarded to
    // n4, whose HTTP address only its membership change recorded.
    const moved = await send(`${followerUrl}/v1/leader/transfer?to=n4`, { method: 'POST' });
    expect(moved.status, await moved.clone().text()).toBe(200);
    const { from: oldLeader, ...outcome } = (await moved.json()) as { from: string; to: string; leader: string };
    expect(outcome).toEqual({ to: 'n4', leader: 'n4' });
    expect(['n1', 'n2', 'n3']).toContain(oldLeader);
    const write = await send(`${followerUrl}/v1/kv/after-transfer`, { method: 'PUT', body: 'v' });
    expect(write.status).toBe(200);
    expect(write.headers.get('x-raftkv-forwarded-to')).toBe('n4');

    // The old leader removed through it, now a follower.
    const removed = await send(`${httpAddresses[oldLeader]}/v1/members/${oldLeader}`, { method: 'DELETE' });
    expect(removed.status, await removed.clone().text()).toBe(200);
    expect(((await removed.json()) as Members).members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3', 'n4'].filter((id) => id !== oldLeader));
    const gone = await eventually('the removal seen by n4', async () => {
      const view = await members(n4Url);
      return view.members.some((m) => m.id === oldLeader) ? null : view;
    });
    expect(gone.leader).toBe('n4');
    // A removed id never comes back.
    const again = await send(`${n4Url}/v1/members`, { method: 'POST', body: JSON.stringify({ id: oldLeader, peerAddress: '127.0.0.1:1' }) });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ code: 'RAFTKV_CONF_CHANGE_INVALID' });
  }, 60_000);
});
