import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, isRaftKvError, RaftKvError, Role, type NodeId } from '@raftkv/raft';
import type { LinkControl } from '../nemesis/links.js';
import { NetnsNetwork } from '../nemesis/netns.js';
import { ProxyNetwork } from '../nemesis/proxy.js';
import { findWorkspaceRoot, isNodeProcessError, NodeChild, NodeProcessError, NodeProcessErrorCode, type ExitStatus, type SpawnOptions } from './node-child.js';
import type { LogLevel, NodeProcessConfig, Op, OpArgs, OpResults, ProcessKvItem, ProcessNodeStatus } from './protocol.js';

export interface ProcessClusterOptions {
  /** Number of node processes, named n1..nN (default 3). */
  readonly nodes?: number;
  /** Parent directory of the nodes' data (`<dataDir>/n1`, ...). Default: a fresh temporary directory, removed by close(). */
  readonly dataDir?: string;
  readonly clusterId?: string;
  /** Interface the nodes listen on (default 127.0.0.1; ports are chosen by the OS at first start). */
  readonly host?: string;
  readonly tickMs?: number;
  readonly electionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly requestTimeoutMs?: number;
  readonly snapshotEveryEntries?: number;
  readonly snapshotCatchupEntries?: number;
  /** Node logs on each child's stderr (see `stderr(id)`); default 'warn'. */
  readonly logLevel?: LogLevel;
  /** A child that has not reported ready by then is killed (default 30 s: a first start compiles TypeScript). */
  readonly readyTimeoutMs?: number;
  /** Default wait for a child's answer to one request (default 15 s). */
  readonly replyTimeoutMs?: number;
  /** Working directory of the children (default: the workspace root, where `--import tsx` resolves). */
  readonly cwd?: string;
  /** Each node also serves the HTTP API (see `httpAddress(id)`); followers forward writes to the leader. */
  readonly http?: boolean;
  /**
   * How the nodes reach each other (default 'direct'):
   * - 'direct': straight to each other's ports; nothing can be cut.
   * - 'proxy': every directed link (and its HTTP forwarding) through its own TCP proxy in this
   *   process (ProxyNetwork), so that `network` can cut, blackhole, reset or delay it.
   * - 'netns': every node in its own network namespace, links cut by packet filter rules
   *   (NetnsNetwork; root only, see `NetnsNetwork.available()`).
   */
  readonly network?: 'direct' | 'proxy' | 'netns';
  /** Also append each node's stderr (its logs, every process it had) to `<logDir>/<id>.log`. */
  readonly logDir?: string;
}

/** A node process that ended on its own. */
export interface UnexpectedExit {
  readonly id: NodeId;
  readonly pid: number;
  readonly exit: ExitStatus;
  /** The end of its stderr. */
  readonly stderr: string;
}

/** The ports every node uses inside its own namespace in 'netns' mode (each namespace has its own port space). */
const NETNS_PORTS = { raft: 7000, http: 8000 } as const;

export interface RequestOptions {
  /** Wait for the child's answer at most this long (default: the cluster's replyTimeoutMs). */
  readonly timeoutMs?: number;
}

export interface RoutedOptions {
  /** Keep retrying on the current leader for at most this long (default 10 s). */
  readonly timeoutMs?: number;
}

const NODES_MAX = 9;
/** Pause between polls of the nodes' status and between retries. */
const POLL_MS = 10;
/** A status poll waits this long for each node at most, so that one stuck node cannot stall `leader()`. */
const STATUS_REPLY_TIMEOUT_MS = 1_000;
const ROUTED_TIMEOUT_MS = 10_000;
const MEMBERSHIP_TIMEOUT_MS = 30_000;
const MEMBERSHIP_RETRY_MS = 100;

/**
 * Errors after which a request routed to the leader is worth sending again: the leader changed
 * or is changing, or its process went away. Writes retried this way may apply twice (a put of
 * the same value is idempotent; a CAS or delete is not: route those yourself).
 */
export function isRetryableOnLeader(error: unknown): boolean {
  return (
    isRaftKvError(error, ErrorCode.NOT_LEADER) ||
    isRaftKvError(error, ErrorCode.PROPOSAL_DROPPED) ||
    isRaftKvError(error, ErrorCode.TIMEOUT) ||
    isRaftKvError(error, ErrorCode.SHUTTING_DOWN) ||
    isNodeProcessError(error, NodeProcessErrorCode.EXITED) ||
    isNodeProcessError(error, NodeProcessErrorCode.NOT_RUNNING) ||
    isNodeProcessError(error, NodeProcessErrorCode.REPLY_TIMEOUT)
  );
}

/**
 * A raftkv cluster of real OS processes, one node each (node-process.ts), for tests that need
 * what one process cannot give: kill -9, SIGSTOP, a crash in the middle of a write, a corrupt
 * file at start. Nodes listen on OS-chosen ports at first start and keep their port across
 * restarts; `close()` kills every process the cluster started.
 */
export class ProcessCluster {
  /** The nodes that founded the cluster (its first configuration). */
  readonly founders: readonly NodeId[];
  /** The members: the founders, then nodes added by addNode, less those removed by removeNode. */
  #members: NodeId[];
  /** Every node ever launched, members or not. */
  readonly #launched = new Set<NodeId>();
  /** Nodes started by addNode and not yet added: they learn the members' addresses, and the members theirs. */
  readonly #joining = new Set<NodeId>();
  readonly dataDir: string;
  readonly #options: ProcessClusterOptions;
  readonly #ownsDataDir: boolean;
  readonly #cwd: string;
  /** The latest process of each node (running or not). */
  readonly #children = new Map<NodeId, NodeChild>();
  /** Every process started and not yet ended, for close(). */
  readonly #started = new Set<NodeChild>();
  readonly #addresses = new Map<NodeId, string>();
  readonly #httpAddresses = new Map<NodeId, string>();
  readonly #unexpectedExits: UnexpectedExit[] = [];
  readonly #proxies: ProxyNetwork | null;
  readonly #netns: NetnsNetwork | null;
  #closed: Promise<void> | null = null;
  /** The leader `leader()` last found, tried first by requestLeader. */
  #lastLeader: NodeId | null = null;

  private constructor(ids: NodeId[], dataDir: string, ownsDataDir: boolean, options: ProcessClusterOptions, network: ProxyNetwork | NetnsNetwork | null) {
    this.founders = [...ids];
    this.#members = [...ids];
    this.#proxies = network instanceof ProxyNetwork ? network : null;
    this.#netns = network instanceof NetnsNetwork ? network : null;
    this.dataDir = dataDir;
    this.#ownsDataDir = ownsDataDir;
    this.#options = options;
    this.#cwd = options.cwd ?? findWorkspaceRoot();
  }

  static async start(options: ProcessClusterOptions = {}): Promise<ProcessCluster> {
    const count = options.nodes ?? 3;
    if (!(Number.isInteger(count) && count >= 1 && count <= NODES_MAX)) {
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `nodes must be an integer in [1, ${NODES_MAX}], got ${count}`);
    }
    const ids = Array.from({ length: count }, (_, k) => `n${k + 1}`);
    const ownsDataDir = options.dataDir === undefined;
    const mode = options.network ?? 'direct';
    if (mode === 'netns') {
      const available = await NetnsNetwork.available();
      if (!available.ok) throw new RaftKvError(ErrorCode.INVALID_CONFIG, `network 'netns' is not available here: ${available.reason}`);
    }
    const network =
      mode === 'proxy'
        ? await ProxyNetwork.start({ nodes: ids, channels: options.http === true ? ['raft', 'http'] : ['raft'], ...(options.host === undefined ? {} : { host: options.host }) })
        : mode === 'netns'
          ? await NetnsNetwork.create({ nodes: ids, ports: NETNS_PORTS })
          : null;
    let dataDir: string;
    try {
      dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'raftkv-processes-')));
    } catch (error) {
      await network?.close();
      throw error;
    }
    const cluster = new ProcessCluster(ids, dataDir, ownsDataDir, options, network);
    try {
      // All listen first, on ports the OS chooses; then every node learns where the others are.
      await Promise.all(ids.map((id) => cluster.#launch(id, 0)));
      await cluster.#publishAddresses();
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** The members now, in the order they joined. */
  get ids(): readonly NodeId[] {
    return [...this.#members];
  }

  /** The data directory of one node (its log is in `log/`, its state machine in `kv/`). */
  nodeDataDir(id: NodeId): string {
    return join(this.dataDir, this.#known(id));
  }

  /** The node's peer address ("host:port"), fixed at its first start ('proxy' mode: its latest start). */
  address(id: NodeId): string {
    const address = this.#addresses.get(this.#known(id));
    if (address === undefined) throw new Error(`node ${id} never listened`);
    return address;
  }

  /** Where the test reaches the node's HTTP API ("host:port"); needs the `http` option. */
  httpAddress(id: NodeId): string {
    const address = this.#httpAddresses.get(this.#known(id));
    if (address === undefined) throw new Error(`node ${id} serves no HTTP API (start the cluster with http: true)`);
    return address;
  }

  /** The network between the nodes, for faults; null in 'direct' mode. */
  get network(): LinkControl | null {
    return this.#proxies ?? this.#netns;
  }

  /**
   * Node processes that ended without being told to (not killed, not closed by this cluster):
   * a crash, an assertion, a failed start. A fault test should expect none.
   */
  get unexpectedExits(): readonly UnexpectedExit[] {
    return this.#unexpectedExits;
  }

  /** The pid of the node's latest process. */
  pid(id: NodeId): number {
    return this.#child(id).pid;
  }

  /** Whether the node's process is up and not paused. */
  isRunning(id: NodeId): boolean {
    return this.#children.get(id)?.running ?? false;
  }

  /** The nodes whose process is up and not paused. */
  get running(): NodeId[] {
    return this.ids.filter((id) => this.isRunning(id));
  }

  /** How the node's latest process ended; null while it runs. */
  exitStatus(id: NodeId): ExitStatus | null {
    return this.#child(id).exit;
  }

  /** What the node's latest process wrote to stderr. */
  stderr(id: NodeId): string {
    return this.#child(id).stderr;
  }

  /** Sends one request to one node's process. Node errors reject with a RaftKvError of the node's code. */
  request<O extends Op>(id: NodeId, op: O, args: OpArgs[O], options: RequestOptions = {}): Promise<OpResults[O]> {
    return this.#child(id).request(op, args, options.timeoutMs ?? this.#replyTimeoutMs);
  }

  /** The node's status (role, term, leader, commit, applied, ...). */
  status(id: NodeId, options: RequestOptions = {}): Promise<ProcessNodeStatus> {
    return this.request(id, 'status', {}, options);
  }

  /**
   * Polls the running nodes until exactly one is leader and every running node names it; returns
   * its id. Throws NOT_RUNNING at once when no node runs, and RAFTKV_TIMEOUT after `timeoutMs`.
   */
  async leader(timeoutMs = ROUTED_TIMEOUT_MS): Promise<NodeId> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.running;
      if (live.length === 0) {
        throw new NodeProcessError(NodeProcessErrorCode.NOT_RUNNING, '(none)', 'no node process is running', { exit: null, startFailureCode: null, stderr: '' });
      }
      const statuses = await Promise.all(live.map((id) => this.status(id, { timeoutMs: STATUS_REPLY_TIMEOUT_MS }).catch(() => null)));
      const leaders = statuses.filter((s) => s?.role === Role.Leader);
      const leader = leaders.length === 1 ? leaders[0]!.id : null;
      if (leader !== null && statuses.every((s) => s !== null && s.lead === leader)) {
        this.#lastLeader = leader;
        return leader;
      }
      if (Date.now() > deadline) throw new RaftKvError(ErrorCode.TIMEOUT, `no leader agreed on by nodes [${live.join(', ')}] within ${timeoutMs} ms`);
      await sleep(POLL_MS);
    }
  }

  /**
   * Sends a request to the leader, and again to the next leader while it fails with a
   * retryable error (isRetryableOnLeader) and `timeoutMs` has not passed.
   */
  async requestLeader<O extends Op>(op: O, args: OpArgs[O], options: RoutedOptions = {}): Promise<OpResults[O]> {
    const timeoutMs = options.timeoutMs ?? ROUTED_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // The last leader found is tried first: a stale one answers NOT_LEADER (or cannot confirm
      // a read), which sends us polling for the new one.
      const cached = this.#lastLeader;
      const leader = cached !== null && this.isRunning(cached) ? cached : await this.leader(Math.max(1, deadline - Date.now()));
      try {
        return await this.request(leader, op, args);
      } catch (error) {
        if (this.#lastLeader === leader) this.#lastLeader = null;
        if (!isRetryableOnLeader(error) || Date.now() > deadline) throw error;
        await sleep(POLL_MS);
      }
    }
  }

  put(key: string, value: string, options: RoutedOptions = {}): Promise<{ modIndex: number }> {
    return this.requestLeader('put', { key, value }, options);
  }

  /** A linearizable read through the leader. */
  get(key: string, options: RoutedOptions = {}): Promise<ProcessKvItem | null> {
    return this.requestLeader('get', { key }, options);
  }

  /**
   * Sends `signal` (default SIGKILL) to the node's process, by its pid, before returning the
   * promise, which resolves when the process has ended. Killing several nodes "at once" is
   * calling kill for each before awaiting any.
   */
  kill(id: NodeId, signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitStatus> {
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') throw new Error(`kill(${id}, ${signal}): use pause/resume`);
    const child = this.#child(id);
    child.signal(signal);
    return child.exited;
  }

  /** Stops the node's process with SIGSTOP (it keeps its sockets; peers see silence). */
  pause(id: NodeId): void {
    this.#child(id).signal('SIGSTOP');
  }

  /** Resumes a paused node's process with SIGCONT. */
  resume(id: NodeId): void {
    this.#child(id).signal('SIGCONT');
  }

  /**
   * Starts a new process for a node whose process has ended, with the same data directory and
   * the same ports ('direct' and 'netns' modes). In 'proxy' mode peers and clients reach the node
   * through the proxies, which follow it to fresh OS-chosen ports: its old port, free while it
   * was down, may have become the local end of some other connection. Rejects with a
   * NodeProcessError when the node does not start (see `exitStatus(id)` and `stderr(id)`).
   */
  async restart(id: NodeId): Promise<void> {
    const previous = this.#child(id);
    if (previous.running || previous.paused) throw new Error(`restart(${id}): its process ${previous.pid} is still running; kill it first`);
    await previous.exited; // a kill in progress
    if (this.#proxies !== null) await this.#launch(id, 0, 0);
    else await this.#launch(id, portOf(this.address(id)), this.#httpAddresses.has(id) ? portOf(this.httpAddress(id)) : 0);
    await this.#publishAddresses();
  }

  /**
   * A new machine joins: a node under a new id (n<k>, never used before) with an empty data
   * directory starts, then the leader adds it as a learner (with its uid, so that only this
   * directory is accepted under that id) that it promotes once caught up (`autoPromote`,
   * default true; otherwise call `promote`). Resolves once the learner is added; the node is a
   * member from then on. Not in 'netns' mode (its namespaces are made at the start).
   */
  async addNode(options: { autoPromote?: boolean; timeoutMs?: number } = {}): Promise<NodeId> {
    if (this.#netns !== null) throw new RaftKvError(ErrorCode.INVALID_CONFIG, "addNode: not in 'netns' mode, whose namespaces are made at the start");
    let k = this.#launched.size + 1;
    while (this.#launched.has(`n${k}`)) k++;
    const id = `n${k}`;
    await this.#proxies?.addNode(id);
    // Until it is added, the new node is no member: `leader()` must not wait for it to name one.
    this.#joining.add(id);
    try {
      await this.#launch(id, 0);
      await this.#publishAddresses();
      const { uid } = await this.status(id);
      const peerAddress = this.address(id);
      const httpAddress = this.#httpAddresses.get(id);
      await this.#membershipChange('addLearner', { id, peerAddress, uid, autoPromote: options.autoPromote ?? true, ...(httpAddress === undefined ? {} : { httpAddress: `http://${httpAddress}` }) }, options.timeoutMs);
      this.#members.push(id);
    } finally {
      this.#joining.delete(id);
    }
    return id;
  }

  /** Makes a learner a voter, retrying while it is not yet caught up or another change is pending. */
  async promote(id: NodeId, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.#membershipChange('promote', { id: this.#known(id) }, options.timeoutMs);
  }

  /**
   * Removes a member (the leader too: it hands leadership over) through the leader, then stops
   * its process if it still runs (SIGTERM, as a machine being retired). Its id is never used
   * again; its data directory stays.
   */
  async removeNode(id: NodeId, options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.#members.includes(id)) throw new Error(`removeNode(${id}): not a member (members: ${this.ids.join(', ')})`);
    await this.#membershipChange('removeMember', { id }, options.timeoutMs);
    this.#members = this.#members.filter((m) => m !== id);
    if (this.#lastLeader === id) this.#lastLeader = null;
    const child = this.#children.get(id);
    if (child !== undefined && (child.running || child.paused)) {
      if (child.paused) child.signal('SIGCONT');
      child.signal('SIGTERM');
      await child.exited;
    }
  }

  /** The members as the leader sees them (voters and learners). */
  async membersOnLeader(options: RoutedOptions = {}): Promise<OpResults['members']> {
    return this.requestLeader('members', {}, options);
  }

  /**
   * A membership change through the leader, sent again while the leader changes or another
   * change is pending or the learner is not yet caught up, for `timeoutMs` (default 30 s).
   * A change retried after a timeout may already be in: adding or removing twice is refused
   * as invalid, which counts as done when the configuration shows it.
   */
  async #membershipChange<O extends 'addLearner' | 'promote' | 'removeMember'>(op: O, args: OpArgs[O], timeoutMs = MEMBERSHIP_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.requestLeader(op, args, { timeoutMs: Math.max(1, deadline - Date.now()) });
        return;
      } catch (error) {
        if (isRaftKvError(error, ErrorCode.CONF_CHANGE_INVALID) && (await this.#changeIsIn(op, args.id))) return;
        const again = isRetryableOnLeader(error) || isRaftKvError(error, ErrorCode.CONF_CHANGE_PENDING) || (op === 'promote' && isRaftKvError(error, ErrorCode.CONF_CHANGE_INVALID));
        if (!again || Date.now() > deadline) throw error;
        await sleep(MEMBERSHIP_RETRY_MS);
      }
    }
  }

  async #changeIsIn(op: 'addLearner' | 'promote' | 'removeMember', id: NodeId): Promise<boolean> {
    const members = await this.membersOnLeader().catch(() => null);
    if (members === null) return false;
    const member = members.find((m) => m.id === id);
    if (op === 'removeMember') return member === undefined;
    if (op === 'promote') return member?.role === 'voter';
    return member !== undefined;
  }

  /** Kills every process the cluster started (SIGKILL) and waits for them; removes the data directory if the cluster created it. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    const children = [...this.#started];
    for (const child of children) child.signal('SIGKILL');
    await Promise.all(children.map((child) => child.exited));
    // The data directory goes even when the network fails to close; that failure is rethrown.
    const network = await Promise.allSettled([this.network?.close()]);
    if (this.#ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
    if (network[0].status === 'rejected') throw network[0].reason;
  }

  get #replyTimeoutMs(): number {
    return this.#options.replyTimeoutMs ?? 15_000;
  }

  #known(id: NodeId): NodeId {
    if (!this.#launched.has(id) && !this.#members.includes(id)) throw new Error(`unknown node ${id}: the cluster has [${this.ids.join(', ')}]`);
    return id;
  }

  #child(id: NodeId): NodeChild {
    const child = this.#children.get(this.#known(id));
    if (child === undefined) throw new Error(`node ${id} was never started`);
    return child;
  }

  async #launch(id: NodeId, port: number, httpPort = 0): Promise<void> {
    if (this.#closed !== null) throw new Error(`the cluster is closed; node ${id} not started`);
    const o = this.#options;
    const netns = this.#netns;
    const host = netns === null ? (o.host ?? '127.0.0.1') : netns.hostOf(id);
    const config: NodeProcessConfig = {
      id,
      dataDir: join(this.dataDir, id),
      // A founder bootstraps the first configuration (ignored once its directory has state);
      // any other node joins and waits for a leader to add it.
      ...(this.founders.includes(id) ? { members: this.founders } : {}),
      peers: this.#peersOf(id).peers,
      listen: { host, port: netns === null ? port : NETNS_PORTS.raft },
      logLevel: o.logLevel ?? 'warn',
      ...(o.http === true ? { http: { host, port: netns === null ? httpPort : NETNS_PORTS.http } } : {}),
      ...definedOnly({
        clusterId: o.clusterId,
        tickMs: o.tickMs,
        electionTimeoutMs: o.electionTimeoutMs,
        heartbeatIntervalMs: o.heartbeatIntervalMs,
        requestTimeoutMs: o.requestTimeoutMs,
        snapshotEveryEntries: o.snapshotEveryEntries,
        snapshotCatchupEntries: o.snapshotCatchupEntries,
      }),
    };
    const spawnOptions: SpawnOptions = {
      cwd: this.#cwd,
      readyTimeoutMs: o.readyTimeoutMs ?? 30_000,
      ...(o.logDir === undefined ? {} : { logFile: join(o.logDir, `${id}.log`) }),
      ...(netns === null ? {} : { launcher: netns.forkOptions(id) }),
    };
    const child = NodeChild.spawn(config, spawnOptions);
    this.#launched.add(id);
    this.#children.set(id, child);
    this.#started.add(child);
    void child.exited.then((exit) => {
      this.#started.delete(child);
      if (!child.endedByParent && this.#closed === null) this.#unexpectedExits.push({ id, pid: child.pid, exit, stderr: child.stderr.slice(-2_000) });
    });
    const ready = await child.ready;
    this.#addresses.set(id, ready.peerAddress);
    this.#proxies?.setTarget(id, 'raft', ready.peerAddress);
    if (ready.httpAddress !== null) {
      this.#httpAddresses.set(id, ready.httpAddress);
      this.#proxies?.setTarget(id, 'http', ready.httpAddress);
    }
  }

  /** Where node `from` dials each peer and forwards HTTP requests: through the proxies in 'proxy' mode. */
  #peersOf(from: NodeId): { peers: Record<NodeId, string>; httpPeers: Record<NodeId, string> } {
    const peers: Record<NodeId, string> = {};
    const httpPeers: Record<NodeId, string> = {};
    const proxies = this.#proxies;
    for (const to of [...this.#members, ...this.#joining]) {
      if (to === from) continue;
      const peer = proxies === null ? this.#addresses.get(to) : proxies.address(from, to, 'raft');
      if (peer !== undefined) peers[to] = peer;
      const http = proxies === null || !this.#httpAddresses.has(to) ? this.#httpAddresses.get(to) : proxies.address(from, to, 'http');
      if (http !== undefined) httpPeers[to] = `http://${http}`;
    }
    return { peers, httpPeers };
  }

  async #publishAddresses(): Promise<void> {
    const nodes = [...this.running, ...[...this.#joining].filter((id) => this.isRunning(id))];
    await Promise.all(nodes.map((id) => this.request(id, 'setPeers', this.#peersOf(id))));
  }
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

function definedOnly<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
