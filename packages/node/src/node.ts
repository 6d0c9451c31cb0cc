import { randomInt, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  backupStream,
  encodeCommand,
  encodeMemberInfo,
  memberInfoOf,
  openKvStateMachine,
  summarizeImage,
  validateKey,
  type CasExpect,
  type Command,
  type CommandResult,
  type KvLimits,
  type KvStateMachine,
  type MemberInfo,
} from '@raftkv/kv';
import { decodeConfChange, EntryType, ErrorCode, RaftKvError, type ConfChange, type Entry, type LogIndex, type NodeId, type Role, type Status, type Term } from '@raftkv/raft';
import { openLevelLogStorage, type LevelLogStorage, type NodeIdentity } from '@raftkv/storage';
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
  /** This node's data directory's random id (a wiped directory gets a new one). */
  readonly uid: string;
  readonly peerAddress: string;
  readonly appliedIndexKv: LogIndex;
  readonly pendingWrites: number;
  readonly pendingReads: number;
}

/** A node's state hash, at the applied index it was computed at. */
export interface StateHash {
  readonly index: LogIndex;
  readonly term: Term;
  /** SHA-256, lowercase hex, of every key, value and modIndex in key order. */
  readonly stateHash: string;
  readonly keyCount: number;
  /** UTF-8 bytes of the keys plus the bytes of their values. */
  readonly dataBytes: number;
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
  /** The cluster and data directory this node belongs to (recorded in its log store). */
  readonly identity: NodeIdentity;
  /** Where this node accepts peer connections, known once the transport listens. */
  #peerAddress = '';
  #ticker: NodeJS.Timeout | null = null;
  #stopping = false;
  /** What is known of each node's addresses and identity: the options' peers, then every membership change seen. */
  readonly #book = new Map<NodeId, MemberInfo>();
  /**
   * Nodes whose peer address this node was told directly (the options' `peers`, `setPeers`):
   * a membership record does not override it. The address a change recorded is the one the
   * leader was given; this node may have to dial another (a proxy, a NAT, a moved machine).
   */
  readonly #pinnedPeers = new Set<NodeId>();
  /** Learners to promote on their own, and since when each has been caught up (leader only). */
  readonly #caughtUpSince = new Map<NodeId, number>();
  #promoting = false;
  #closed: Promise<void> | null = null;

  private constructor(
    settings: NodeSettings,
    parts: { replica: Replica<ChunkImage>; storage: LevelLogStorage; kv: KvStateMachine; transport: Transport; log: Logger; identity: NodeIdentity },
  ) {
    super();
    this.id = settings.id;
    this.identity = parts.identity;
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
      const identity = await ensureIdentity(storage, settings);
      kv = await openKvStateMachine(join(settings.dataDir, 'kv'), settings.kvLimits ?? {});
      const transport = settings.transport ?? tcpTransport(settings, identity, storage, log);
      const events: ReplicaEvents = {
        onRoleChange: (change) => {
          if (node !== null) node.#onRoleChange(change);
        },
        onConfEntries: (entries) => {
          if (node !== null) node.#onConfEntries(entries);
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
      node = new RaftKvNode(settings, { replica, storage, kv, transport, log, identity });
      await node.#loadMembers();
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
    started.#ticker = setInterval(() => started.#onTimer(), settings.tickMs);
    return started;
  }

  /** Where this node accepts peer connections ("host:port"); empty for an injected transport. */
  get peerAddress(): string {
    return this.#peerAddress;
  }

  /** Updates the peer address book (for clusters whose ports are chosen by the OS). */
  setPeers(peers: Readonly<Record<NodeId, string>>): void {
    this.#pin(peers);
    this.#publishPeers();
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

  /**
   * Moves leadership to another voter (thesis section 3.10), by default the one whose log is
   * furthest on; forwarded when called on a follower. Returns the target.
   */
  transferLeadership(to?: NodeId): NodeId {
    const target = to ?? bestTransferTarget(this.#replica.status());
    if (target === null) throw new RaftKvError(ErrorCode.TRANSFER_REJECTED, `node ${this.id} knows no other voter to hand leadership to`);
    this.#replica.transferLeadership(target);
    return target;
  }

  // ---------------------------------------------------------------- backups (docs/operations.md, "Back up and restore")

  /**
   * A backup file of this node's state machine (format in @raftkv/kv, backup.ts), as a stream.
   * A linearizable read barrier comes first (ReadIndex, as for `get`), so the image holds every
   * write acknowledged before the call; the state machine's snapshot is then taken at its applied
   * index, at or past the read index. Read the stream once: it holds a LevelDB snapshot open
   * until it ends, or until `close` (call it when the stream may be dropped unread).
   */
  async backup(): Promise<{ readonly index: LogIndex; readonly term: Term; readonly chunks: AsyncIterable<Uint8Array>; close(): Promise<void> }> {
    await this.#readBarrier('linearizable');
    const exported = await this.#kv.exportSnapshot();
    const chunks = backupStream(exported, { clusterId: this.identity.clusterId, nodeId: this.id }, new Date());
    return { index: exported.meta.index, term: exported.meta.term, chunks, close: () => exported.close() };
  }

  /**
   * The state hash (keys, values and modIndexes; @raftkv/kv, backup.ts) of this node's state
   * machine at its applied index, which the answer names: compare nodes only at equal indexes.
   * A read barrier at `consistency` (default linearizable) comes first; `stale` hashes whatever
   * this node has applied, without asking the leader.
   */
  async stateHash(options: ReadOptions = {}): Promise<StateHash> {
    await this.#readBarrier(options.consistency ?? 'linearizable');
    const exported = await this.#kv.exportSnapshot();
    const summary = await summarizeImage(exported.chunks, `state machine of node ${this.id}`);
    return { index: summary.position.index, term: summary.position.term, stateHash: summary.stateHash, keyCount: summary.keyCount, dataBytes: summary.dataBytes };
  }

  // ---------------------------------------------------------------- membership (thesis chapter 4)

  /** Every member of the configuration in force here, with what is known of it. */
  members(): MemberView[] {
    const st = this.#replica.status();
    const view = (id: NodeId, role: 'voter' | 'learner'): MemberView => {
      const info = this.#book.get(id);
      const pr = st.progress?.get(id) ?? null;
      return {
        id,
        role,
        peerAddress: info?.peer ?? null,
        httpAddress: info?.http ?? null,
        isLeader: st.lead === id,
        autoPromote: info?.autoPromote ?? false,
        ...(pr === null ? {} : { match: pr.match, lag: Math.max(0, st.lastIndex - pr.match), replication: pr.state }),
      };
    };
    return [...st.confState.voters.map((id) => view(id, 'voter')), ...st.confState.learners.map((id) => view(id, 'learner'))];
  }

  /**
   * Adds a node as a learner (it receives the log, does not vote). `peerAddress` is where it
   * listens for peers; `uid`, when given, is the only data directory its peers will accept under
   * that id. With `autoPromote`, the leader makes it a voter once it has been caught up for
   * `autoPromoteStableMs`. Resolves once the change is applied here. Leader only (NOT_LEADER).
   * An id removed before is refused for good (CONF_CHANGE_INVALID): a new machine gets a new id.
   */
  async addLearner(id: NodeId, member: { peerAddress: string; httpAddress?: string; uid?: string; autoPromote?: boolean }): Promise<void> {
    if (id === '' || id.length > 256) throw new RaftKvError(ErrorCode.INVALID_CONFIG, 'a node id is 1 to 256 characters');
    parseAddress(member.peerAddress);
    const { removed } = await this.#kv.members();
    if (removed.has(id)) {
      throw new RaftKvError(ErrorCode.CONF_CHANGE_INVALID, `${id} was removed from this cluster; a node never comes back under its old id: add the machine under a new id`);
    }
    const info: MemberInfo = { peer: member.peerAddress, http: member.httpAddress ?? null, uid: member.uid ?? null, autoPromote: member.autoPromote ?? false };
    this.#learn(id, info);
    await this.#changeMembership({ type: 'add-learner', id }, encodeMemberInfo(info));
  }

  /** Makes a learner a voter; refused (CONF_CHANGE_INVALID) until it is caught up. Leader only. */
  promote(id: NodeId): Promise<void> {
    return this.#changeMembership({ type: 'promote', id }, new Uint8Array(0));
  }

  /** Removes a voter or a learner (this node too: it hands leadership over once that is committed). Leader only. */
  removeMember(id: NodeId): Promise<void> {
    return this.#changeMembership({ type: 'remove', id }, new Uint8Array(0));
  }

  #changeMembership(change: ConfChange, context: Uint8Array): Promise<void> {
    if (this.#stopping) return Promise.reject(new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shutting down`));
    return new Promise<void>((resolve, reject) => this.#replica.changeMembership(change, context, (error) => (error === null ? resolve() : reject(error))));
  }

  /** The HTTP address of a node, as its membership change (or the options) recorded it. */
  httpAddressOf(id: NodeId): string | null {
    return this.#book.get(id)?.http ?? null;
  }

  /** Starts an election now (for tests and operators). */
  campaign(): void {
    this.#replica.campaign();
  }

  status(): NodeStatus {
    if (this.#stopping) throw new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shut down`);
    const { appliedIndexStateMachine, ...st } = this.#replica.status();
    return { ...st, clusterId: this.identity.clusterId, uid: this.identity.uid, peerAddress: this.peerAddress, appliedIndexKv: appliedIndexStateMachine };
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
    await this.#handOver();
    this.#stopping = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    await new Promise<void>((resolve) => this.#replica.stop(() => resolve()));
    await this.#transport.close();
    await Promise.allSettled([this.#storage.close(), this.#kv.close()]);
    this.#log.info({ term: this.#replica.term }, 'node stopped');
  }

  #onTimer(): void {
    this.#replica.onTimer();
    this.#autoPromote();
  }

  /**
   * On the leader: a learner added with auto-promotion becomes a voter once it has been caught
   * up (replicating, within the core's promotion lag) for `autoPromoteStableMs`, the way Consul's
   * autopilot waits for a server to be healthy and stable. One change at a time.
   */
  #autoPromote(): void {
    if (this.#replica.role !== 'leader' || this.#promoting || this.#stopping) {
      if (this.#replica.role !== 'leader') this.#caughtUpSince.clear();
      return;
    }
    const st = this.#replica.status();
    const now = performance.now();
    for (const id of st.confState.learners) {
      const pr = st.progress?.get(id);
      const caughtUp = this.#book.get(id)?.autoPromote === true && pr !== undefined && pr.state === 'replicate' && st.lastIndex - pr.match <= AUTO_PROMOTE_LAG_ENTRIES_MAX;
      if (!caughtUp) {
        this.#caughtUpSince.delete(id);
        continue;
      }
      const since = this.#caughtUpSince.get(id) ?? now;
      this.#caughtUpSince.set(id, since);
      if (now - since < this.#settings.autoPromoteStableMs) continue;
      this.#promoting = true;
      this.#log.info({ term: st.term, learner: id }, 'promoting a caught-up learner');
      this.promote(id)
        .catch((error: unknown) => this.#log.warn({ term: st.term, learner: id, err: error }, 'promoting a learner failed; will retry'))
        .finally(() => {
          this.#promoting = false;
          this.#caughtUpSince.delete(id);
        });
      return;
    }
  }

  /** Remembers what a membership change (or the options) says of a node, and tells the transport where it is. */
  #learn(id: NodeId, info: MemberInfo, publish = true): void {
    const known = this.#book.get(id);
    const pinned = this.#pinnedPeers.has(id) ? (known?.peer ?? null) : null;
    this.#book.set(id, {
      peer: pinned ?? info.peer ?? known?.peer ?? null,
      http: info.http ?? known?.http ?? null,
      uid: info.uid ?? known?.uid ?? null,
      autoPromote: info.autoPromote || (known?.autoPromote ?? false),
    });
    if (publish) this.#publishPeers();
  }

  /** Addresses this node was told directly: they win over what membership records say. */
  #pin(peers: Readonly<Record<NodeId, string>>): void {
    for (const [id, peer] of Object.entries(peers)) {
      this.#pinnedPeers.delete(id);
      this.#learn(id, { peer, http: null, uid: null, autoPromote: false }, false);
      this.#pinnedPeers.add(id);
    }
  }

  #publishPeers(): void {
    const peers = new Map<NodeId, string>();
    for (const [id, info] of this.#book) if (id !== this.id && info.peer !== null) peers.set(id, info.peer);
    this.#transport.setPeers(peers);
  }

  #onConfEntries(entries: readonly Entry[]): void {
    for (const e of entries) {
      let decoded: ReturnType<typeof decodeConfChange>;
      try {
        decoded = decodeConfChange(e.data);
      } catch {
        continue;
      }
      if (decoded.change.type === 'add-learner') this.#learn(decoded.change.id, memberInfoOf(decoded.context));
    }
  }

  /**
   * The address book at start: the options' peers, what the state machine recorded of members
   * added by changes, and the changes in the log it has not applied yet.
   */
  async #loadMembers(): Promise<void> {
    this.#pin(this.#settings.peers);
    const { members } = await this.#kv.members();
    for (const [id, info] of members) this.#learn(id, info, false);
    const from = Math.max(this.#kv.appliedIndex + 1, this.#storage.firstIndex());
    if (from <= this.#storage.lastIndex()) {
      this.#onConfEntries(this.#storage.entries(from, this.#storage.lastIndex() + 1, Number.MAX_SAFE_INTEGER).filter((e) => e.type === EntryType.ConfChange));
    }
    this.#publishPeers();
  }

  /**
   * A leader asked to stop first hands leadership to the voter whose log is furthest on (thesis
   * section 3.10), so that clients see one short pause rather than an election timeout of
   * errors. Bounded by an election timeout; past it, the node stops anyway.
   */
  async #handOver(): Promise<void> {
    if (this.#replica.role !== 'leader' || this.#replica.stopped) return;
    const target = bestTransferTarget(this.#replica.status());
    if (target === null) return;
    this.#log.info({ term: this.#replica.term, to: target }, 'handing leadership over before stopping');
    try {
      this.#replica.transferLeadership(target);
    } catch {
      return;
    }
    const deadline = performance.now() + this.#settings.electionTimeoutMs;
    while (this.#replica.role === 'leader' && performance.now() < deadline) await sleep(this.#settings.tickMs / 2);
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

/** The voter, other than the leader itself, whose log is furthest on; null when there is none. */
function bestTransferTarget(status: Status): NodeId | null {
  let best: { id: NodeId; match: LogIndex } | null = null;
  for (const id of status.confState.voters) {
    if (id === status.id) continue;
    const match = status.progress?.get(id)?.match ?? 0;
    if (best === null || match > best.match) best = { id, match };
  }
  return best?.id ?? null;
}

function tcpTransport(settings: NodeSettings, identity: NodeIdentity, storage: LevelLogStorage, log: Logger): TcpTransport {
  const listen = settings.listen ?? parseAddress(settings.peers[settings.id]!);
  const peers = new Map(Object.entries(settings.peers).filter(([id]) => id !== settings.id));
  return new TcpTransport({
    id: settings.id,
    clusterId: identity.clusterId,
    listen,
    peers,
    logger: log.child({ component: 'transport' }),
    identity: { uid: identity.uid, peers: { known: (peer) => storage.peerIdentities().get(peer), remember: (peer, uid) => storage.rememberPeer(peer, uid) } },
  });
}

/**
 * The data directory's identity: the cluster it belongs to, the node it is, and a random id
 * drawn when it was created (a wiped directory draws a new one, which its peers refuse). Made
 * on first start; checked against the options on every later one.
 */
async function ensureIdentity(storage: LevelLogStorage, settings: NodeSettings): Promise<NodeIdentity> {
  const stored = storage.identity();
  const fail = (message: string): never => {
    throw new RaftKvError(ErrorCode.INVALID_CONFIG, `${join(settings.dataDir, 'log')}: ${message}`);
  };
  if (stored !== null) {
    if (stored.nodeId !== settings.id) fail(`this data directory belongs to node ${stored.nodeId}, not ${settings.id}`);
    if (settings.clusterId !== undefined && settings.clusterId !== stored.clusterId) {
      fail(`this data directory belongs to cluster ${JSON.stringify(stored.clusterId)}, not ${JSON.stringify(settings.clusterId)} (omit the cluster id to use the directory's)`);
    }
    return stored;
  }
  const identity: NodeIdentity = { clusterId: settings.clusterId ?? DEFAULT_CLUSTER_ID, nodeId: settings.id, uid: randomUUID() };
  await storage.setIdentity(identity);
  return identity;
}

const DEFAULT_CLUSTER_ID = 'raftkv';

/** A learner within this many entries of the leader's log counts as caught up for auto-promotion (the core allows more). */
const AUTO_PROMOTE_LAG_ENTRIES_MAX = 64;

/** A member as `members()` shows it. `match`, `lag` and `replication` are known on the leader only. */
export interface MemberView {
  readonly id: NodeId;
  readonly role: 'voter' | 'learner';
  readonly peerAddress: string | null;
  readonly httpAddress: string | null;
  readonly isLeader: boolean;
  readonly autoPromote: boolean;
  readonly match?: LogIndex;
  readonly lag?: number;
  readonly replication?: 'probe' | 'replicate' | 'snapshot';
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
    ...(settings.members === undefined ? {} : { bootstrap: settings.members }),
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
