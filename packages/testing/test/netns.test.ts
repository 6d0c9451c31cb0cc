import { execFile, fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readlink, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsNetwork } from '../src/nemesis/netns.js';

const run = promisify(execFile);
const availability = await NetnsNetwork.available();
if (!availability.ok) console.log(`netns tests skipped: ${availability.reason}`);

const PORTS = { raft: 7000, http: 8000 } as const;
const NODES = ['a', 'b', 'c'] as const;
/** How long a probe waits before calling a link blackholed. */
const BLACKHOLE_WAIT_MS = 400;
/** A refused or reset connection must fail well within this. */
const FAST_FAILURE_MS = 250;
/** A healed link carries bytes again once TCP retransmits (backoff 200 ms, 400 ms, ...). */
const HEAL_WAIT_MS = 5_000;

/**
 * The program each node runs: echo servers on both ports of its own address, and, on request over
 * IPC, connections it opens to others and pings it sends on them (so links are probed from inside
 * the namespaces). Plain JS, written to a temp file for fork.
 */
const AGENT = `
import net from 'node:net';
const [host, raftPort, httpPort] = process.argv.slice(2);
const sockets = new Map();
let pings = 0;
const listen = (port) => new Promise((resolve, reject) => {
  const server = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
  server.once('error', reject);
  server.listen(Number(port), host, resolve);
});
function connect({ name, host, port, timeoutMs }) {
  return new Promise((resolve) => {
    const started = performance.now();
    const done = (outcome) => { clearTimeout(timer); resolve({ outcome, ms: performance.now() - started }); };
    const socket = net.connect({ host, port });
    const entry = { socket, error: null, closed: false, data: '', wake: () => {} };
    const timer = setTimeout(() => { socket.destroy(); done('timeout'); }, timeoutMs);
    socket.once('connect', () => { sockets.set(name, entry); done('connected'); });
    socket.on('error', (error) => { entry.error = error.code; done(error.code); entry.wake(); });
    socket.on('data', (chunk) => { entry.data += chunk; entry.wake(); });
    socket.on('close', () => { entry.closed = true; entry.wake(); });
  });
}
function ping({ name, timeoutMs }) {
  const entry = sockets.get(name);
  if (entry === undefined) return { outcome: 'no such connection', ms: 0 };
  const token = 'ping' + pings++ + ';';
  return new Promise((resolve) => {
    const started = performance.now();
    const done = (outcome) => { clearTimeout(timer); entry.wake = () => {}; resolve({ outcome, ms: performance.now() - started }); };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    entry.wake = () => {
      if (entry.data.includes(token)) done('echoed');
      else if (entry.error !== null) done(entry.error);
      else if (entry.closed) done('closed');
    };
    if (entry.error === null && !entry.closed) entry.socket.write(token);
    entry.wake();
  });
}
await Promise.all([listen(raftPort), listen(httpPort)]);
process.on('disconnect', () => process.exit(0));
process.on('message', async (m) => {
  const result = m.op === 'connect' ? await connect(m) : await ping(m);
  process.send({ id: m.id, result });
});
process.send({ ready: true, pid: process.pid });
`;

interface Outcome {
  readonly outcome: string;
  readonly ms: number;
}

/** One node's agent process, started with fork through the namespace. */
class Agent {
  readonly child: ChildProcess;
  readonly ready: Promise<{ pid: number }>;
  readonly #pending = new Map<number, (outcome: Outcome) => void>();
  #nextId = 1;

  constructor(network: NetnsNetwork, id: string, script: string) {
    const { execPath, execArgv } = network.forkOptions(id);
    this.child = fork(script, [network.hostOf(id), String(PORTS.raft), String(PORTS.http)], {
      execPath,
      execArgv: [...execArgv, '--no-warnings'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code, signal) => reject(new Error(`agent ${id} exited early (${String(code ?? signal)})`)));
      this.child.on('message', (message: { ready?: boolean; pid?: number; id?: number; result?: Outcome }) => {
        if (message.ready === true && message.pid !== undefined) resolve({ pid: message.pid });
        if (message.id !== undefined && message.result !== undefined) this.#pending.get(message.id)?.(message.result);
      });
    });
  }

  /** Opens a connection named `name` from this node and reports how that went. */
  connect(name: string, address: string, timeoutMs: number): Promise<Outcome> {
    const [host, port] = address.split(':');
    return this.#request({ op: 'connect', name, host, port: Number(port), timeoutMs });
  }

  /** Sends a token on connection `name` and waits for its echo. */
  ping(name: string, timeoutMs: number): Promise<Outcome> {
    return this.#request({ op: 'ping', name, timeoutMs });
  }

  #request(message: Record<string, unknown>): Promise<Outcome> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.child.send({ ...message, id });
    });
  }
}

/** A connection from the root namespace (the test process) to `address`. */
function connectFromRoot(address: string, timeoutMs: number): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = net.connect({ host: host ?? '', port: Number(port) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(error.code ?? error.message);
    });
  });
}

async function namespaceNames(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => name !== '');
}

async function deviceExists(name: string): Promise<boolean> {
  try {
    await run('ip', ['link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

describe('NetnsNetwork options', () => {
  it('rejects bad options before touching the system', async () => {
    await expect(NetnsNetwork.create({ nodes: [], ports: PORTS })).rejects.toThrow(/between 1 and/);
    await expect(NetnsNetwork.create({ nodes: ['a', 'a'], ports: PORTS })).rejects.toThrow(/distinct/);
    await expect(NetnsNetwork.create({ nodes: ['a'], ports: { raft: 7000, http: 7000 } })).rejects.toThrow(/must differ/);
    await expect(NetnsNetwork.create({ nodes: ['a'], ports: { raft: 0, http: 8000 } })).rejects.toThrow(/ports.raft/);
    await expect(NetnsNetwork.create({ nodes: ['a'], ports: { raft: 7000, http: 40000 } })).rejects.toThrow(/ephemeral range/);
  });
});

describe.skipIf(!availability.ok)('NetnsNetwork', () => {
  let network: NetnsNetwork;
  let dir: string;
  const agents = new Map<string, Agent>();
  const agent = (id: string): Agent => {
    const found = agents.get(id);
    if (found === undefined) throw new Error(`no agent ${id}`);
    return found;
  };
  let connections = 0;
  /** Opens a fresh connection from -> to's raft port and reports how that went. */
  const probe = (from: string, to: string, timeoutMs: number): Promise<Outcome> => agent(from).connect(`probe${connections++}`, network.raftAddress(to), timeoutMs);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'raftkv-netns-'));
    const script = join(dir, 'agent.mjs');
    await writeFile(script, AGENT);
    network = await NetnsNetwork.create({ nodes: NODES, ports: PORTS });
    for (const id of NODES) agents.set(id, new Agent(network, id, script));
    await Promise.all([...agents.values()].map((a) => a.ready));
  });

  afterAll(async () => {
    for (const a of agents.values()) {
      const pid = a.child.pid;
      if (pid !== undefined && a.child.exitCode === null && a.child.signalCode === null) process.kill(pid, 'SIGKILL');
    }
    await network?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('forks each node into its namespace with its IPC channel and its own pid', async () => {
    for (const id of NODES) {
      const a = agent(id);
      const { pid } = await a.ready; // it answered over IPC
      expect(pid).toBe(a.child.pid); // no wrapper process: signals by pid reach the node
      const inode = (await stat(`/run/netns/${network.namespaceOf(id)}`)).ino;
      expect(await readlink(`/proc/${pid}/ns/net`)).toBe(`net:[${inode}]`);
      expect(network.forkOptions(id).execArgv.at(-1)).toBe(process.execPath);
    }
  });

  it('connects every node to every other, and the root namespace to every node', async () => {
    expect(new Set(NODES.map((id) => network.hostOf(id))).size).toBe(NODES.length);
    expect(network.raftAddress('a')).toBe(`${network.hostOf('a')}:${PORTS.raft}`);
    expect(network.httpAddress('a')).toBe(`${network.hostOf('a')}:${PORTS.http}`);
    for (const from of NODES) {
      for (const to of NODES) {
        if (from !== to) expect((await probe(from, to, 2_000)).outcome).toBe('connected');
      }
      expect(await connectFromRoot(network.raftAddress(from), 2_000)).toBe('connected');
      expect(await connectFromRoot(network.httpAddress(from), 2_000)).toBe('connected');
    }
  });

  it("'drop' blackholes a -> b, new and open connections, and leaves b -> a alone", async () => {
    expect((await agent('a').connect('a-b-drop', network.raftAddress('b'), 2_000)).outcome).toBe('connected');
    expect((await agent('b').connect('b-a-drop', network.raftAddress('a'), 2_000)).outcome).toBe('connected');
    expect((await agent('a').ping('a-b-drop', 2_000)).outcome).toBe('echoed');

    await network.cut('a', 'b', 'drop');
    expect(network.links().find((l) => l.from === 'a' && l.to === 'b')?.fault).toBe('drop');
    expect((await probe('a', 'b', BLACKHOLE_WAIT_MS)).outcome).toBe('timeout');
    expect((await agent('a').connect('a-b-http', network.httpAddress('b'), BLACKHOLE_WAIT_MS)).outcome).toBe('timeout');
    expect((await agent('a').ping('a-b-drop', BLACKHOLE_WAIT_MS)).outcome).toBe('timeout');
    // One way only: b's connections to a, a's to c, and the root namespace are untouched.
    expect((await probe('b', 'a', 2_000)).outcome).toBe('connected');
    expect((await agent('b').ping('b-a-drop', 2_000)).outcome).toBe('echoed');
    expect((await probe('a', 'c', 2_000)).outcome).toBe('connected');
    expect(await connectFromRoot(network.raftAddress('b'), 2_000)).toBe('connected');

    await network.healAll();
    // The open connection survived the blackhole: its bytes arrive once TCP retransmits.
    expect((await agent('a').ping('a-b-drop', HEAL_WAIT_MS)).outcome).toBe('echoed');
    expect((await probe('a', 'b', 2_000)).outcome).toBe('connected');
  });

  it("'reset' refuses new a -> b connections at once, aborts open ones on both ends, leaves b -> a alone", async () => {
    expect((await agent('a').connect('a-b-reset', network.raftAddress('b'), 2_000)).outcome).toBe('connected');
    expect((await agent('b').connect('b-a-reset', network.raftAddress('a'), 2_000)).outcome).toBe('connected');

    await network.cut('a', 'b', 'reset');
    const refused = await probe('a', 'b', 2_000);
    expect(refused.outcome).toBe('ECONNREFUSED');
    expect(refused.ms).toBeLessThan(FAST_FAILURE_MS);
    expect((await agent('a').connect('a-b-http2', network.httpAddress('b'), 2_000)).outcome).toBe('ECONNREFUSED');
    const aborted = await agent('a').ping('a-b-reset', 2_000);
    expect(['ECONNABORTED', 'ECONNRESET', 'EPIPE']).toContain(aborted.outcome);
    expect(aborted.ms).toBeLessThan(FAST_FAILURE_MS);
    // b's end of that connection is gone too; b's own connection to a is not.
    const [ss, ...ssArgs] = [...network.commandPrefix('b'), 'ss', '-t', '-n', '-H', 'state', 'connected', 'dst', network.hostOf('a'), 'sport', '=', `:${PORTS.raft}`];
    expect((await run(ss ?? '', ssArgs)).stdout.trim()).toBe('');
    expect((await agent('b').ping('b-a-reset', 2_000)).outcome).toBe('echoed');
    expect((await probe('b', 'a', 2_000)).outcome).toBe('connected');

    // Replacing the fault: reset -> drop turns refusals into silence.
    await network.cut('a', 'b', 'drop');
    expect((await probe('a', 'b', BLACKHOLE_WAIT_MS)).outcome).toBe('timeout');
    await network.healAll();
    expect((await probe('a', 'b', 2_000)).outcome).toBe('connected');
  });

  it('healAll lifts every fault; links() lists every directed link in a stable order', async () => {
    await network.cut('a', 'b', 'drop');
    await network.cut('b', 'c', 'reset');
    await network.cut('c', 'a', 'drop');
    expect(network.links()).toEqual([
      { from: 'a', to: 'b', fault: 'drop', delay: null },
      { from: 'a', to: 'c', fault: null, delay: null },
      { from: 'b', to: 'a', fault: null, delay: null },
      { from: 'b', to: 'c', fault: 'reset', delay: null },
      { from: 'c', to: 'a', fault: 'drop', delay: null },
      { from: 'c', to: 'b', fault: null, delay: null },
    ]);
    expect((await probe('b', 'c', 2_000)).outcome).toBe('ECONNREFUSED');
    await network.healAll();
    expect(network.links().every((l) => l.fault === null && l.delay === null)).toBe(true);
    const outcomes = await Promise.all(NODES.flatMap((from) => NODES.filter((to) => to !== from).map((to) => probe(from, to, 2_000))));
    expect(outcomes.map((o) => o.outcome)).toEqual(Array(outcomes.length).fill('connected'));
  });

  it('rejects unknown nodes and self-links', async () => {
    await expect(network.cut('a', 'zz', 'drop')).rejects.toThrow(/unknown node "zz"/);
    await expect(network.cut('a', 'a', 'drop')).rejects.toThrow(/two different nodes/);
    expect(() => network.hostOf('zz')).toThrow(/unknown node/);
  });

  it('delay: refused with a clear error unless the machine has netem', async () => {
    // This implementation never claims delay (see netns.ts); removing a delay is a harmless no-op.
    expect(network.supportsDelay).toBe(false);
    await expect(network.delay('a', 'b', { delayMs: 50, jitterMs: 0 })).rejects.toThrow(/does not support delay/);
    await expect(network.delay('a', 'b', null)).resolves.toBeUndefined();
  });

  it('close removes namespaces, veths and the bridge, and is idempotent', async () => {
    const names = NODES.map((id) => network.namespaceOf(id));
    expect(await namespaceNames()).toEqual(expect.arrayContaining(names));
    for (const a of agents.values()) {
      const exited = new Promise((resolve) => a.child.once('exit', resolve));
      expect(a.child.kill('SIGKILL')).toBe(true); // ChildProcess.kill signals the pid fork reported
      await exited;
    }
    await network.close();
    await network.close();
    const left = await namespaceNames();
    for (const name of names) expect(left).not.toContain(name);
    // Devices are named after the namespaces: rk<tag>n<k> -> rk<tag>v<k>, rk<tag>b.
    const tag = names[0]?.replace(/n0$/, '') ?? '';
    expect(await deviceExists(`${tag}b`)).toBe(false);
    for (let k = 0; k < NODES.length; k++) expect(await deviceExists(`${tag}v${k}`)).toBe(false);
    await expect(network.cut('a', 'b', 'drop')).rejects.toThrow(/closed/);
  });

  it('instances created at the same time get distinct names and subnets', async () => {
    const [one, two] = await Promise.all([NetnsNetwork.create({ nodes: ['x', 'y'], ports: PORTS }), NetnsNetwork.create({ nodes: ['x', 'y'], ports: PORTS })]);
    try {
      expect(one.namespaceOf('x')).not.toBe(two.namespaceOf('x'));
      expect(one.hostOf('x').split('.').slice(0, 3)).not.toEqual(two.hostOf('x').split('.').slice(0, 3));
      expect(await connectFromRoot(one.raftAddress('x'), 1_000)).toBe('ECONNREFUSED'); // reachable, nobody listens
      expect(await connectFromRoot(two.raftAddress('y'), 1_000)).toBe('ECONNREFUSED');
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
    const left = await namespaceNames();
    expect(left).not.toContain(one.namespaceOf('x'));
    expect(left).not.toContain(two.namespaceOf('y'));
  });
});
