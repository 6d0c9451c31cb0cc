import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CasExpect } from '@raftkv/kv';
import { ErrorCode, isRaftKvError, RaftKvError, Role, type NodeId } from '@raftkv/raft';
import { RaftKvNode, type KvItem, type ReadOptions, type WriteOptions } from './node.js';
import type { NodeOptions } from './options.js';

export interface ClusterOptions extends Partial<Omit<NodeOptions, 'id' | 'dataDir' | 'members' | 'peers' | 'listen' | 'transport'>> {
  /** Number of nodes (default 3), named n1..nN. */
  readonly nodes?: number;
  /** Parent directory for the nodes' data (`<dataDir>/n1`, ...). Default: a fresh temporary directory, removed by close(). */
  readonly dataDir?: string;
  /** Interface the nodes listen on (default 127.0.0.1; ports are chosen by the OS). */
  readonly host?: string;
  /**
   * The address node `from` dials to reach node `to`, whose peer port is `address`. Default: the
   * address itself. A partition test routes every directed link through its own proxy here
   * (`ProxyNetwork.router()` in @raftkv/testing) to cut, delay or reset it.
   */
  readonly peerAddress?: (from: NodeId, to: NodeId, address: string) => string;
}

/**
 * Errors after which a request is safe to send again: the write certainly did not take effect
 * (it was refused, or another entry took its index). TIMEOUT and SHUTTING_DOWN are not among
 * them: the write may have been applied; retry those only with a session.
 */
function retryable(error: unknown): boolean {
  return isRaftKvError(error, ErrorCode.NOT_LEADER) || isRaftKvError(error, ErrorCode.PROPOSAL_DROPPED) || isRaftKvError(error, ErrorCode.CONF_CHANGE_PENDING);
}

/**
 * A whole cluster in one process over loopback TCP, for tests and examples. Each node is a real
 * RaftKvNode with its own data directory and TCP transport; `stopNode`/`startNode` restart one
 * with its data, `leader()` waits for an elected leader, and the convenience calls route to it.
 */
export class LocalCluster {
  /** Every node this cluster ever started: the founding members, then those added. */
  ids: readonly NodeId[];
  readonly #founding: readonly NodeId[];
  readonly dataDir: string;
  readonly #options: ClusterOptions;
  readonly #ownsDataDir: boolean;
  readonly #nodes = new Map<NodeId, RaftKvNode>();
  readonly #addresses = new Map<NodeId, string>();

  private constructor(ids: NodeId[], dataDir: string, ownsDataDir: boolean, options: ClusterOptions) {
    this.ids = ids;
    this.#founding = ids;
    this.dataDir = dataDir;
    this.#ownsDataDir = ownsDataDir;
    this.#options = options;
  }

  static async start(options: ClusterOptions = {}): Promise<LocalCluster> {
    const count = options.nodes ?? 3;
    if (!(Number.isInteger(count) && count >= 1 && count <= 9)) {
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `nodes must be an integer in [1, 9], got ${count}`);
    }
    const ids = Array.from({ length: count }, (_, k) => `n${k + 1}`);
    const ownsDataDir = options.dataDir === undefined;
    const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'raftkv-cluster-')));
    const cluster = new LocalCluster(ids, dataDir, ownsDataDir, options);
    try {
      // Listen first on OS-chosen ports, then tell every node where the others are.
      for (const id of ids) await cluster.#launch(id, 0);
      cluster.#publishAddresses();
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** The running node with this id (throws if it is stopped). */
  node(id: NodeId): RaftKvNode {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new RaftKvError(ErrorCode.INVALID_CONFIG, `node ${id} is not running`);
    return node;
  }

  /** The running nodes. */
  get nodes(): RaftKvNode[] {
    return [...this.#nodes.values()];
  }

  /** Waits until one running node is leader and every running member of its configuration knows it. */
  async leader(timeoutMs = 10_000): Promise<RaftKvNode> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leaders = this.nodes.filter((n) => n.role === Role.Leader);
      const leader = leaders.length === 1 ? leaders[0]! : null;
      const conf = leader?.status().confState;
      const members = new Set([...(conf?.voters ?? []), ...(conf?.learners ?? [])]);
      if (leader !== null && this.nodes.every((n) => !members.has(n.id) || n.leader === leader.id)) return leader;
      if (Date.now() > deadline) throw new RaftKvError(ErrorCode.TIMEOUT, `no leader elected within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  async put(key: string, value: Uint8Array | string, options?: WriteOptions): Promise<{ modIndex: number }> {
    return this.#onLeader((n) => n.put(key, value, options));
  }

  async delete(key: string, options?: WriteOptions): Promise<{ modIndex: number; existed: boolean }> {
    return this.#onLeader((n) => n.delete(key, options));
  }

  async cas(
    key: string,
    value: Uint8Array | string,
    expect: CasExpect,
    options?: WriteOptions,
  ): Promise<{ ok: true; modIndex: number } | { ok: false; current: { modIndex: number } | null }> {
    return this.#onLeader((n) => n.cas(key, value, expect, options));
  }

  async get(key: string, options?: ReadOptions): Promise<KvItem | null> {
    return this.#onLeader((n) => n.get(key, options));
  }

  async scan(prefix: string, options?: ReadOptions & { limit?: number }): Promise<KvItem[]> {
    return this.#onLeader((n) => n.scan(prefix, options));
  }

  /** Stops one node gracefully, keeping its data. */
  async stopNode(id: NodeId): Promise<void> {
    const node = this.node(id);
    this.#nodes.delete(id);
    await node.close();
  }

  /** Restarts a stopped node on its previous port, with its data. */
  async startNode(id: NodeId): Promise<RaftKvNode> {
    if (this.#nodes.has(id)) throw new RaftKvError(ErrorCode.INVALID_CONFIG, `node ${id} is already running`);
    if (!this.ids.includes(id)) throw new RaftKvError(ErrorCode.INVALID_CONFIG, `node ${id} was never started by this cluster (addNode starts a new one)`);
    const previous = this.#addresses.get(id);
    const port = previous === undefined ? 0 : Number(previous.slice(previous.lastIndexOf(':') + 1));
    const node = await this.#launch(id, port);
    this.#publishAddresses();
    return node;
  }

  /** Stops every node; removes the data directory if the cluster created it. */
  async close(): Promise<void> {
    const nodes = this.nodes;
    this.#nodes.clear();
    await Promise.allSettled(nodes.map((n) => n.close()));
    if (this.#ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  /**
   * A new machine joins: a node `id` (by default the next unused `n<k>`) starts with an empty data
   * directory and no configuration, and the leader adds it as a learner; with `autoPromote` (the
   * default) the leader makes it a voter once it has caught up. Resolves once the learner is added.
   */
  async addNode(options: { id?: NodeId; autoPromote?: boolean } = {}): Promise<RaftKvNode> {
    const id = options.id ?? this.#nextId();
    if (this.ids.includes(id)) throw new RaftKvError(ErrorCode.INVALID_CONFIG, `node ${id} was already started by this cluster`);
    const node = await this.#launch(id, 0, false);
    this.ids = [...this.ids, id];
    this.#publishAddresses();
    await this.#onLeader((leader) => leader.addLearner(id, { peerAddress: node.peerAddress, uid: node.identity.uid, autoPromote: options.autoPromote ?? true }));
    return node;
  }

  /** Removes node `id` from the configuration, then stops it (its data directory stays). */
  async removeNode(id: NodeId): Promise<void> {
    await this.#onLeader((leader) => leader.removeMember(id));
    if (this.#nodes.has(id)) await this.stopNode(id);
  }

  #nextId(): NodeId {
    for (let k = this.ids.length + 1; ; k++) if (!this.ids.includes(`n${k}`)) return `n${k}`;
  }

  async #launch(id: NodeId, port: number, founding = this.#founding.includes(id)): Promise<RaftKvNode> {
    const { nodes: _nodes, dataDir: _dataDir, host, peerAddress: _peerAddress, ...nodeOptions } = this.#options;
    const node = await RaftKvNode.start({
      ...nodeOptions,
      id,
      dataDir: join(this.dataDir, id),
      ...(founding ? { members: this.#founding } : {}),
      peers: this.#peersOf(id),
      listen: { host: host ?? '127.0.0.1', port },
    });
    this.#nodes.set(id, node);
    this.#addresses.set(id, node.peerAddress);
    return node;
  }

  #publishAddresses(): void {
    for (const node of this.#nodes.values()) node.setPeers(this.#peersOf(node.id));
  }

  /** The peer addresses node `from` dials, through `options.peerAddress` when it is set. */
  #peersOf(from: NodeId): Record<NodeId, string> {
    const route = this.#options.peerAddress;
    const peers: Record<NodeId, string> = {};
    for (const [to, address] of this.#addresses) {
      if (to !== from) peers[to] = route === undefined ? address : route(from, to, address);
    }
    return peers;
  }

  /** Runs `call` on the leader, retrying on the next leader while an election settles. */
  async #onLeader<T>(call: (leader: RaftKvNode) => Promise<T>, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leader = await this.leader(Math.max(1, deadline - Date.now()));
      try {
        return await call(leader);
      } catch (error) {
        if (!retryable(error) || Date.now() > deadline) throw error;
        await sleep(20);
      }
    }
  }
}

/** Starts a whole cluster in this process over loopback TCP (ports chosen by the OS). */
export function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  return LocalCluster.start(options);
}
