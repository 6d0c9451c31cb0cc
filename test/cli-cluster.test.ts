/**
 * End to end: `raftkv cluster` as a user runs it (one supervisor process, three `raftkv start`
 * processes, real HTTP), driven with fetch and `raftkv status`; the leader is killed with -9.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'packages/cli/src/main.ts');
const NODE_FLAGS = ['--import', 'tsx', '--conditions=@raftkv/source'];
/** Short timeouts keep elections quick (as in test/process-support.ts). */
const FAST = ['--tick-ms', '20', '--election-timeout-ms', '200', '--heartbeat-interval-ms', '20'];
const NODES = 3;
const POLL_MS = 20;

interface Started {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Everything this file started, stopped by PID after each test whatever happened. */
const pidsToStop = new Set<number>();
const dirsToRemove: string[] = [];

afterEach(async () => {
  for (const pid of pidsToStop) if (alive(pid)) process.kill(pid, 'SIGKILL');
  pidsToStop.clear();
  for (const dir of dirsToRemove.splice(0)) await rm(dir, { recursive: true, force: true });
});

function raftkv(args: readonly string[]): Started {
  const child = spawn(process.execPath, [...NODE_FLAGS, MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  if (child.pid === undefined) throw new Error('spawn produced no process');
  pidsToStop.add(child.pid);
  const lines: string[] = [];
  let partial = '';
  const collect = (text: string): void => {
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, lines, exited };
}

async function run(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  const started = raftkv(args);
  const { code } = await started.exited;
  return { code, output: started.lines.join('\n') };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | null> | T | null, timeoutMs: number, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) expect.unreachable(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await sleep(POLL_MS);
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS says is free, with the `count - 1` ports after it free too. */
async function freePortRange(count: number, avoid: readonly number[] = []): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
      });
    });
    if (base === 0 || base + count - 1 > 65_535 || avoid.some((p) => Math.abs(p - base) < count)) continue;
    const free = await Promise.all(Array.from({ length: count }, (_, i) => canListen(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

async function getText(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: await response.text() };
}

async function put(url: string, value: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method: 'PUT', body: value, signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function leaderOf(url: string): Promise<string | null> {
  try {
    const status = (await (await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(1_000) })).json()) as { leader: string | null };
    return status.leader;
  } catch {
    return null;
  }
}

describe('raftkv cluster', () => {
  it('serves through every node, survives kill -9 of the leader, restarts it, and stops cleanly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-cli-'));
    dirsToRemove.push(dir);
    const basePort = await freePortRange(NODES);
    const httpBasePort = await freePortRange(NODES, [basePort]);
    const cluster = raftkv(['cluster', '--dir', dir, '--base-port', String(basePort), '--http-base-port', String(httpBasePort), ...FAST, '--stop-timeout-ms', '5000']);
    const output = (): string => cluster.lines.join('\n');
    const line = (pattern: RegExp): RegExpExecArray | null => {
      for (const l of cluster.lines) {
        const match = pattern.exec(l);
        if (match !== null) return match;
      }
      return null;
    };

    await waitFor('"cluster ready"', () => line(/^cluster ready: leader (n\d)/), 30_000, output);
    const nodes = new Map<string, { pid: number; http: string }>();
    for (const l of cluster.lines) {
      const match = /^node (n\d): pid (\d+), peers on \S+, HTTP on (\S+),/.exec(l);
      if (match !== null) nodes.set(match[1]!, { pid: Number(match[2]), http: match[3]! });
    }
    expect([...nodes.keys()]).toEqual(['n1', 'n2', 'n3']);
    for (const { pid } of nodes.values()) pidsToStop.add(pid);
    const urls = [...nodes.values()].map((n) => n.http);
    expect(output()).toMatch(/curl -X PUT --data-binary 'hello' http:\/\/127\.0\.0\.1:\d+\/v1\/kv\/greeting/);
    expect(output()).toMatch(/kill -9 \d+ /);

    // A write through every node (followers forward to the leader); every write read on every node.
    for (const [id, { http }] of nodes) expect((await put(`${http}/v1/kv/k/${id}`, `v-${id}`)).status).toBe(200);
    for (const url of urls) {
      for (const id of nodes.keys()) expect(await getText(`${url}/v1/kv/k/${id}`)).toEqual({ status: 200, body: `v-${id}` });
    }

    // Compare-and-set: the first claim wins, the second gets 409 with the current index.
    const claimed = await put(`${urls[1]}/v1/kv/lock?cas=absent`, 'me');
    expect(claimed.status).toBe(200);
    const refused = await put(`${urls[2]}/v1/kv/lock?cas=absent`, 'you');
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'RAFTKV_COMPARE_FAILED', currentModIndex: claimed.body['modIndex'] });

    const listed = JSON.parse((await getText(`${urls[0]}/v1/kv?prefix=k%2F`)).body) as { items: { key: string; value: string }[] };
    expect(listed.items.map((i) => [i.key, i.value])).toEqual([['k/n1', 'v-n1'], ['k/n2', 'v-n2'], ['k/n3', 'v-n3']]);

    // raftkv status on the leader shows every peer's progress; an unreachable node exits 1.
    const leader = (await leaderOf(urls[0]!))!;
    const leaderNode = nodes.get(leader)!;
    const status = await run(['status', leaderNode.http]);
    expect(status.code, status.output).toBe(0);
    expect(status.output).toContain(`node ${leader} (cluster raftkv`);
    expect(status.output).toContain('role      leader');
    for (const id of nodes.keys()) expect(status.output).toMatch(new RegExp(`^ {4}${id} +match \\d+`, 'm'));
    const closedPort = await freePortRange(1, [basePort, httpBasePort]);
    const unreachable = await run(['status', `http://127.0.0.1:${closedPort}`, '--timeout-ms', '1000']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.output).toContain('raftkv status: cannot read');

    // kill -9 the leader: a survivor takes a write within a few election timeouts.
    process.kill(leaderNode.pid, 'SIGKILL');
    const survivor = [...nodes].find(([id]) => id !== leader)![1].http;
    const killedMs = Date.now();
    await waitFor('a write through a survivor', async () => {
      const result = await put(`${survivor}/v1/kv/after`, 'failover').catch(() => null);
      return result?.status === 200 ? result : null;
    }, 5_000, output);
    expect(Date.now() - killedMs).toBeLessThan(5_000);

    // The supervisor restarts it, and it serves again (catching up on the write it missed).
    await waitFor('the restart line', () => line(new RegExp(`^node ${leader} exited \\(signal SIGKILL\\); restarting`)), 10_000, output);
    const restarted = await waitFor('the restarted pid', () => line(new RegExp(`^node ${leader}: restarted, pid (\\d+)`)), 10_000, output);
    const newPid = Number(restarted[1]);
    pidsToStop.add(newPid);
    expect(newPid).not.toBe(leaderNode.pid);
    await waitFor(`${leader} serving again`, async () => {
      const read = await getText(`${leaderNode.http}/v1/kv/after`).catch(() => null);
      return read?.status === 200 && read.body === 'failover' ? read : null;
    }, 20_000, output);

    // SIGTERM: the supervisor stops every node by PID and exits 0; no node process is left.
    cluster.child.kill('SIGTERM');
    const exit = await cluster.exited;
    expect(exit, output()).toEqual({ code: 0, signal: null });
    expect(output()).toContain('raftkv cluster: stopped');
    const allPids = [...[...nodes.values()].map((n) => n.pid), newPid];
    expect(allPids.filter(alive), `node processes still running after the cluster exited\n${output()}`).toEqual([]);
  }, 90_000);

  it('refuses to start on a port that is in use, naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-cli-'));
    dirsToRemove.push(dir);
    const basePort = await freePortRange(NODES);
    const httpBasePort = await freePortRange(NODES, [basePort]);
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: httpBasePort + 1 }, resolve));
    try {
      const result = await run(['cluster', '--dir', dir, '--base-port', String(basePort), '--http-base-port', String(httpBasePort)]);
      expect(result.code).toBe(1);
      expect(result.output).toContain(`HTTP port ${httpBasePort + 1} of n2 on 127.0.0.1 is not free (EADDRINUSE)`);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('exits 2 on a bad command line', async () => {
    const result = await run(['cluster', '--nodes', 'three']);
    expect(result.code).toBe(2);
    expect(result.output).toContain('raftkv cluster: --nodes must be a positive integer, got "three"');
  });
});
