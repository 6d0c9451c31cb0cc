/**
 * End to end: `raftkv start` as one process: JSON logs on stdout, a clean stop on SIGTERM, and
 * a start failure (corrupt log, port in use) reported as `raftkv: <code>: <message>`, exit 1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'packages/cli/src/main.ts');
const FAST = ['--tick-ms', '20', '--election-timeout-ms', '200', '--heartbeat-interval-ms', '20'];

interface Started {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const pidsToStop = new Set<number>();
const dirsToRemove: string[] = [];

afterEach(async () => {
  for (const pid of pidsToStop) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  pidsToStop.clear();
  for (const dir of dirsToRemove.splice(0)) await rm(dir, { recursive: true, force: true });
});

function start(args: readonly string[]): Started {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=@raftkv/source', MAIN, 'start', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error('spawn produced no process');
  pidsToStop.add(child.pid);
  const lines = (stream: NodeJS.ReadableStream | null, into: string[]): void => {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (text: string) => {
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      into.push(...parts);
    });
  };
  const stdout: string[] = [];
  const stderr: string[] = [];
  lines(child.stdout, stdout);
  lines(child.stderr, stderr);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, stdout, stderr, exited };
}

/**
 * Ports free right now, all different: every listener stays open until all are chosen (closed
 * one at a time, the OS may hand out the same port twice).
 */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))));
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs: number, context: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) expect.unreachable(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await sleep(20);
  }
}

async function singleNodeArgs(dataDir: string): Promise<{ args: string[]; http: string; peerPort: number }> {
  const [peerPort, httpPort] = (await freePorts(2)) as [number, number];
  const http = `http://127.0.0.1:${httpPort}`;
  return { args: ['--id', 'n1', '--data-dir', dataDir, '--peers', `n1=127.0.0.1:${peerPort}`, '--http-peers', `n1=${http}`, ...FAST], http, peerPort };
}

/** Flips a bit in the last byte of a log entry in the middle of the log; returns its index. */
async function corruptMiddleEntry(logDir: string): Promise<number> {
  const db = new ClassicLevel<string, Uint8Array>(logDir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open();
  try {
    const keys = await db.keys({ gte: 'e/', lt: 'e0' }).all(); // 'e/' + hex index
    expect(keys.length).toBeGreaterThan(5);
    const key = keys[Math.floor(keys.length / 2)]!;
    const damaged = Uint8Array.from((await db.get(key))!);
    damaged[damaged.byteLength - 1] = (damaged[damaged.byteLength - 1] ?? 0) ^ 0x5a;
    await db.put(key, damaged);
    return Number.parseInt(key.slice(2), 16);
  } finally {
    await db.close();
  }
}

describe('raftkv start', () => {
  it('serves, logs JSON lines on stdout, stops cleanly on SIGTERM; a corrupt log then fails the start with its code', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-start-'));
    dirsToRemove.push(dir);
    const dataDir = join(dir, 'n1');
    const { args, http } = await singleNodeArgs(dataDir);
    const node = start(args);
    const context = (): string => `stdout:\n${node.stdout.join('\n')}\nstderr:\n${node.stderr.join('\n')}`;
    await waitFor('the human line', () => node.stderr.some((l) => l.startsWith('raftkv node n1: peers on 127.0.0.1:')), 20_000, context);
    expect(node.stderr.find((l) => l.startsWith('raftkv node n1'))).toContain(`HTTP on ${http}`);
    // A single voter elects itself; writes then succeed.
    for (let k = 0; k < 12; k++) {
      const deadline = Date.now() + 5_000;
      for (;;) {
        const response = await fetch(`${http}/v1/kv/k${k}`, { method: 'PUT', body: `v${k}` });
        if (response.status === 200) break;
        expect(Date.now() < deadline, `PUT k${k}: ${response.status} ${await response.text()}`).toBe(true);
        await sleep(20);
      }
    }
    node.child.kill('SIGTERM');
    expect(await node.exited, context()).toEqual({ code: 0, signal: null });
    const logs = node.stdout.filter((l) => l !== '').map((l) => JSON.parse(l) as { msg: string });
    expect(logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['node started', 'stopping', 'node stopped', 'stopped']));

    const index = await corruptMiddleEntry(join(dataDir, 'log'));
    const again = start(args);
    expect(await again.exited).toEqual({ code: 1, signal: null });
    const failure = again.stderr.find((l) => l.startsWith('raftkv: '));
    expect(failure, again.stderr.join('\n')).toMatch(/^raftkv: RAFTKV_STORAGE_CORRUPT: /);
    expect(failure).toMatch(new RegExp(`\\b${index}\\b`));
  }, 60_000);

  it('reports a peer port in use as `raftkv: EADDRINUSE: ...`, exit 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-start-'));
    dirsToRemove.push(dir);
    const { args, peerPort } = await singleNodeArgs(join(dir, 'n1'));
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: peerPort }, resolve));
    try {
      const node = start(args);
      expect(await node.exited).toEqual({ code: 1, signal: null });
      expect(node.stderr.join('\n')).toMatch(/^raftkv: EADDRINUSE: /m);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  }, 30_000);
});
