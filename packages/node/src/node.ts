import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodeCommand,
  openKvStateMachine,
  validateKey,
  type ApplyResult,
  type CasExpect,
  type Command,
  type CommandResult,
  type KvLimits,
  type KvStateMachine,
  type StagedSnapshot,
} from '@raftkv/kv';
import {
  assert,
  ErrorCode,
  isRaftKvError,
  RaftKvError,
  RawNode,
  Role,
  type Entry,
  type LogIndex,
  type Message,
  type NodeId,
  type Ready,
  type SnapshotMeta,
  type Status,
  type Term,
} from '@raftkv/raft';
import { openLevelLogStorage, type LevelLogStorage } from '@raftkv/storage';
import { TcpTransport, type Transport } from '@raftkv/transport';
import pino, { type Logger } from 'pino';
import { parseAddress, resolveNodeOptions, type NodeOptions, type NodeSettings } from './options.js';

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

interface PendingWrite {
  readonly term: Term;
  readonly resolve: (result: CommandResult) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface PendingRead {
  readonly resolve: (index: LogIndex) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A read whose index is known, waiting for the state machine to apply it. */
interface AppliedWaiter {
  readonly index: LogIndex;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/**
 * One raftkv node: the consensus core wired to a durable log (LevelDB), a state machine
 * (LevelDB) and a transport (TCP), driven by the Ready loop of docs/architecture.md:
 *
 *   1. send `ready.messages` (a leader's appends go out while its own fsync runs)
 *   2. install a received snapshot, then persist entries + hard state in one synced batch;
 *      every proposal that arrived during the previous fsync is in this one (group commit)
 *   3. send `ready.messagesAfterPersist`
 *   4. apply committed entries (one batch, applied index inside), resolve writes and reads
 *   5. advance; compact the log every `snapshotEveryEntries`
 */
export class RaftKvNode extends EventEmitter<{ role: [RoleChange]; leader: [RoleChange]; error: [Error] }> {
  readonly id: NodeId;
  readonly #settings: NodeSettings;
  readonly #raw: RawNode;
  readonly #storage: LevelLogStorage;
  readonly #kv: KvStateMachine;
  readonly #transport: Transport;
  readonly #log: Logger;
  /** Where this node accepts peer connections, known once the transport listens. */
  #peerAddress = '';

  readonly #writes = new Map<LogIndex, PendingWrite>();
  readonly #reads = new Map<string, PendingRead>();
  /** Reads whose index is known, waiting for the state machine to apply it. */
  #appliedWaiters: AppliedWaiter[] = [];
  #readSeq = 0;
  #staged: { meta: SnapshotMeta; staged: StagedSnapshot } | null = null;
  #receiving = false;
  #lastCompactApplied: LogIndex;
  #role: Role = Role.Follower;
  #leader: NodeId | null = null;
  #term: Term = 0;

  #ticker: NodeJS.Timeout | null = null;
  #wakeFlag = false;
  #wakeWaiter: (() => void) | null = null;
  #loop: Promise<void> = Promise.resolve();
  #stopping = false;
  #closed: Promise<void> | null = null;

  private constructor(settings: NodeSettings, parts: { raw: RawNode; storage: LevelLogStorage; kv: KvStateMachine; transport: Transport; log: Logger }) {
    super();
    this.id = settings.id;
    this.#settings = settings;
    this.#raw = parts.raw;
    this.#storage = parts.storage;
    this.#kv = parts.kv;
    this.#transport = parts.transport;
    this.#log = parts.log;
    this.#lastCompactApplied = parts.kv.appliedIndex;
  }

  /** Opens (or creates) the node's data directory, joins the cluster and starts the Ready loop. */
  static async start(options: NodeOptions): Promise<RaftKvNode> {
    const settings = resolveNodeOptions(options);
    const log = (settings.logger ?? pino({ level: 'silent' })).child({ nodeId: settings.id });
    await mkdir(settings.dataDir, { recursive: true });
    const confState = { voters: [...settings.members], learners: [] };
    // The log store opens first: its LevelDB lock makes the data directory one process's, which
    // the state machine's directory recovery (renames before its own lock) relies on.
    const storage = await openLevelLogStorage(join(settings.dataDir, 'log'), confState);
    let kv: KvStateMachine | null = null;
    let node: RaftKvNode;
    try {
      kv = await openKvStateMachine(join(settings.dataDir, 'kv'), settings.kvLimits ?? {});
      await reconcile(storage, kv, log);
      const commit = Math.max(storage.initialState().hardState.commit, storage.firstIndex() - 1);
      const raw = new RawNode({
        id: settings.id,
        storage,
        random: { nextInt: (max) => randomInt(max) },
        electionTimeoutTicks: settings.electionTimeoutMs / settings.tickMs,
        heartbeatIntervalTicks: settings.heartbeatIntervalMs / settings.tickMs,
        // The state machine may be ahead of the log's snapshot (see reconcile): entries up to
        // its applied index are skipped when handed out again.
        applied: Math.min(kv.appliedIndex, commit),
      });
      const listen = settings.listen ?? parseAddress(settings.peers[settings.id]!);
      const peers = new Map(Object.entries(settings.peers).filter(([id]) => id !== settings.id));
      const transport =
        settings.transport ??
        new TcpTransport({ id: settings.id, clusterId: settings.clusterId, listen, peers, logger: log.child({ component: 'transport' }) });
      node = new RaftKvNode(settings, { raw, storage, kv, transport, log });
      await transport.start(node.#handlers(), node.#snapshotStreams());
    } catch (error) {
      // Release both stores (and their locks) so the caller can retry or report.
      await Promise.allSettled([storage.close(), kv?.close()]);
      throw error;
    }
    const address = node.#transport instanceof TcpTransport ? node.#transport.address() : null;
    node.#peerAddress = address === null ? '' : `${address.host}:${address.port}`;
    const st = node.#raw.basicStatus();
    log.info({ term: st.term, commit: st.commit, applied: node.#kv.appliedIndex, firstIndex: st.firstIndex, lastIndex: st.lastIndex, peerAddress: node.peerAddress }, 'node started');
    node.#ticker = setInterval(() => node.#tick(), settings.tickMs);
    node.#loop = node.#run();
    return node;
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
    this.#raw.transferLeadership(to);
    this.#wake();
  }

  /** Starts an election now (for tests and operators). */
  campaign(): void {
    this.#raw.campaign();
    this.#wake();
  }

  status(): NodeStatus {
    if (this.#stopping) throw new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shut down`);
    return {
      ...this.#raw.status(),
      clusterId: this.#settings.clusterId,
      peerAddress: this.peerAddress,
      appliedIndexKv: this.#kv.appliedIndex,
      pendingWrites: this.#writes.size,
      pendingReads: this.#reads.size,
    };
  }

  get role(): Role {
    return this.#role;
  }

  get leader(): NodeId | null {
    return this.#leader;
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
    this.#wake();
    await this.#loop;
    const shutting = (): RaftKvError => new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shutting down`);
    for (const w of this.#writes.values()) {
      clearTimeout(w.timer);
      w.reject(shutting());
    }
    this.#writes.clear();
    for (const r of this.#reads.values()) {
      clearTimeout(r.timer);
      r.reject(shutting());
    }
    this.#reads.clear();
    for (const w of this.#appliedWaiters) w.reject(shutting());
    this.#appliedWaiters = [];
    await this.#transport.close();
    await Promise.allSettled([this.#storage.close(), this.#kv.close()]);
    this.#log.info({ term: this.#term }, 'node stopped');
  }

  // ---------------------------------------------------------------- writes and reads

  #propose(command: Command): Promise<CommandResult> {
    if (this.#stopping) return Promise.reject(new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shutting down`));
    this.#kv.validate(command);
    if (this.#writes.size + this.#reads.size >= this.#settings.pendingRequestsMax) {
      return Promise.reject(new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `node ${this.id} has ${this.#settings.pendingRequestsMax} requests pending; retry later`));
    }
    const { index, term } = this.#raw.propose(encodeCommand(command)); // throws NOT_LEADER etc.
    this.#wake();
    return new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#writes.delete(index);
        reject(new RaftKvError(ErrorCode.TIMEOUT, `write at index ${index} not applied within ${this.#settings.requestTimeoutMs} ms; it may still take effect`));
      }, this.#settings.requestTimeoutMs);
      this.#writes.set(index, { term, resolve, reject, timer });
    });
  }

  /** Resolves once a read at the requested consistency may be served from the local state machine. */
  async #readBarrier(consistency: Consistency): Promise<void> {
    if (consistency !== 'linearizable' && consistency !== 'lease' && consistency !== 'stale') {
      throw new RaftKvError(ErrorCode.INVALID_CONFIG, `unknown consistency ${JSON.stringify(consistency)}: use linearizable, lease or stale`);
    }
    if (this.#stopping) throw new RaftKvError(ErrorCode.SHUTTING_DOWN, `node ${this.id} is shutting down`);
    if (consistency === 'stale') return;
    if (this.#reads.size + this.#writes.size >= this.#settings.pendingRequestsMax) {
      throw new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `node ${this.id} has ${this.#settings.pendingRequestsMax} requests pending; retry later`);
    }
    const context = `${this.id}:${++this.#readSeq}`;
    this.#raw.readIndex(context, consistency === 'lease' ? 'lease' : 'read-index'); // throws NOT_LEADER without a leader
    this.#wake();
    // One deadline covers both waits: for the read index, then for this node to apply it (a
    // node far behind, e.g. one installing a snapshot, must not hold a read forever).
    const deadline = Date.now() + this.#settings.requestTimeoutMs;
    const index = await new Promise<LogIndex>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#reads.delete(context);
        reject(new RaftKvError(ErrorCode.TIMEOUT, `read not confirmed within ${this.#settings.requestTimeoutMs} ms`));
      }, this.#settings.requestTimeoutMs);
      this.#reads.set(context, { resolve, reject, timer });
    });
    if (this.#kv.appliedIndex >= index) return;
    await new Promise<void>((resolve, reject) => {
      const waiter: AppliedWaiter = {
        index,
        resolve: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(waiter.timer);
          reject(error);
        },
        timer: setTimeout(() => {
          this.#appliedWaiters = this.#appliedWaiters.filter((w) => w !== waiter);
          reject(new RaftKvError(ErrorCode.TIMEOUT, `read index ${index} not applied on ${this.id} within ${this.#settings.requestTimeoutMs} ms`));
        }, Math.max(0, deadline - Date.now())),
      };
      this.#appliedWaiters.push(waiter);
    });
  }

  // ---------------------------------------------------------------- the Ready loop

  #tick(): void {
    this.#raw.tick();
    this.#wake();
  }

  #wake(): void {
    this.#wakeFlag = true;
    const waiter = this.#wakeWaiter;
    this.#wakeWaiter = null;
    waiter?.();
  }

  #nextWake(): Promise<void> {
    if (this.#wakeFlag) {
      this.#wakeFlag = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#wakeWaiter = resolve));
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopping) {
        if (!this.#raw.hasReady()) {
          await this.#nextWake();
          continue;
        }
        await this.#handleReady(this.#raw.ready());
      }
    } catch (error) {
      // A failed disk write or state machine apply leaves the node unable to keep its
      // promises: stop it rather than carry on with state that may not be durable.
      this.#log.fatal({ err: error, term: this.#term }, 'ready loop failed; stopping the node');
      this.#stopping = true;
      if (this.#ticker !== null) clearInterval(this.#ticker);
      // An 'error' event without a listener would throw here and leave an unhandled rejection.
      if (this.listenerCount('error') > 0) this.emit('error', error instanceof Error ? error : new Error(String(error)));
    }
  }

  async #handleReady(rd: Ready): Promise<void> {
    if (rd.softState !== null || rd.hardState !== null) this.#onState(rd);
    for (const m of rd.messages) this.#transport.send(m);
    if (rd.snapshot !== null) await this.#installSnapshot(rd.snapshot.meta);
    if (rd.snapshot !== null || rd.entries.length > 0 || rd.hardState !== null) await this.#storage.persist(rd);
    for (const m of rd.messagesAfterPersist) this.#transport.send(m);
    if (rd.committedEntries.length > 0) {
      const results = await this.#kv.apply(rd.committedEntries);
      this.#settleWrites(rd.committedEntries, results);
    }
    for (const rs of rd.readStates) {
      const read = this.#reads.get(rs.context);
      if (read === undefined) continue; // timed out meanwhile
      this.#reads.delete(rs.context);
      clearTimeout(read.timer);
      read.resolve(rs.index);
    }
    this.#releaseAppliedWaiters();
    this.#raw.advance();
    await this.#maybeCompact();
  }

  #onState(rd: Ready): void {
    const term = rd.hardState?.term ?? this.#term;
    const soft = rd.softState;
    const leaderChanged = soft !== null && soft.lead !== this.#leader;
    const roleChanged = soft !== null && soft.role !== this.#role;
    this.#term = term;
    if (soft === null) return;
    const previousRole = this.#role;
    this.#role = soft.role;
    this.#leader = soft.lead;
    const change: RoleChange = { role: soft.role, term, leader: soft.lead };
    if (roleChanged) {
      this.#log.info({ term, role: soft.role, leader: soft.lead, previousRole }, 'role changed');
      this.emit('role', change);
    }
    if (leaderChanged) {
      this.#log.info({ term, leader: soft.lead }, 'leader changed');
      this.emit('leader', change);
      // Reads not yet confirmed were asked of the old leader, which drops them: fail them now
      // so callers retry at once instead of waiting for the timeout.
      for (const [context, read] of this.#reads) {
        clearTimeout(read.timer);
        read.reject(new RaftKvError(ErrorCode.NOT_LEADER, 'leadership changed while the read was pending; retry', { leaderHint: soft.lead }));
        this.#reads.delete(context);
      }
    }
  }

  #settleWrites(entries: readonly Entry[], results: readonly ApplyResult[]): void {
    assert(entries.length === results.length, `apply returned ${results.length} results for ${entries.length} entries`);
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      const pending = this.#writes.get(e.index);
      if (pending === undefined) continue;
      this.#writes.delete(e.index);
      clearTimeout(pending.timer);
      const applied = results[k]!;
      assert(applied.index === e.index, `apply result for ${applied.index} in the place of ${e.index}`);
      if (pending.term !== e.term) {
        // Another entry took the index: this write is gone from every log.
        pending.reject(new RaftKvError(ErrorCode.PROPOSAL_DROPPED, `leadership changed before index ${e.index} committed; the write was not applied`, { leaderHint: this.#leader }));
      } else if (applied.result === null) {
        // The state machine already held this very entry (it came with a snapshot taken past
        // it), so the write took effect, but its result was computed elsewhere. Saying
        // "not applied" here would be a lie a client could turn into a lost update.
        pending.reject(new RaftKvError(ErrorCode.TIMEOUT, `the write at index ${e.index} took effect through a snapshot; its result is unknown here (read the key to see it)`));
      } else {
        pending.resolve(applied.result);
      }
    }
  }

  #releaseAppliedWaiters(): void {
    if (this.#appliedWaiters.length === 0) return;
    const applied = this.#kv.appliedIndex;
    const still: AppliedWaiter[] = [];
    for (const w of this.#appliedWaiters) {
      if (w.index <= applied) w.resolve();
      else still.push(w);
    }
    this.#appliedWaiters = still;
  }

  /**
   * The state machine takes the staged snapshot before the log records it. A crash in between
   * leaves a state machine ahead of its log, which `reconcile` repairs on the next start; the
   * other order would leave a log that claims entries the state machine never saw.
   */
  async #installSnapshot(meta: SnapshotMeta): Promise<void> {
    const staged = this.#staged;
    assert(staged !== null && staged.meta.index === meta.index, `snapshot ${meta.term}/${meta.index} to install, but ${staged === null ? 'none' : staged.meta.index} is staged`);
    this.#staged = null;
    await this.#kv.install(staged.staged);
    this.#lastCompactApplied = this.#kv.appliedIndex;
    this.#log.info({ term: this.#term, index: meta.index, applied: this.#kv.appliedIndex }, 'snapshot installed');
  }

  async #maybeCompact(): Promise<void> {
    const applied = this.#kv.appliedIndex;
    if (applied - this.#lastCompactApplied < this.#settings.snapshotEveryEntries) return;
    this.#lastCompactApplied = applied;
    const index = Math.min(applied - this.#settings.snapshotCatchupEntries, this.#raw.basicStatus().applied);
    if (index < this.#storage.firstIndex()) return;
    let meta: SnapshotMeta;
    try {
      meta = this.#raw.snapshotMeta(index);
    } catch (error) {
      if (isRaftKvError(error, ErrorCode.LOG_COMPACTED)) return; // a newer snapshot is being installed
      throw error;
    }
    // The state machine itself is the snapshot's data (streamed on demand); the log store
    // keeps only the metadata.
    await this.#storage.compact(meta, EMPTY);
    this.#log.info({ term: this.#term, index, applied }, 'log compacted');
  }

  // ---------------------------------------------------------------- transport wiring

  #handlers(): Parameters<Transport['start']>[0] {
    return {
      onMessage: (m: Message) => {
        if (this.#stopping) return;
        if (m.to !== this.id) {
          this.#log.warn({ to: m.to, from: m.from, type: m.type }, 'message for another node dropped');
          return;
        }
        this.#raw.step(m);
        this.#wake();
      },
      onSnapshotStatus: (to: NodeId, ok: boolean) => {
        if (this.#stopping) return;
        this.#log.info({ term: this.#term, to, ok }, 'snapshot sent');
        this.#raw.reportSnapshot(to, ok);
        this.#wake();
      },
      onUnreachable: (to: NodeId) => {
        if (this.#stopping) return;
        this.#raw.reportUnreachable(to);
        this.#wake();
      },
    };
  }

  #snapshotStreams(): Parameters<Transport['start']>[1] {
    return {
      // The stream is the state machine's current image, at or beyond meta.index (the log's
      // snapshot point): every entry up to its applied index is committed, so a follower may
      // install it, and skips the entries between when the log hands them out again.
      open: () => this.#kv.exportSnapshot().chunks,
      receive: async (from: NodeId, meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>) => {
        if (this.#receiving) {
          throw new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, `node ${this.id} is already receiving a snapshot; the sender retries`);
        }
        this.#receiving = true;
        try {
          this.#log.info({ term: this.#term, from, index: meta.index }, 'receiving snapshot');
          // One staged snapshot at a time: a newer one replaces an older one not yet installed.
          const previous = this.#staged;
          this.#staged = null;
          if (previous !== null) await this.#kv.discard(previous.staged);
          const staged = await this.#kv.importSnapshot(meta, chunks);
          this.#staged = { meta, staged };
        } finally {
          this.#receiving = false;
        }
      },
    };
  }
}

/** Starts one node. */
export function startNode(options: NodeOptions): Promise<RaftKvNode> {
  return RaftKvNode.start(options);
}

/**
 * Repairs the one state a crash can leave the two stores in: the state machine installed a
 * snapshot from the leader but the log did not record it. The state machine's applied index is
 * then past the log's commit index; the log is brought up to it by recording a snapshot at that
 * point (everything at or below it is committed, since the leader only sends committed state).
 */
async function reconcile(storage: LevelLogStorage, kv: KvStateMachine, log: Logger): Promise<void> {
  const { hardState, confState } = storage.initialState();
  const commit = Math.max(hardState.commit, storage.firstIndex() - 1);
  if (kv.appliedIndex <= commit) return;
  log.warn({ applied: kv.appliedIndex, commit }, 'state machine is ahead of the log; recording its snapshot in the log');
  await storage.applySnapshot({ meta: { index: kv.appliedIndex, term: kv.appliedTerm, confState }, data: EMPTY });
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
