/**
 * NetnsNetwork: every node in its own Linux network namespace, links cut with packet filter
 * rules. Root only; `NetnsNetwork.available()` says whether this machine can do it and why not.
 *
 * Layout (one instance, tag T, subnet 10.A.B.0/24):
 *
 *   root namespace:  bridge `rkTb` 10.A.B.1/24 — the test process reaches every node through it
 *   node k:          namespace `rkTn<k>`, lo up, `eth0` 10.A.B.<k+2>/24, whose veth peer
 *                    `rkTv<k>` is a port of the bridge
 *
 * Every node listens on the same ports (each namespace has its own port space), so a directed link
 * `from -> to` (the connections `from` opens to `to`'s raft and http ports, see links.ts) is
 * matched exactly by two INPUT rules:
 *   - in to's namespace:   -s ip(from) -p tcp --dports {raft,http}   (what `from` sends)
 *   - in from's namespace: -s ip(to)   -p tcp --sports {raft,http}   (what `to` answers)
 * The connections `to` opens to `from` have the ports the other way round and are untouched.
 * Client ports are ephemeral (32768-60999 in a new namespace) and create() refuses listening
 * ports in that range, so the two kinds of rule cannot match each other's traffic.
 *
 * `drop` is DROP on both sides. `reset` is REJECT with a TCP reset on both sides (RST segments are
 * let through, so that the resets themselves arrive), then `ss -K` (SOCK_DESTROY) aborts the
 * link's established sockets in both namespaces: each end sees ECONNABORTED at once. Without `ss`
 * each end would see ECONNRESET on its next segment instead. New connections are refused
 * (ECONNREFUSED) at once.
 *
 * Delay is not supported: it would need the netem qdisc, which this project's machines lack.
 *
 * Commands run with execFile (no shell); a failure throws an Error naming the command and
 * carrying its stderr. Nothing is left behind: close() removes everything, create() undoes a
 * half-built network, a process exit removes what its instances still hold, and create() sweeps
 * what instances of dead processes left.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { NodeId } from '@raftkv/raft';
import type { LinkControl, LinkDelay, LinkFaultMode, LinkState } from './links.js';

/** Nodes per network: their addresses are .2 .. .NODES_MAX+1 of one /24. */
export const NETNS_NODES_MAX = 200;
/** Any one command (ip, iptables, ss) that takes longer is killed and reported. */
const COMMAND_TIMEOUT_MS = 10_000;
/** Output kept from one command. */
const COMMAND_OUTPUT_BYTES_MAX = 1024 * 1024;
/** Seconds iptables waits for the xtables lock (shared by every namespace with iptables-legacy). */
const XTABLES_LOCK_WAIT_S = '5';
/** The ephemeral port range of a new network namespace (net.ipv4.ip_local_port_range's default). */
const EPHEMERAL_PORT_MIN = 32768;
const EPHEMERAL_PORT_MAX = 60999;
/** Random subnets tried before create() gives up. */
const SUBNET_ATTEMPTS_MAX = 20;
/** The second octet of our subnets: 10.SUBNET_OCTET_MIN-254.x.0/24, away from common 10.0-10.199 use. */
const SUBNET_OCTET_MIN = 200;

export type NetnsAvailability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface NetnsNetworkOptions {
  /** The nodes, each in its own namespace, in this order (node k gets address .k+2). */
  readonly nodes: readonly NodeId[];
  /** The ports every node listens on inside its namespace. */
  readonly ports: { readonly raft: number; readonly http: number };
}

/** The programs a network runs, as absolute paths. */
interface Tools {
  readonly ip: string;
  /** iptables, iptables-nft or iptables-legacy: the first that works inside a namespace. */
  readonly iptables: string;
  /** null: `reset` cannot abort established connections (they reset on their next segment). */
  readonly ss: string | null;
}

type Probe = { readonly ok: true; readonly tools: Tools } | { readonly ok: false; readonly reason: string };

/** A rule we added, as the argv of `iptables -A` after the chain name, and where. */
interface Rule {
  readonly namespace: string;
  readonly spec: readonly string[];
}

/** A root-namespace firewall rule added so that the bridge carries traffic (removed by close). */
interface RootRule {
  readonly chain: 'INPUT' | 'OUTPUT' | 'FORWARD';
  readonly spec: readonly string[];
}

let probe: Promise<Probe> | null = null;
let instanceCount = 0;
const TAG_SPACE = 36 ** 4;
const tagStart = randomInt(0, TAG_SPACE);
/** Every network created and not yet closed, for the exit hook. */
const liveNetworks = new Set<NetnsNetwork>();
let exitHookInstalled = false;

export class NetnsNetwork implements LinkControl {
  readonly nodes: readonly NodeId[];
  /** No netem here (see the module comment). */
  readonly supportsDelay = false;
  readonly #tools: Tools;
  readonly #ports: { readonly raft: number; readonly http: number };
  readonly #tag: string;
  /** The first three octets of the subnet, e.g. "10.231.7". */
  readonly #subnet: string;
  readonly #index = new Map<NodeId, number>();
  /** Per directed link ("from\0to"): its fault and the rules that make it. */
  readonly #faults = new Map<string, { readonly mode: LinkFaultMode; readonly rules: readonly Rule[] }>();
  readonly #rootRules: RootRule[] = [];
  /** What this instance created, and only that, is what close() removes (a name clash must not delete another's). */
  readonly #made = { bridge: false, veths: new Set<number>(), namespaces: new Set<number>() };
  /** Serialises cut / healAll / close: each waits for the previous one. */
  #queue: Promise<void> = Promise.resolve();
  #closed: Promise<void> | null = null;

  private constructor(tools: Tools, options: NetnsNetworkOptions, tag: string, subnet: string) {
    this.#tools = tools;
    this.nodes = [...options.nodes];
    this.#ports = { raft: options.ports.raft, http: options.ports.http };
    this.#tag = tag;
    this.#subnet = subnet;
    options.nodes.forEach((id, k) => this.#index.set(id, k));
  }

  /**
   * Whether this machine can run a NetnsNetwork: root, `ip netns`, veth and bridge devices, and
   * iptables rules inside a namespace (tried in a throwaway namespace). Checked once per process.
   */
  static async available(): Promise<NetnsAvailability> {
    const result = await probeTools();
    return result.ok ? { ok: true } : { ok: false, reason: result.reason };
  }

  /** Builds the namespaces, veths and bridge. Throws (having removed what it built) on failure. */
  static async create(options: NetnsNetworkOptions): Promise<NetnsNetwork> {
    validateOptions(options);
    const probed = await probeTools();
    if (!probed.ok) throw new Error(`NetnsNetwork is not available here: ${probed.reason}`);
    const tools = probed.tools;
    await sweepStale(tools);
    for (let attempt = 1; attempt <= SUBNET_ATTEMPTS_MAX; attempt++) {
      const subnet = `10.${randomInt(SUBNET_OCTET_MIN, 255)}.${randomInt(0, 256)}`;
      if (overlapsRoute(await routedPrefixes(tools), subnet)) continue;
      const network = new NetnsNetwork(tools, options, newTag(), subnet);
      liveNetworks.add(network);
      NetnsNetwork.#installExitHook();
      try {
        // Another process may have picked the same subnet at the same moment: then both retry.
        if (!(await network.#buildBridge())) {
          await network.close();
          continue;
        }
        await network.#buildRootRules();
        await Promise.all(network.nodes.map((_, k) => network.#buildNode(k)));
        return network;
      } catch (error) {
        await network.close().catch(() => {}); // the build error is the one worth reporting
        throw error;
      }
    }
    throw new Error(`NetnsNetwork: found no free 10.x.y.0/24 subnet in ${SUBNET_ATTEMPTS_MAX} attempts`);
  }

  /** The address node `id` listens on and is reached at, from the root namespace and from the others. */
  hostOf(id: NodeId): string {
    return `${this.#subnet}.${this.#indexOf(id) + 2}`;
  }

  /** "ip:port" of the node's Raft listener. */
  raftAddress(id: NodeId): string {
    return `${this.hostOf(id)}:${this.#ports.raft}`;
  }

  /** "ip:port" of the node's HTTP listener. */
  httpAddress(id: NodeId): string {
    return `${this.hostOf(id)}:${this.#ports.http}`;
  }

  /** The name of the node's namespace (as `ip netns list` shows it). */
  namespaceOf(id: NodeId): string {
    return this.#namespace(this.#indexOf(id));
  }

  /**
   * An argv prefix that runs a command in the node's namespace: `[...prefix, program, ...args]`.
   * `ip netns exec` execs the program (no fork), so the pid a spawn reports is the program's.
   */
  commandPrefix(id: NodeId): string[] {
    return [this.#tools.ip, 'netns', 'exec', this.namespaceOf(id)];
  }

  /**
   * Options for `child_process.fork` that start the module in the node's namespace, keeping the
   * IPC channel and the pid (the pid fork reports is the Node process itself, so signals reach it):
   *
   *   const { execPath, execArgv } = network.forkOptions(id);
   *   fork(modulePath, args, { execPath, execArgv: [...execArgv, ...nodeFlags], stdio: [..., 'ipc'] });
   *
   * fork runs `execPath ...execArgv modulePath ...args`, and execArgv here ends with this Node
   * binary, so the caller's own Node flags (e.g. `--import tsx`) go after it. Giving execArgv
   * replaces fork's default (process.execArgv): pass on whichever of those flags the child needs.
   */
  forkOptions(id: NodeId): { execPath: string; execArgv: string[] } {
    const [execPath, ...execArgv] = this.commandPrefix(id);
    if (execPath === undefined) throw new Error('NetnsNetwork: empty command prefix');
    return { execPath, execArgv: [...execArgv, process.execPath] };
  }

  async cut(from: NodeId, to: NodeId, mode: LinkFaultMode): Promise<void> {
    const f = this.#indexOf(from);
    const t = this.#indexOf(to);
    if (f === t) throw new Error(`NetnsNetwork: a link joins two different nodes, got ${from} -> ${to}`);
    if (mode !== 'drop' && mode !== 'reset') throw new Error(`NetnsNetwork: unknown fault mode ${String(mode)}`);
    return this.#serially(() => this.#cut(f, t, mode));
  }

  /** Refused: delay needs netem (see supportsDelay). Removing a delay (null) is a no-op. */
  async delay(from: NodeId, to: NodeId, delay: LinkDelay | null): Promise<void> {
    this.#indexOf(from);
    this.#indexOf(to);
    if (delay === null) return;
    throw new Error('NetnsNetwork does not support delay (it would need the netem qdisc); check supportsDelay first');
  }

  async healAll(): Promise<void> {
    return this.#serially(async () => {
      // Flushing the whole chain also clears any rule our bookkeeping missed: we own these namespaces.
      await Promise.all(this.nodes.map((_, k) => this.#iptables(this.#namespace(k), ['-F', 'INPUT'])));
      this.#faults.clear();
    });
  }

  links(): LinkState[] {
    const states: LinkState[] = [];
    for (const from of this.nodes) {
      for (const to of this.nodes) {
        if (from === to) continue;
        states.push({ from, to, fault: this.#faults.get(linkKey(from, to))?.mode ?? null, delay: null });
      }
    }
    return states;
  }

  /**
   * Removes veths, bridge, root rules and namespaces; every step runs even if others fail, and
   * the first failures are thrown together at the end. Idempotent. Kill the processes started in
   * the namespaces first: a namespace with processes in it lives on (unnamed, without network).
   */
  close(): Promise<void> {
    if (this.#closed === null) {
      const queued = this.#queue.catch(() => {});
      this.#closed = queued.then(() => this.#teardown());
    }
    return this.#closed;
  }

  async #cut(f: number, t: number, mode: LinkFaultMode): Promise<void> {
    this.#assertOpen();
    const from = this.#nodeAt(f);
    const to = this.#nodeAt(t);
    const ports = `${this.#ports.raft},${this.#ports.http}`;
    const verdict = mode === 'drop' ? ['-j', 'DROP'] : ['-m', 'tcp', '!', '--tcp-flags', 'RST', 'RST', '-j', 'REJECT', '--reject-with', 'tcp-reset'];
    const rules: Rule[] = [
      { namespace: this.#namespace(t), spec: ['-s', `${this.#host(f)}/32`, '-p', 'tcp', '-m', 'multiport', '--dports', ports, ...verdict] },
      { namespace: this.#namespace(f), spec: ['-s', `${this.#host(t)}/32`, '-p', 'tcp', '-m', 'multiport', '--sports', ports, ...verdict] },
    ];
    // New rules first, then the old ones go: the link is never open in between.
    const previous = this.#faults.get(linkKey(from, to));
    for (const rule of rules) await this.#iptables(rule.namespace, ['-A', 'INPUT', ...rule.spec]);
    this.#faults.set(linkKey(from, to), { mode, rules });
    for (const rule of previous?.rules ?? []) await this.#iptables(rule.namespace, ['-D', 'INPUT', ...rule.spec]);
    if (mode === 'reset') await this.#abortConnections(f, t);
  }

  /** Aborts the established connections of link f -> t in both namespaces (ss -K, SOCK_DESTROY). */
  async #abortConnections(f: number, t: number): Promise<void> {
    const ss = this.#tools.ss;
    if (ss === null) return; // the REJECT rules reset them on their next segment instead
    const ports = (key: 'sport' | 'dport'): string[] => ['(', key, '=', `:${this.#ports.raft}`, 'or', key, '=', `:${this.#ports.http}`, ')'];
    // `state connected` keeps the listeners out of it whatever the filter says.
    await this.#inNamespace(this.#namespace(f), ss, ['-K', '-t', '-n', 'state', 'connected', 'dst', this.#host(t), ...ports('dport')]);
    await this.#inNamespace(this.#namespace(t), ss, ['-K', '-t', '-n', 'state', 'connected', 'dst', this.#host(f), ...ports('sport')]);
  }

  /** Creates the bridge and gives it .1; false if another bridge took the same subnet meanwhile. */
  async #buildBridge(): Promise<boolean> {
    const ip = this.#tools.ip;
    const bridge = this.#bridge();
    await run(ip, ['link', 'add', bridge, 'type', 'bridge']);
    this.#made.bridge = true;
    await run(ip, ['addr', 'add', `${this.#subnet}.1/24`, 'dev', bridge]);
    await run(ip, ['link', 'set', bridge, 'up']);
    const routes = await routedPrefixes(this.#tools);
    return !routes.some((route) => route.dev !== bridge && overlaps(route.prefix, `${this.#subnet}.0/24`));
  }

  /**
   * With br_netfilter, bridged frames cross the root namespace's FORWARD chain, and the test
   * process's own traffic crosses INPUT and OUTPUT: where those chains are not plain ACCEPT,
   * an ACCEPT rule for our bridge goes first.
   */
  async #buildRootRules(): Promise<void> {
    const bridge = this.#bridge();
    const candidates: RootRule[] = [
      { chain: 'INPUT', spec: ['-i', bridge, '-j', 'ACCEPT'] },
      { chain: 'OUTPUT', spec: ['-o', bridge, '-j', 'ACCEPT'] },
    ];
    if (readSysctl('/proc/sys/net/bridge/bridge-nf-call-iptables') === '1') {
      candidates.push({ chain: 'FORWARD', spec: ['-i', bridge, '-o', bridge, '-j', 'ACCEPT'] });
    }
    for (const rule of candidates) {
      const listing = await run(this.#tools.iptables, ['-w', XTABLES_LOCK_WAIT_S, '-S', rule.chain]);
      if (listing.trim() === `-P ${rule.chain} ACCEPT`) continue;
      await run(this.#tools.iptables, ['-w', XTABLES_LOCK_WAIT_S, '-I', rule.chain, '1', ...rule.spec]);
      this.#rootRules.push(rule);
    }
  }

  async #buildNode(k: number): Promise<void> {
    const ip = this.#tools.ip;
    const namespace = this.#namespace(k);
    const veth = this.#veth(k);
    await run(ip, ['netns', 'add', namespace]);
    this.#made.namespaces.add(k);
    // The peer is created directly inside the namespace, so its name there can be eth0.
    await run(ip, ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace]);
    this.#made.veths.add(k);
    await run(ip, ['link', 'set', veth, 'master', this.#bridge(), 'up']);
    await run(ip, ['-n', namespace, 'link', 'set', 'lo', 'up']);
    await run(ip, ['-n', namespace, 'addr', 'add', `${this.#host(k)}/24`, 'dev', 'eth0']);
    await run(ip, ['-n', namespace, 'link', 'set', 'eth0', 'up']);
  }

  async #teardown(): Promise<void> {
    const ip = this.#tools.ip;
    const failures: string[] = [];
    const attempt = async (file: string, args: readonly string[], absent: RegExp): Promise<void> => {
      try {
        await run(file, args);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (!absent.test(message)) failures.push(message);
      }
    };
    // Veths first: deleting one end deletes the pair at once (a namespace's devices go later, asynchronously).
    const made = this.#made;
    await Promise.all([...made.veths].map((k) => attempt(ip, ['link', 'del', this.#veth(k)], NO_DEVICE)));
    made.veths.clear();
    if (made.bridge) await attempt(ip, ['link', 'del', this.#bridge()], NO_DEVICE);
    made.bridge = false;
    for (const rule of this.#rootRules.splice(0)) {
      await attempt(this.#tools.iptables, ['-w', XTABLES_LOCK_WAIT_S, '-D', rule.chain, ...rule.spec], NO_RULE);
    }
    await Promise.all([...made.namespaces].map((k) => attempt(ip, ['netns', 'del', this.#namespace(k)], NO_NAMESPACE)));
    made.namespaces.clear();
    this.#faults.clear();
    liveNetworks.delete(this);
    if (failures.length > 0) throw new Error(`NetnsNetwork.close: ${failures.length} step(s) failed:\n${failures.join('\n')}`);
  }

  /** Synchronous best-effort teardown for process exit (no await possible there). */
  #teardownSync(): void {
    const ip = this.#tools.ip;
    const quietly = (args: string[]): void => {
      try {
        execFileSync(ip, args, { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      } catch {
        // at exit nothing can be reported; sweepStale removes leftovers next time
      }
    };
    const made = this.#made;
    made.veths.forEach((k) => quietly(['link', 'del', this.#veth(k)]));
    made.veths.clear();
    if (made.bridge) quietly(['link', 'del', this.#bridge()]);
    made.bridge = false;
    for (const rule of this.#rootRules.splice(0)) {
      try {
        execFileSync(this.#tools.iptables, ['-w', XTABLES_LOCK_WAIT_S, '-D', rule.chain, ...rule.spec], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      } catch {
        // as above
      }
    }
    made.namespaces.forEach((k) => quietly(['netns', 'del', this.#namespace(k)]));
    made.namespaces.clear();
    liveNetworks.delete(this);
  }

  /** On a normal process exit, removes what live instances still hold (a forgotten close()). */
  static #installExitHook(): void {
    if (exitHookInstalled) return;
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const network of [...liveNetworks]) network.#teardownSync();
    });
  }

  #serially(operation: () => Promise<void>): Promise<void> {
    this.#assertOpen();
    const result = this.#queue.then(operation);
    this.#queue = result.catch(() => {});
    return result;
  }

  #assertOpen(): void {
    if (this.#closed !== null) throw new Error('NetnsNetwork is closed');
  }

  #iptables(namespace: string, args: readonly string[]): Promise<string> {
    return this.#inNamespace(namespace, this.#tools.iptables, ['-w', XTABLES_LOCK_WAIT_S, ...args]);
  }

  #inNamespace(namespace: string, file: string, args: readonly string[]): Promise<string> {
    return run(this.#tools.ip, ['netns', 'exec', namespace, file, ...args]);
  }

  #indexOf(id: NodeId): number {
    const k = this.#index.get(id);
    if (k === undefined) throw new Error(`NetnsNetwork: unknown node ${JSON.stringify(id)} (nodes: ${this.nodes.join(', ')})`);
    return k;
  }

  #nodeAt(k: number): NodeId {
    const id = this.nodes[k];
    if (id === undefined) throw new Error(`NetnsNetwork: no node at index ${k}`);
    return id;
  }

  #host(k: number): string {
    return `${this.#subnet}.${k + 2}`;
  }

  #namespace(k: number): string {
    return `rk${this.#tag}n${k}`;
  }

  #veth(k: number): string {
    return `rk${this.#tag}v${k}`;
  }

  #bridge(): string {
    return `rk${this.#tag}b`;
  }
}

const NO_DEVICE = /Cannot find device|does not exist/;
const NO_NAMESPACE = /No such file or directory|Invalid netns name/;
const NO_RULE = /does a matching rule exist|No chain\/target\/match|Bad rule/;
/** Our names: "rk" + tag (5 base-36 digits of the pid, 4 of the instance) + kind + index. */
const NAME_PATTERN = /^rk([0-9a-z]{5})[0-9a-z]{4}(?:b|[nv]\d+)$/;

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}\u0000${to}`;
}

/**
 * Unique per instance across processes and threads: the pid tells a later sweep whether the
 * owner is gone; a counter from a random start tells apart the instances of one module, and the
 * random start those of threads sharing a pid. Names stay within IFNAMSIZ (15): "rk" + 9 + "v"
 * + up to 3 digits.
 */
function newTag(): string {
  instanceCount++;
  const pid = process.pid.toString(36).padStart(5, '0').slice(-5);
  const unique = ((tagStart + instanceCount) % TAG_SPACE).toString(36).padStart(4, '0');
  return `${pid}${unique}`;
}

function validateOptions(options: NetnsNetworkOptions): void {
  const { nodes, ports } = options;
  if (nodes.length < 1 || nodes.length > NETNS_NODES_MAX) throw new Error(`NetnsNetwork: between 1 and ${NETNS_NODES_MAX} nodes, got ${nodes.length}`);
  if (new Set(nodes).size !== nodes.length) throw new Error(`NetnsNetwork: node ids must be distinct, got ${nodes.join(', ')}`);
  for (const [name, port] of Object.entries(ports)) {
    if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) throw new Error(`NetnsNetwork: ports.${name} must be an integer in [1, 65535], got ${port}`);
  }
  for (const [name, port] of Object.entries(ports)) {
    if (port >= EPHEMERAL_PORT_MIN && port <= EPHEMERAL_PORT_MAX) {
      throw new Error(`NetnsNetwork: ports.${name} must lie outside the ephemeral range [${EPHEMERAL_PORT_MIN}, ${EPHEMERAL_PORT_MAX}] (the rules tell links apart by port), got ${port}`);
    }
  }
  if (ports.raft === ports.http) throw new Error(`NetnsNetwork: ports.raft and ports.http must differ, got ${ports.raft} for both`);
}

/** Runs a program without a shell; resolves with its stdout, rejects with an Error naming the command. */
function run(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: COMMAND_OUTPUT_BYTES_MAX, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) {
        resolve(stdout);
        return;
      }
      const status = error.killed ? `killed after ${COMMAND_TIMEOUT_MS} ms` : `exit ${String(error.code)}`;
      const detail = stderr.trim() === '' ? error.message : stderr.trim();
      reject(new Error(`command failed (${status}): ${[file, ...args].join(' ')}: ${detail}`, { cause: error }));
    });
  });
}

function readSysctl(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null; // br_netfilter absent: bridged frames never meet iptables
  }
}

/** An executable named `name` on PATH or in the sbin directories (root's tools may be missing from PATH). */
function findProgram(name: string): string | null {
  const directories = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const directory of directories) {
    if (directory === '') continue;
    const path = join(directory, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

function probeTools(): Promise<Probe> {
  probe ??= probeToolsOnce();
  return probe;
}

async function probeToolsOnce(): Promise<Probe> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces are Linux only (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root (network namespaces and packet filters need root)' };
  const ip = findProgram('ip');
  if (ip === null) return { ok: false, reason: "iproute2's ip is not installed: apt-get install iproute2" };
  const flavours = ['iptables', 'iptables-nft', 'iptables-legacy'].map(findProgram).filter((path): path is string => path !== null);
  if (flavours.length === 0) return { ok: false, reason: 'iptables not installed: apt-get install iptables' };
  const namespace = `rk${newTag()}n0`; // the sweep's pattern: removed later even if we die now
  try {
    await run(ip, ['netns', 'add', namespace]);
  } catch (error) {
    return { ok: false, reason: `'ip netns add' fails here: ${firstLine(error)}` };
  }
  try {
    try {
      await run(ip, ['-n', namespace, 'link', 'add', 'probebr', 'type', 'bridge']);
      await run(ip, ['-n', namespace, 'link', 'add', 'probev0', 'type', 'veth', 'peer', 'name', 'probev1']);
    } catch (error) {
      return { ok: false, reason: `cannot create bridge or veth devices here: ${firstLine(error)}` };
    }
    const errors: string[] = [];
    for (const iptables of flavours) {
      try {
        const spec = ['INPUT', '-s', '192.0.2.1/32', '-p', 'tcp', '-m', 'multiport', '--dports', '1,2', '-m', 'tcp', '!', '--tcp-flags', 'RST', 'RST', '-j', 'REJECT', '--reject-with', 'tcp-reset'];
        await run(ip, ['netns', 'exec', namespace, iptables, '-w', XTABLES_LOCK_WAIT_S, '-A', ...spec]);
        await run(ip, ['netns', 'exec', namespace, iptables, '-w', XTABLES_LOCK_WAIT_S, '-D', ...spec]);
        return { ok: true, tools: { ip, iptables, ss: findProgram('ss') } };
      } catch (error) {
        errors.push(firstLine(error));
      }
    }
    const nfTables = errors.some((e) => /nf_tables|Protocol not supported|Failed to initialize/i.test(e));
    const what = nfTables ? 'iptables cannot load nf_tables in this container' : 'iptables does not work inside a network namespace here';
    return { ok: false, reason: `${what} (tried ${flavours.join(', ')}): ${errors[0] ?? ''}` };
  } finally {
    await run(ip, ['netns', 'del', namespace]).catch(() => {});
  }
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}

/** Removes namespaces, veths and bridges named by instances whose process has died. */
async function sweepStale(tools: Tools): Promise<void> {
  const namespaces = (await run(tools.ip, ['netns', 'list'])).split('\n').map((line) => line.split(' ')[0] ?? '');
  const devices = (await run(tools.ip, ['-o', 'link', 'show'])).split('\n').map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1] ?? '');
  const stale = (name: string): boolean => {
    const match = NAME_PATTERN.exec(name);
    return match?.[1] !== undefined && !processAlive(Number.parseInt(match[1], 36));
  };
  // Root rules of dead instances cannot be told apart reliably by a pattern: they name a bridge
  // that no longer exists and match nothing; they are left (harmless) rather than guessed at.
  for (const device of devices.filter(stale)) await run(tools.ip, ['link', 'del', device]).catch(() => {});
  for (const namespace of namespaces.filter(stale)) await run(tools.ip, ['netns', 'del', namespace]).catch(() => {});
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

interface RoutedPrefix {
  readonly prefix: string;
  readonly dev: string | null;
}

/** Every IPv4 destination in every routing table of the root namespace (local addresses included). */
async function routedPrefixes(tools: Tools): Promise<RoutedPrefix[]> {
  const routes = JSON.parse(await run(tools.ip, ['-j', '-4', 'route', 'show', 'table', 'all'])) as unknown;
  if (!Array.isArray(routes)) throw new Error('ip -j route: expected a JSON array');
  const prefixes: RoutedPrefix[] = [];
  for (const route of routes as { dst?: unknown; dev?: unknown }[]) {
    if (typeof route.dst !== 'string' || route.dst === 'default') continue;
    prefixes.push({ prefix: route.dst.includes('/') ? route.dst : `${route.dst}/32`, dev: typeof route.dev === 'string' ? route.dev : null });
  }
  return prefixes;
}

function overlapsRoute(routes: readonly RoutedPrefix[], subnet: string): boolean {
  return routes.some((route) => overlaps(route.prefix, `${subnet}.0/24`));
}

/** Whether two IPv4 prefixes ("a.b.c.d/n") share an address. */
function overlaps(a: string, b: string): boolean {
  const [addressA, lengthA] = parsePrefix(a);
  const [addressB, lengthB] = parsePrefix(b);
  const length = Math.min(lengthA, lengthB);
  if (length === 0) return true;
  const mask = (~0 << (32 - length)) >>> 0;
  return ((addressA & mask) >>> 0) === ((addressB & mask) >>> 0);
}

function parsePrefix(prefix: string): [number, number] {
  const [address = '', length = '32'] = prefix.split('/');
  const octets = address.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !(Number.isInteger(o) && o >= 0 && o <= 255))) return [0, 0];
  const value = octets.reduce((sum, octet) => sum * 256 + octet, 0);
  return [value >>> 0, Number(length)];
}
