import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, isRaftKvError, RaftKvError, Role, type NodeId } from '@raftkv/raft';
import { findWorkspaceRoot, isNodeProcessError, NodeChild, NodeProcessError, NodeProcessErrorCode, type ExitStatus } from './node-child.js';
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
}

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
  readonly ids: readonly NodeId[];
  readonly dataDir: string;
  readonly #options: ProcessClusterOptions;
  readonly #ownsDataDir: boolean;
  readonly #cwd: string;
  /** The latest process of each node (running or not). */
  readonly #children = new Map<NodeId, NodeChild>();
  /** Every process started and not yet ended, for close(). */
  readonly #started = new Set<NodeChild>();
  readonly #addresses = new Map<NodeId, string>();
  #closed: Promise<void> | null = null;
  /** The leader `leader()` last found, tried first by requestLeader. */
  #lastLeader: NodeId | null = null;

  private constructor(ids: NodeId[], dataDir: string, ownsDataDir: boolean, options: ProcessClusterOptions) {
    this.ids = ids;
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
    const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'raftkv-processes-')));
    const cluster = new ProcessCluster(ids, dataDir, ownsDataDir, options);
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

  /** The data directory of one node (its log is in `log/`, its state machine in `kv/`). */
  nodeDataDir(id: NodeId): string {
    return join(this.dataDir, this.#known(id));
  }

  /** The node's peer address ("host:port"), fixed at its first start. */
  address(id: NodeId): string {
    const address = this.#addresses.get(this.#known(id));
    if (address === undefined) throw new Error(`node ${id} never listened`);
    return address;
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
   * the same port. Rejects with a NodeProcessError when the node does not start (see
   * `exitStatus(id)` and `stderr(id)`).
   */
  async restart(id: NodeId): Promise<void> {
    const previous = this.#child(id);
    if (previous.running || previous.paused) throw new Error(`restart(${id}): its process ${previous.pid} is still running; kill it first`);
    await previous.exited; // a kill in progress
    const address = this.address(id);
    await this.#launch(id, Number(address.slice(address.lastIndexOf(':') + 1)));
    await this.#publishAddresses();
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
    if (this.#ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  get #replyTimeoutMs(): number {
    return this.#options.replyTimeoutMs ?? 15_000;
  }

  #known(id: NodeId): NodeId {
    if (!this.ids.includes(id)) throw new Error(`unknown node ${id}: the cluster has [${this.ids.join(', ')}]`);
    return id;
  }

  #child(id: NodeId): NodeChild {
    const child = this.#children.get(this.#known(id));
    if (child === undefined) throw new Error(`node ${id} was never started`);
    return child;
  }

  async #launch(id: NodeId, port: number): Promise<void> {
    if (this.#closed !== null) throw new Error(`the cluster is closed; node ${id} not started`);
    const o = this.#options;
    const config: NodeProcessConfig = {
      id,
      dataDir: join(this.dataDir, id),
      members: this.ids,
      peers: Object.fromEntries(this.#addresses),
      listen: { host: o.host ?? '127.0.0.1', port },
      logLevel: o.logLevel ?? 'warn',
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
    const child = NodeChild.spawn(config, { cwd: this.#cwd, readyTimeoutMs: o.readyTimeoutMs ?? 30_000 });
    this.#children.set(id, child);
    this.#started.add(child);
    void child.exited.then(() => this.#started.delete(child));
    this.#addresses.set(id, await child.ready);
  }

  async #publishAddresses(): Promise<void> {
    const peers = Object.fromEntries(this.#addresses);
    await Promise.all(this.running.map((id) => this.request(id, 'setPeers', { peers })));
  }
}

function definedOnly<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
