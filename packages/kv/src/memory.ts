/**
 * The in-memory twin of `KvStateMachine`: the same commands, results, records and sessions (it
 * applies through apply-plan.ts and stores the exact records LevelDB would hold), kept in a Map
 * instead of a database. It serves embedded and test clusters that need no disk, and the
 * deterministic simulator, which also uses its model of durability:
 *
 * - `apply` writes without sync, as the LevelDB machine does; `sync` makes everything written so
 *   far durable; `install` is durable when it returns (the directory swap syncs).
 * - `crash(kept)` is a power loss: the state goes back to the last durable point plus the first
 *   `kept` batches written after it (a write-ahead log loses a suffix, never a batch in the
 *   middle), and the applied position and sessions are read back from what survived.
 *
 * Every method is synchronous; a caller that wants I/O latency schedules around the calls.
 */
import { assert, ErrorCode, RaftKvError } from '@raftkv/raft';
import type { ConfState, Entry, LogIndex } from '@raftkv/raft';
import { executeApply, planApply } from './apply-plan.js';
import type { BatchOp } from './execute.js';
import { validateCommand, validateKey, isWellFormedText } from './command.js';
import type { Command } from './command.js';
import { resolveLimits } from './limits.js';
import type { KvLimits } from './limits.js';
import {
  checkClusterRecord,
  CLUSTER_PREFIX,
  CONF_KEY,
  dataKey,
  decodeMemberRecord,
  decodeRemovedRecord,
  MEMBER_PREFIX,
  REMOVED_PREFIX,
  decodeConfRecord,
  EMPTY_CONF,
  DATA_PREFIX,
  decodeAppliedRecord,
  decodeSessionRecord,
  decodeValueRecord,
  encodeAppliedRecord,
  encodeFormatRecord,
  hasPrefix,
  META_APPLIED_KEY,
  META_FORMAT_KEY,
  SESSION_PREFIX,
  userKey,
} from './records.js';
import type { AppliedPosition, MemberInfo, SessionRecord, StoredValue } from './records.js';
import type { ApplyResult } from './result.js';
import { SessionTable } from './sessions.js';
import type { KvPair, KvValue, SnapshotPosition, StagedSnapshot } from './state-machine.js';

/** A point-in-time image of a memory state machine: its `d/` and `s/` records and its position. */
export interface MemoryImage {
  readonly position: SnapshotPosition;
  /** Records by database key (latin1 of the key bytes, so string order is byte order). */
  readonly records: ReadonlyMap<string, Buffer>;
}

const WHERE = 'memory';

/** Database keys as Map keys: latin1 maps each byte to one UTF-16 unit, so `<` compares bytes. */
const mapKey = (dbKey: Buffer): string => dbKey.toString('latin1');
const keyBytes = (key: string): Buffer => Buffer.from(key, 'latin1');

export class MemoryKvStateMachine {
  readonly #limits: KvLimits;
  /** What survives a power loss. */
  #durable = new Map<string, Buffer>();
  /** Batches written since the durable point, oldest first. */
  #journal: BatchOp[][] = [];
  #live: Map<string, Buffer>;
  #applied: AppliedPosition = { index: 0, term: 0 };
  #conf: ConfState = EMPTY_CONF;
  #sessions: SessionTable;
  readonly #staged = new Map<StagedSnapshot, MemoryImage>();

  constructor(limits: Partial<KvLimits> = {}) {
    this.#limits = resolveLimits(limits);
    this.#durable.set(mapKey(META_FORMAT_KEY), encodeFormatRecord());
    this.#durable.set(mapKey(META_APPLIED_KEY), encodeAppliedRecord(this.#applied));
    this.#live = new Map(this.#durable);
    this.#sessions = new SessionTable(this.#limits.sessionCountMax, []);
  }

  get appliedIndex(): LogIndex {
    return this.#applied.index;
  }

  get appliedTerm(): number {
    return this.#applied.term;
  }

  get confState(): ConfState {
    return this.#conf;
  }

  get limits(): KvLimits {
    return this.#limits;
  }

  /** Batches applied since the last durable point (what a power loss may take). */
  get unsyncedBatchCount(): number {
    return this.#journal.length;
  }

  validate(command: Command): void {
    validateCommand(command, this.#limits);
  }

  /** Applies committed entries as one unsynced batch; see `KvStateMachine.apply`. */
  apply(entries: readonly Entry[]): ApplyResult[] {
    const plan = planApply(entries, this.#applied);
    const current = new Map<string, StoredValue | null>();
    for (const key of plan.keys) current.set(key, this.#read(key));
    const outcome = executeApply(plan, this.#applied, current, this.#sessions, this.#conf);
    if (outcome.ops.length > 0) this.#write([...outcome.ops]);
    this.#applied = outcome.applied;
    this.#conf = outcome.conf;
    return outcome.results.slice();
  }

  /** Everything written so far becomes durable. */
  sync(): void {
    this.#durable = new Map(this.#live);
    this.#journal = [];
  }

  get(key: string): KvValue | null {
    validateKey(key, this.#limits.keyBytesMax);
    const stored = this.#read(key);
    return stored === null ? null : { value: stored.value, modIndex: stored.modIndex };
  }

  scan(prefix: string, limit: number): KvPair[] {
    if (typeof prefix !== 'string' || !isWellFormedText(prefix)) throw new RaftKvError(ErrorCode.KEY_INVALID, 'scan prefix is not valid UTF-8 text');
    const from = mapKey(dataKey(prefix));
    const keys = [...this.#live.keys()].filter((k) => k.startsWith(from)).sort();
    const out: KvPair[] = [];
    for (const k of keys.slice(0, Math.min(limit, this.#limits.scanCountMax))) {
      const dbKey = keyBytes(k);
      const stored = decodeValueRecord(WHERE, dbKey, this.#live.get(k)!);
      out.push({ key: userKey(dbKey), value: stored.value, modIndex: stored.modIndex });
    }
    return out;
  }

  /** The members added by changes (what their changes said of them), and the ids removed for good. */
  members(): { members: Map<string, MemberInfo>; removed: Set<string> } {
    const members = new Map<string, MemberInfo>();
    const removed = new Set<string>();
    for (const [k, v] of this.#live) {
      const dbKey = keyBytes(k);
      if (hasPrefix(dbKey, MEMBER_PREFIX)) {
        const m = decodeMemberRecord(WHERE, dbKey, v);
        members.set(m.id, m.info);
      } else if (hasPrefix(dbKey, REMOVED_PREFIX)) {
        removed.add(decodeRemovedRecord(WHERE, dbKey, v).id);
      }
    }
    return { members, removed };
  }

  /** The current state as an image (copied: later applies do not show in it). */
  exportImage(): MemoryImage {
    const records = new Map<string, Buffer>();
    for (const [k, v] of this.#live) {
      const dbKey = keyBytes(k);
      if (hasPrefix(dbKey, DATA_PREFIX) || hasPrefix(dbKey, SESSION_PREFIX) || hasPrefix(dbKey, CLUSTER_PREFIX)) records.set(k, v);
    }
    return { position: { ...this.#applied }, records };
  }

  /**
   * Verifies an image against the position the leader announced (the same rule as a stream's
   * header: at that position, or ahead of it) and every record's checksum, then keeps it for
   * `install` or `discard`. Throws SNAPSHOT_TRANSFER_FAILED.
   */
  stage(meta: SnapshotPosition, image: MemoryImage): StagedSnapshot {
    const { index, term } = image.position;
    const same = index === meta.index && term === meta.term;
    const ahead = index > meta.index && term >= meta.term;
    if (!same && !ahead) throw failed(`snapshot image is at ${index}/${term}, behind or beside the expected ${meta.index}/${meta.term}`);
    for (const [k, v] of image.records) {
      const dbKey = keyBytes(k);
      try {
        if (hasPrefix(dbKey, CLUSTER_PREFIX)) checkClusterRecord(WHERE, dbKey, v);
        else if (hasPrefix(dbKey, DATA_PREFIX)) decodeValueRecord(WHERE, dbKey, v);
        else if (hasPrefix(dbKey, SESSION_PREFIX)) decodeSessionRecord(WHERE, dbKey, v);
        else throw failed(`unexpected key in a snapshot image`);
      } catch (cause) {
        throw failed(`snapshot record does not verify: ${(cause as Error).message}`);
      }
    }
    const staged: StagedSnapshot = Object.freeze({ meta: { index, term }, recordCount: image.records.size });
    this.#staged.set(staged, image);
    return staged;
  }

  discard(staged: StagedSnapshot): void {
    assert(this.#staged.delete(staged), 'discard: unknown staged snapshot (already installed or discarded?)');
  }

  /** Replaces the state with a staged image, durably. */
  install(staged: StagedSnapshot): void {
    const image = this.#staged.get(staged);
    assert(image !== undefined, 'install: unknown staged snapshot (already installed or discarded?)');
    assert(staged.meta.index >= this.#applied.index, `install: snapshot at ${staged.meta.index} is behind the applied index ${this.#applied.index}`);
    this.#staged.delete(staged);
    const live = new Map(image.records);
    live.set(mapKey(META_FORMAT_KEY), encodeFormatRecord());
    live.set(mapKey(META_APPLIED_KEY), encodeAppliedRecord(image.position));
    this.#live = live;
    this.sync();
    this.#reload();
    assert(this.#applied.index === staged.meta.index && this.#applied.term === staged.meta.term, 'the installed state is at the staged position');
  }

  /** A power loss: keeps the durable state and the first `kept` unsynced batches; staged images are lost. */
  crash(kept: number): void {
    assert(Number.isInteger(kept) && kept >= 0 && kept <= this.#journal.length, `crash keeps ${kept} of ${this.#journal.length} unsynced batches`);
    const live = new Map(this.#durable);
    for (const ops of this.#journal.slice(0, kept)) applyOps(live, ops);
    this.#live = live;
    this.sync();
    this.#staged.clear();
    this.#reload();
  }

  #read(key: string): StoredValue | null {
    const dbKey = dataKey(key);
    const record = this.#live.get(mapKey(dbKey));
    return record === undefined ? null : decodeValueRecord(WHERE, dbKey, record);
  }

  #write(ops: BatchOp[]): void {
    applyOps(this.#live, ops);
    this.#journal.push(ops);
  }

  #reload(): void {
    const applied = this.#live.get(mapKey(META_APPLIED_KEY));
    assert(applied !== undefined, 'a memory state machine always holds its applied record');
    this.#applied = decodeAppliedRecord(WHERE, applied);
    const conf = this.#live.get(mapKey(CONF_KEY));
    this.#conf = conf === undefined ? EMPTY_CONF : decodeConfRecord(WHERE, conf);
    const sessions: SessionRecord[] = [];
    for (const [k, v] of this.#live) {
      const dbKey = keyBytes(k);
      if (hasPrefix(dbKey, SESSION_PREFIX)) sessions.push(decodeSessionRecord(WHERE, dbKey, v));
    }
    this.#sessions = new SessionTable(this.#limits.sessionCountMax, sessions);
  }
}

function applyOps(records: Map<string, Buffer>, ops: readonly BatchOp[]): void {
  for (const op of ops) {
    if (op.type === 'put') records.set(mapKey(op.key), op.value);
    else records.delete(mapKey(op.key));
  }
}

function failed(message: string): RaftKvError {
  return new RaftKvError(ErrorCode.SNAPSHOT_TRANSFER_FAILED, message);
}
