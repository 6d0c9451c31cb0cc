import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster, type LocalCluster } from '@raftkv/node';
import { Role } from '@raftkv/raft';
import { createServer } from '../src/index.js';

// Short timeouts keep elections quick; the ratio is etcd's (heartbeat = election / 10).
const FAST = { tickMs: 20, electionTimeoutMs: 200, heartbeatIntervalMs: 20 } as const;

let cluster: LocalCluster | null = null;
let servers: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.allSettled(servers.map((s) => s.close()));
  servers = [];
  await cluster?.close();
  cluster = null;
});

/** One HTTP server per node on port 0; the address book is filled in once all listen. */
async function startServers(c: LocalCluster): Promise<Map<string, string>> {
  const httpAddresses: Record<string, string> = {};
  const urls = new Map<string, string>();
  for (const node of c.nodes) {
    const server = createServer({ node, httpAddresses });
    servers.push(server);
    urls.set(node.id, await server.listen({ host: '127.0.0.1', port: 0 }));
  }
  Object.assign(httpAddresses, Object.fromEntries(urls));
  return urls;
}

/** Polls until `check` passes or the deadline passes (then the last failure is thrown). */
async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(20);
    }
  }
}

describe('three nodes, each behind its own HTTP server', () => {
  it('accepts writes at every node (followers forward), reads everywhere, CAS, scan, ready and metrics', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const urls = await startServers(cluster);
    const leader = await cluster.leader();
    const followers = cluster.nodes.filter((n) => n.role !== Role.Leader).map((n) => n.id);
    expect(followers).toHaveLength(2);

    for (const [id, url] of urls) {
      // An election may still settle; a client retries on 503 as Retry-After says.
      await eventually(async () => {
        const r = await fetch(`${url}/v1/kv/app/${id}`, { method: 'PUT', body: `written via ${id}` });
        expect(r.status).toBe(200);
        expect(r.headers.get('x-raftkv-forwarded-to')).toBe(id === leader.id ? null : leader.id);
      });
    }
    for (const url of urls.values()) {
      for (const id of urls.keys()) {
        const r = await fetch(`${url}/v1/kv/app/${id}`);
        expect(r.status).toBe(200);
        expect(await r.text()).toBe(`written via ${id}`);
        expect(Number(r.headers.get('x-raftkv-mod-index'))).toBeGreaterThan(0);
      }
      const stale = await fetch(`${url}/v1/kv/app%2Fn1?consistency=stale`);
      expect(stale.status).toBe(200);
    }

    const viaFollower = urls.get(followers[0]!)!;
    const created = await fetch(`${viaFollower}/v1/kv/lock?cas=absent`, { method: 'PUT', body: 'owner-1' });
    expect(created.status).toBe(200);
    const { modIndex } = (await created.json()) as { modIndex: number };
    const conflict = await fetch(`${viaFollower}/v1/kv/lock?cas=absent`, { method: 'PUT', body: 'owner-2' });
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ code: 'RAFTKV_COMPARE_FAILED', currentModIndex: modIndex });
    const swapped = await fetch(`${viaFollower}/v1/kv/lock?cas=${modIndex}`, { method: 'PUT', body: 'owner-3' });
    expect(swapped.status).toBe(200);

    const scan = await fetch(`${urls.get(followers[1]!)!}/v1/kv?prefix=app%2F`);
    expect(((await scan.json()) as { items: { key: string }[] }).items.map((i) => i.key)).toEqual(['app/n1', 'app/n2', 'app/n3']);

    const deleted = await fetch(`${viaFollower}/v1/kv/lock`, { method: 'DELETE' });
    expect(await deleted.json()).toMatchObject({ existed: true });
    expect((await fetch(`${viaFollower}/v1/kv/lock`)).status).toBe(404);

    for (const url of urls.values()) {
      await eventually(async () => expect((await fetch(`${url}/ready`)).status).toBe(200));
      const status = (await (await fetch(`${url}/v1/status`)).json()) as { leader: string };
      expect(status.leader).toBe(leader.id);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/raftkv_raft_commit_index [1-9]/);
      expect(metrics).toContain('raftkv_raft_role{role="leader"}');
      expect(metrics).toContain('raftkv_http_requests_total{route="/v1/kv/*",method="PUT"');
    }
    const leaderStatus = (await (await fetch(`${urls.get(leader.id)!}/v1/status`)).json()) as { progress: Record<string, { match: number }> };
    expect(Object.keys(leaderStatus.progress).sort()).toEqual([...urls.keys()].sort());
  });
});
