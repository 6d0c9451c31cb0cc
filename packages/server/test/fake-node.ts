import type { CasExpect } from '@raftkv/kv';
import type { KvItem, NodeStatus, ReadOptions } from '@raftkv/node';
import { ErrorCode, RaftKvError, Role } from '@raftkv/raft';
import type { ServedNode } from '../src/index.js';

/** An in-memory stand-in for a RaftKvNode: a map, a log index counter, and an error to throw on demand. */
export class FakeNode implements ServedNode {
  readonly id: string;
  role: Role = Role.Leader;
  leader: string | null;
  readonly data = new Map<string, { value: Uint8Array; modIndex: number }>();
  readonly calls: { op: string; key: string; options?: unknown }[] = [];
  /** Thrown by the next data call (put, get, delete, cas, scan), then cleared unless `sticky`. */
  failWith: Error | null = null;
  sticky = false;
  commit = 0;
  applied = 0;
  index = 0;

  constructor(id = 'n1', leader: string | null = 'n1') {
    this.id = id;
    this.leader = leader;
  }

  #check(op: string, key: string, options?: unknown): void {
    this.calls.push({ op, key, ...(options === undefined ? {} : { options }) });
    const error = this.failWith;
    if (!this.sticky) this.failWith = null;
    if (error !== null) throw error;
  }

  async put(key: string, value: Uint8Array | string, options?: unknown): Promise<{ modIndex: number }> {
    this.#check('put', key, options);
    const modIndex = ++this.index;
    this.data.set(key, { value: typeof value === 'string' ? new TextEncoder().encode(value) : value, modIndex });
    return { modIndex };
  }

  async get(key: string, options?: ReadOptions): Promise<KvItem | null> {
    this.#check('get', key, options);
    const found = this.data.get(key);
    return found === undefined ? null : { key, ...found };
  }

  async delete(key: string, options?: unknown): Promise<{ modIndex: number; existed: boolean }> {
    this.#check('delete', key, options);
    const existed = this.data.delete(key);
    return { modIndex: ++this.index, existed };
  }

  async cas(key: string, value: Uint8Array | string, expect: CasExpect, options?: unknown): Promise<{ ok: true; modIndex: number } | { ok: false; current: { modIndex: number } | null }> {
    this.#check('cas', key, { expect, ...(options ?? {}) });
    const found = this.data.get(key);
    const matches = 'absent' in expect ? found === undefined : found?.modIndex === expect.modIndex;
    if (!matches) return { ok: false, current: found === undefined ? null : { modIndex: found.modIndex } };
    return { ok: true, modIndex: (await this.put(key, value)).modIndex };
  }

  async scan(prefix: string, options: ReadOptions & { limit?: number } = {}): Promise<KvItem[]> {
    this.#check('scan', prefix, options);
    return [...this.data.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, options.limit ?? 10_000)
      .map(([key, v]) => ({ key, ...v }));
  }

  status(): NodeStatus {
    if (this.failWith !== null && this.sticky) throw this.failWith;
    const isLeader = this.role === Role.Leader;
    return {
      id: this.id,
      uid: `uid-${this.id}`,
      role: this.role,
      term: 3,
      vote: this.leader,
      lead: this.leader,
      commit: this.commit,
      applied: this.applied,
      firstIndex: 1,
      lastIndex: this.commit,
      leadTransferee: null,
      confState: { voters: ['n1', 'n2', 'n3'], learners: [] },
      progress: isLeader ? new Map([['n2', { match: this.commit, next: this.commit + 1, state: 'replicate' as const, inflightCount: 0, recentActive: true, pendingSnapshot: 0 }]]) : null,
      clusterId: 'raftkv',
      peerAddress: '127.0.0.1:1',
      appliedIndexKv: this.applied,
      pendingWrites: 0,
      pendingReads: 0,
    };
  }
}

export function notLeader(leaderHint: string | null): RaftKvError {
  return new RaftKvError(ErrorCode.NOT_LEADER, 'not the leader', { leaderHint });
}
