/**
 * Helpers for the end-to-end membership tests (test/cli-members.test.ts): `raftkv` commands as
 * real processes, stopped by PID; the procedures of docs/operations.md, read from the doc and
 * rewritten from its example hosts to local ports; a writer that measures the longest time
 * without an acknowledged write.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';

export const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'packages/cli/src/main.ts');
const NODE_FLAGS = ['--import', 'tsx', '--conditions=@raftkv/source'];
const POLL_MS = 20;
/** One HTTP request of a test waits at most this long. */
const REQUEST_TIMEOUT_MS = 5_000;

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Started {
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout lines (a node's JSON log lines; a command's table or JSON). */
  readonly stdout: string[];
  /** stderr lines (a node's human lines; a command's messages). */
  readonly stderr: string[];
  readonly exited: Promise<Exit>;
}

/** Every process a test starts, stopped by its PID when the test ends, whatever happened. */
export class Processes {
  readonly #started = new Map<number, Started>();

  /** Starts `raftkv <args>`. */
  raftkv(args: readonly string[]): Started {
    const child = spawn(process.execPath, [...NODE_FLAGS, MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RAFTKV_ENDPOINTS: '' } });
    if (child.pid === undefined) throw new Error('spawn produced no process');
    const stdout: string[] = [];
    const stderr: string[] = [];
    collectLines(child.stdout, stdout);
    collectLines(child.stderr, stderr);
    const exited = new Promise<Exit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const started: Started = { pid: child.pid, child, stdout, stderr, exited };
    this.#started.set(child.pid, started);
    void exited.then(() => this.#started.delete(started.pid));
    return started;
  }

  /** Runs `raftkv <args>` to its end. */
  async run(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const started = this.raftkv(args);
    const { code } = await started.exited;
    return { code, stdout: started.stdout.join('\n'), stderr: started.stderr.join('\n') };
  }

  /** Sends `signal` to one process by its PID and waits for it to end. */
  async stop(started: Started, signal: NodeJS.Signals): Promise<Exit> {
    process.kill(started.pid, signal);
    return started.exited;
  }

  /** SIGKILL to every process still running, by PID. */
  async stopAll(): Promise<void> {
    const running = [...this.#started.values()];
    for (const started of running) {
      try {
        process.kill(started.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all(running.map((s) => s.exited));
  }
}

function collectLines(stream: NodeJS.ReadableStream | null, into: string[]): void {
  let partial = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (text: string) => {
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    into.push(...parts);
  });
  stream?.on('end', () => {
    if (partial !== '') into.push(partial);
  });
}

/** Ports free right now, all different: every listener stays open until all are chosen. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))));
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

// ---------------------------------------------------------------------------------- the docs

/**
 * The `raftkv ...` commands of the code blocks marked `<!-- procedure: <name> -->` in
 * docs/operations.md, in order. The tests compare them with the commands they run.
 */
export async function procedure(name: string): Promise<string[]> {
  const lines = (await readFile(join(ROOT, 'docs/operations.md'), 'utf8')).split('\n');
  const commands: string[] = [];
  for (let k = 0; k < lines.length; k++) {
    if (lines[k]!.trim() !== `<!-- procedure: ${name} -->`) continue;
    expect(lines[k + 1]?.trim(), `docs/operations.md line ${k + 2}: a \`\`\`sh fence must follow the marker of ${name}`).toBe('```sh');
    for (k += 2; k < lines.length && lines[k]!.trim() !== '```'; k++) {
      const line = lines[k]!.trim();
      if (line.startsWith('raftkv ')) commands.push(line);
    }
  }
  return commands;
}

/** Where a test runs each example host of the docs (10.0.0.<n>): peer and HTTP ports on 127.0.0.1. */
export class Hosts {
  readonly #ports: Map<number, { peer: number; http: number }>;

  private constructor(ports: Map<number, { peer: number; http: number }>) {
    this.#ports = ports;
  }

  static async allocate(count: number): Promise<Hosts> {
    const ports = await freePorts(2 * count);
    return new Hosts(new Map(Array.from({ length: count }, (_, k) => [k + 1, { peer: ports[2 * k]!, http: ports[2 * k + 1]! }])));
  }

  #of(n: number): { peer: number; http: number } {
    const ports = this.#ports.get(n);
    if (ports === undefined) throw new Error(`no local ports for host 10.0.0.${n}`);
    return ports;
  }

  /** `127.0.0.1:<peer port>` of node `n<k>` (host 10.0.0.<k>). */
  peer(k: number): string {
    return `127.0.0.1:${this.#of(k).peer}`;
  }

  /** `http://127.0.0.1:<http port>`. */
  url(k: number): string {
    return `http://127.0.0.1:${this.#of(k).http}`;
  }

  /**
   * A command of the docs as arguments for this machine: each `10.0.0.<k>:7001` (peer),
   * `10.0.0.<k>:8001` and `http://10.0.0.<k>:8001` (HTTP) becomes its local port, and
   * `/var/lib/raftkv` the data directory of the node the command starts.
   */
  localize(command: string, dataDir: (id: string) => string): string[] {
    expect(command.startsWith('raftkv ')).toBe(true);
    const local = command.replace(/(http:\/\/)?10\.0\.0\.(\d+):(7001|8001)/g, (_match, scheme: string | undefined, host: string, port: string) => {
      const ports = this.#of(Number(host));
      return `${scheme ?? ''}127.0.0.1:${port === '7001' ? ports.peer : ports.http}`;
    });
    const args = local.split(/\s+/).slice(1);
    const id = args[args.indexOf('--id') + 1];
    return args.map((arg) => (arg === '/var/lib/raftkv' && id !== undefined ? dataDir(id) : arg));
  }
}

// --------------------------------------------------------------------------------- HTTP

export interface MemberJson {
  readonly id: string;
  readonly role: 'voter' | 'learner';
  readonly peerAddress: string | null;
  readonly httpAddress: string | null;
  readonly isLeader: boolean;
  readonly autoPromote: boolean;
  readonly match: number | null;
  readonly lag: number | null;
  readonly replication: string | null;
}

export interface MembersJson {
  readonly leader: string | null;
  readonly members: readonly MemberJson[];
}

export interface StatusJson {
  readonly id: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commit: number;
  readonly firstIndex: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

export async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export async function put(url: string, value: string): Promise<number> {
  const response = await fetch(url, { method: 'PUT', body: value, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  await response.arrayBuffer();
  return response.status;
}

/** Polls `probe` until it returns something other than null; fails the test after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | null> | T | null, timeoutMs: number, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) expect.unreachable(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await sleep(POLL_MS);
  }
}

/** The leader every node at `urls` names, once they all agree and it says it leads. */
export async function agreedLeader(urls: readonly string[], timeoutMs = 20_000): Promise<StatusJson> {
  return waitFor(
    `a leader agreed on by ${urls.join(', ')}`,
    async () => {
      const statuses = await Promise.all(urls.map((url) => getJson<StatusJson>(`${url}/v1/status`)));
      const leader = statuses.find((s) => s.role === 'leader');
      return leader !== undefined && statuses.every((s) => s.leader === leader.id) ? leader : null;
    },
    timeoutMs,
  );
}

/** Writes every key, retrying each while the cluster answers 503 (an election). */
export async function writeAll(url: string, entries: Iterable<[string, string]>, acked: Map<string, string>): Promise<void> {
  for (const [key, value] of entries) {
    await waitFor(`PUT ${key}`, async () => ((await put(`${url}/v1/kv/${key}`, value)) === 200 ? true : null), 10_000);
    acked.set(key, value);
  }
}

/**
 * Every acknowledged key, read at `url` (linearizable listings, one per key prefix): the keys
 * missing or wrong there, listed.
 */
export async function expectReadable(url: string, acked: ReadonlyMap<string, string>): Promise<void> {
  const prefixes = new Set([...acked.keys()].map((key) => key.slice(0, key.lastIndexOf('/') + 1)));
  const found = new Map<string, string>();
  for (const prefix of prefixes) {
    const { items } = await getJson<{ items: { key: string; value: string }[] }>(`${url}/v1/kv?prefix=${encodeURIComponent(prefix)}`);
    for (const item of items) found.set(item.key, item.value);
  }
  const wrong = [...acked].filter(([key, value]) => found.get(key) !== value).map(([key, value]) => `${key}: expected ${value}, read ${found.get(key) ?? 'nothing'}`);
  expect(wrong.slice(0, 20), `${wrong.length} of ${acked.size} acknowledged writes missing or wrong at ${url}`).toEqual([]);
}

/**
 * Writes one key after another, each through the next of `urls` (the next again after a
 * failure), until stopped. Records every acknowledged write and the longest time between two
 * acknowledgements: how long the cluster took no write at all.
 */
export class Writer {
  readonly acked = new Map<string, string>();
  failures = 0;
  readonly failureCodes = new Map<string, number>();
  longestGapMs = 0;
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(urls: readonly string[], prefix: string, perPrefix = 5_000) {
    this.#done = this.#run(urls, prefix, perPrefix);
  }

  async #run(urls: readonly string[], prefix: string, perPrefix: number): Promise<void> {
    let lastAckMs = performance.now();
    let k = 0;
    let at = 0;
    while (!this.#stopped) {
      // Listings return at most 10,000 keys: a prefix per perPrefix keys.
      const key = `${prefix}${Math.floor(k / perPrefix)}/${k}`;
      const value = `v${k}`;
      let status: number | string;
      try {
        status = await put(`${urls[at % urls.length]}/v1/kv/${key}`, value);
      } catch (error) {
        status = error instanceof Error ? error.name : 'error';
      }
      const now = performance.now();
      if (status === 200) {
        this.acked.set(key, value);
        this.longestGapMs = Math.max(this.longestGapMs, now - lastAckMs);
        lastAckMs = now;
        k++;
      } else {
        this.failures++;
        this.failureCodes.set(String(status), (this.failureCodes.get(String(status)) ?? 0) + 1);
        at++;
        await sleep(POLL_MS);
      }
    }
    this.longestGapMs = Math.max(this.longestGapMs, performance.now() - lastAckMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/** Parsed JSON log lines of a node (its stdout). */
export function logLines(started: Started): Record<string, unknown>[] {
  return started.stdout.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
}
