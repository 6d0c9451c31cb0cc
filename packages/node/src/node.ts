import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodeCommand,
  openKvStateMachine,
  validateKey,
  type CasExpect,
  type Command,
  type CommandResult,
  type KvLimits,
  type KvStateMachine,
} from '@raftkv/kv';
import { ErrorCode, RaftKvError, type LogIndex, type NodeId, type Role, type Status, type Term } from '@raftkv/raft';
import { openLevelLogStorage, type LevelLogStorage } from '@raftkv/storage';
import { TcpTransport, type Transport } from '@raftkv/transport';
import pino, { type Logger } from 'pino';
import { LevelReplicaLog, LevelReplicaStateMachine, MONOTONIC_CLOCK, transportWiring, type ChunkImage } from './io/durable.js';
import { parseAddress, resolveNodeOptions, type NodeOptions, type NodeSettings } from './options.js';
import type { ReplicaEvents } from './replica/io.js';
import { Replica, type ReplicaOptions } from './replica/replica.js';

export type Consistency = 'linearizable' | 'lease' | 'stale';

export interface KvItem {
  readonly key: string;
  readonly value: Uint8Array;
  /** The log index of the write that last changed the key. */
  readonly modIndex: LogIndex;
}

export interface WriteOptions {
  /** Exactly-once retries: the same (clientId, seq) is applied at most once. */
  readonly session?: { readonly clientId: string; readonly seq: number };
}

export interface ReadOptions {
  readonly consistency?: Consistency;
}

export interface NodeStatus extends Status {
  readonly clusterId: string;
  readonly peerAddress: string;
  readonly appliedIndexKv: LogIndex;
  readonly pendingWrites: number;
  readonly pendingReads: number;
}

export interface RoleChange {
  readonly role: Role;
  readonly term: Term;
  readonly leader: NodeId | null;
}

const encoder = new TextEncoder();

/**
 * One raftkv node: the Ready loop (`Replica`, replica/replica.ts) over a durable log (LevelDB), a
 * state machine (LevelDB) and a transport (TCP), driven by the wall clock. This class opens and
 * closes those, turns the replica's callbacks into promises, and serves reads from the state
 * machine; everything between a request and its answer happens in the replica.
 */
export class RaftKvNode extends EventEmitter<{ role: [RoleChange]; leader: [RoleChange]; error: [Error] }> {
  readonly id: NodeId;
  readonly #settings: NodeSettings;
  readonly #replica: Replica<ChunkImage>;
  readonly #storage: LevelLogStorage;
  readonly #kv: KvStateMachine;
  readonly #transport: Transport;
  readonly #log: Logger;
  /** Where this node accepts peer connections, known once the transport listens. */
  #peerAddress = '';
  #ticker: NodeJS.Timeout | null = null;
  #stopping = false;
  #closed: Promise<void> | null = null;

  private constructor(settings: NodeSettings, parts: { replica: Replica<ChunkImage>; storage: LevelLogStorage; kv: KvStateMachine; transport: Transport; log: Logger }) {
    super();
    this.id = settings.id;
    this.#settings = settings;
    this.#replica = parts.replica;
    this.#storage = parts.storage;
    this.#kv = parts.kv;
    this.#transport = parts.transport;
    this.#log = parts.log;
  }

  /** Opens (or creates) the node's data directory, joins the cluster and starts the Ready loop. */
  static async start(options: NodeOptions): Promise<RaftKvNode> {
    const settings = resolveNodeOptions(options);
    const log = (settings.logger ?? pino({ level: 'silent' })).child({ nodeId: settings.id });
    await mkdir(settings.dataDir, { recursive: true });
    // The log store opens first: its LevelDB lock makes the data directory one process's, which
    // the state machine's directory recovery (renames before its own lock) relies on. A new log
    // starts with no configuration: the replica writes the cluster's first one as entry 1.
    const storage = await openLevelLogStorage(join(settings.dataDir, 'log'), { voters: [], learners: [] });
    let kv: KvStateMachine | null = null;
    let node: RaftKvNode | null = null;
    try {
      kv = await openKvStateMachine(join(settings.dataDir, 'kv'), settings.kvLimits ?? {});
      const transport = settings.transport ?? tcpTransport(settings, log);
      const events: ReplicaEvents = {
        onRoleChange: (change) => {
          if (node !== null) node.#onRoleChange(change);
        },
        onFatal: (error) => {
          if (node !== null) node.#onFatal(error);
        },
      };
      const replica = await new Promise<Replica<ChunkImage>>((resolve, reject) =>
        Replica.start(
          replicaOptions(settings, log),
          { log: new LevelReplicaLog(storage), stateMachine: new LevelReplicaStateMachine(kv!), transport, clock: MONOTONIC_CLOCK, events },
          (error, started) => (error === null ? resolve(started!) : reject(error)),
        ),
      );
      node = new RaftKvNode(settings, { replica, storage, kv, transport, log });
      const wiring = transportWiring(() => (node!.#stopping ? null : replica));
      await transport.start(wiring.handlers, wiring.streams);
    } catch (error) {
      // Release both stores (and their locks) so the caller can retry or report.
      await Promise.allSettled([storage.close(), kv?.close()]);
      throw error;
    }
    const address = node.#transport instanceof TcpTransport ? node.#transport.address() : null;
    node.#peerAddress = address === null ? '' : `${address.host}:${address.port}`;
    const st = node.#replica.status();
    log.info({ term: st.term, commit: st.commit, applied: node.#kv.appliedIndex, firstIndex: st.firstIndex, lastIndex: st.lastIndex, peerAddress: node.peerAddress }, 'node started');
    const started = node;
    started.#ticker = setInterval(() => started.#replica.onTimer(), settings.tickMs);
    return started;
  }

  /** Where this node accepts peer connections ("host:port"); empty for an injected transport. */
  get peerAddress(): string {
    return this.#peerAddress;
  }

  /** Updates the peer address book (for clusters whose ports are chosen by the OS). */
  setPeers(peers: Readonly<Record<NodeId, string>>): void {
    this.#transport.setPeers(new Map(Object.entries(peers).filter(([id]) => id !== this.id)));
  }

  // ---------------------------------------------------------------- public API

  async put(key: string, value: Uint8Array | string, options: WriteOptions = {}): Promise<{ modIndex: LogIndex }> {
    const result = await this.#propose({ type: 'put', key, value: toBytes(value), ...session(options) });
    if (result.type !== 'put' || !result.ok) throw resultError(result);
    return { modIndex: result.modIndex };
  }

  async delete(key: string, options: WriteOptions = {}): Promise<{ modIndex: LogIndex; existed: boolean }> {
    const result = await this.#propose({ type: 'delete', key, ...session(options) });
    if (result.type !== 'delete') throw resultError(result);
    return { modIndex: result.modIndex, existed: result.existed };
  }

  /**
   * Compare-and-set: writes `value` only if the key's modification index is `expect.modIndex`,
   * or only if the key is absent (`{ absent: true }`). A failed comparison is not an error: it
   * returns `{ ok: false, current }`.
   */
  async cas(
    key: string,
    value: Uint8Array | string,
    expect: CasExpect,
    options: WriteOptions = {},
  ): Promise<{ ok: true; modIndex: LogIndex } | { ok: false; current: { modIndex: LogIndex } | null }> {
    const result = await this.#propose({ type: 'cas', key, value: toBytes(value), expect, ...session(options) });
    if (result.type !== 'cas') throw resultError(result);
    return result.ok ? { ok: true, modIndex: result.modIndex } : { ok: false, current: result.current };
  }

  async get(key: string, options: ReadOptions = {}): Promise<KvItem | null> {
    validateKey(key, this.#kv.limits.keyBytesMax);
    await this.#readBarrier(options.consistency ?? 'linearizable');
    const found = await this.#kv.get(key);
    return found === null ? null : { key, value: found.value, modIndex: found.modIndex };
  }

  async scan(prefix: string, options: ReadOptions & { limit?: number } = {}): Promise<KvItem[]> {
    const countMax = this.#kv.limits.scanCountMax;
    const limit = options.limit ?? countMax;
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= countMax)) {
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `scan limit must be an integer in [1, ${countMax}], got ${limit}`);
    }
    await this.#readBarrier(options.consistency ?? 'linearizable');
    return this.#kv.scan(prefix, limit);
  }

  /** Moves leadership to another voter (thesis section 3.10); forwarded when called on a follower. */
  transferLeadership(to: NodeId): void {
    this.#replica.transferLeadership(to);
  }

  /** Starts an election now (for tests and operators). */
  campaign(): void {
    this.#replica.campaign();
  }

  status(): NodeStatus {
    if (this.#stopping) throw new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shut down`);
    const { appliedIndexStateMachine, ...st } = this.#replica.status();
    return { ...st, clusterId: this.#settings.clusterId, peerAddress: this.peerAddress, appliedIndexKv: appliedIndexStateMachine };
  }

  get role(): Role {
    return this.#replica.role;
  }

  get leader(): NodeId | null {
    return this.#replica.leader;
  }

  get transport(): Transport {
    return this.#transport;
  }

  /** The key, value and scan limits this node enforces (the HTTP layer uses the same). */
  get limits(): KvLimits {
    return this.#kv.limits;
  }

  /** Stops the node: pending requests fail with RAFTKV_SHUTTING_DOWN; storage is closed cleanly. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#stopping = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    await new Promise<void>((resolve) => this.#replica.stop(() => resolve()));
    await this.#transport.close();
    await Promise.allSettled([this.#storage.close(), this.#kv.close()]);
    this.#log.info({ term: this.#replica.term }, 'node stopped');
  }

  // ---------------------------------------------------------------- writes and reads

  #propose(command: Command): Promise<CommandResult> {
    if (this.#stopping) return Promise.reject(new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shutting down`));
    this.#kv.validate(command);
    const data = encodeCommand(command);
    return new Promise<CommandResult>((resolve, reject) =>
      this.#replica.propose(data, (error, result) => (error === null ? resolve(result!) : reject(error))),
    );
  }

  /** Resolves once a read at the requested consistency may be served from the local state machine. */
  async #readBarrier(consistency: Consistency): Promise<void> {
    if (consistency !== 'linearizable' && consistency !== 'lease' && consistency !== 'stale') {
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `unknown consistency ${JSON.stringify(consistency)}: use linearizable, lease or stale`);
    }
    if (this.#stopping) throw new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shutting down`);
    if (consistency === 'stale') return;
    await new Promise<void>((resolve, reject) => this.#replica.read(consistency, (error) => (error === null ? resolve() : reject(error))));
  }

  #onRoleChange(change: { role: string; term: number; leader: NodeId | null; roleChanged: boolean; leaderChanged: boolean }): void {
    const event: RoleChange = { role: change.role as Role, term: change.term, leader: change.leader };
    if (change.roleChanged) this.emit('role', event);
    if (change.leaderChanged) this.emit('leader', event);
  }

  /** The Ready loop failed (a disk write or an apply): the node cannot keep its promises and stops. */
  #onFatal(error: Error): void {
    this.#stopping = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    // An 'error' event without a listener would throw here, inside the loop.
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}

function tcpTransport(settings: NodeSettings, log: Logger): TcpTransport {
  const listen = settings.listen ?? parseAddress(settings.peers[settings.id]!);
  const peers = new Map(Object.entries(settings.peers).filter(([id]) => id !== settings.id));
  return new TcpTransport({ id: settings.id, clusterId: settings.clusterId, listen, peers, logger: log.child({ component: 'transport' }) });
}

function replicaOptions(settings: NodeSettings, logger: Logger): ReplicaOptions {
  return {
    id: settings.id,
    tickMs: settings.tickMs,
    electionTimeoutTicks: settings.electionTimeoutMs / settings.tickMs,
    heartbeatIntervalTicks: settings.heartbeatIntervalMs / settings.tickMs,
    snapshotEveryEntries: settings.snapshotEveryEntries,
    snapshotCatchupEntries: settings.snapshotCatchupEntries,
    requestTimeoutMs: settings.requestTimeoutMs,
    pendingRequestsMax: settings.pendingRequestsMax,
    random: { nextInt: (max) => randomInt(max) },
    logger,
    bootstrap: settings.members,
    ...(settings.clockDriftMax === undefined ? {} : { raft: { clockDriftMax: settings.clockDriftMax } }),
  };
}

/** Starts one node. */
export function startNode(options: NodeOptions): Promise<RaftKvNode> {
  return RaftKvNode.start(options);
}

function toBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

function session(options: WriteOptions): { session?: { clientId: string; seq: number } } {
  return options.session === undefined ? {} : { session: { clientId: options.session.clientId, seq: options.session.seq } };
}

function resultError(result: CommandResult): RaftKvError {
  const reason = result.type === 'invalid' ? result.reason : `unexpected ${result.type} result`;
  return new RaftKvError(ErrorCode.COMMAND_INVALID, `the state machine did not execute the command (${reason})`);
}
