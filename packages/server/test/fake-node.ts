import type { CasExpect } from '@raftkv/kv';
import type { KvItem, MemberView, NodeStatus, ReadOptions } from '@raftkv/node';
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
  /** The configuration, with what each member's change said of it. */
  readonly memberInfo = new Map<string, { role: 'voter' | 'learner'; peerAddress: string | null; httpAddress: string | null; uid: string | null; autoPromote: boolean }>([
    ['n1', { role: 'voter', peerAddress: '127.0.0.1:7001', httpAddress: null, uid: null, autoPromote: false }],
    ['n2', { role: 'voter', peerAddress: '127.0.0.1:7002', httpAddress: null, uid: null, autoPromote: false }],
    ['n3', { role: 'voter', peerAddress: '127.0.0.1:7003', httpAddress: null, uid: null, autoPromote: false }],
  ]);
  /** Transfers asked for (the target each resolved to). */
  readonly transfers: string[] = [];
  /** What a transfer does to this node once asked (default: nothing, as a transfer that never completes). */
  onTransfer: (target: string) => void = () => {};
  leadTransferee: string | null = null;

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

  members(): MemberView[] {
    const isLeader = this.role === Role.Leader;
    const ordered = [...this.memberInfo].sort(([, a], [, b]) => (a.role === b.role ? 0 : a.role === 'voter' ? -1 : 1));
    return ordered.map(([id, m]) => ({
      id,
      role: m.role,
      peerAddress: m.peerAddress,
      httpAddress: m.httpAddress,
      isLeader: this.leader === id,
      autoPromote: m.autoPromote,
      ...(isLeader ? { match: this.commit, lag: 0, replication: 'replicate' as const } : {}),
    }));
  }

  async addLearner(id: string, member: { peerAddress: string; httpAddress?: string; uid?: string; autoPromote?: boolean }): Promise<void> {
    this.#check('addLearner', id, member);
    if (this.memberInfo.has(id)) throw new RaftKvError(ErrorCode.CONF_CHANGE_INVALID, `${id} is already a member`);
    this.memberInfo.set(id, { role: 'learner', peerAddress: member.peerAddress, httpAddress: member.httpAddress ?? null, uid: member.uid ?? null, autoPromote: member.autoPromote ?? false });
  }

  async promote(id: string): Promise<void> {
    this.#check('promote', id);
    const m = this.memberInfo.get(id);
    if (m?.role !== 'learner') throw new RaftKvError(ErrorCode.CONF_CHANGE_INVALID, `${id} is not a learner`);
    m.role = 'voter';
  }

  async removeMember(id: string): Promise<void> {
    this.#check('removeMember', id);
    if (!this.memberInfo.delete(id)) throw new RaftKvError(ErrorCode.CONF_CHANGE_INVALID, `${id} is not a member`);
  }

  transferLeadership(to?: string): string {
    this.#check('transferLeadership', to ?? '');
    const target = to ?? [...this.memberInfo].find(([id, m]) => id !== this.id && m.role === 'voter')?.[0];
    if (target === undefined || this.memberInfo.get(target)?.role !== 'voter') throw new RaftKvError(ErrorCode.TRANSFER_REJECTED, `${target ?? 'nobody'} is not a voter of the cluster`);
    this.transfers.push(target);
    this.leadTransferee = target;
    this.onTransfer(target);
    return target;
  }

  httpAddressOf(id: string): string | null {
    return this.memberInfo.get(id)?.httpAddress ?? null;
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
      leadTransferee: this.leadTransferee,
      confState: {
        voters: [...this.memberInfo].filter(([, m]) => m.role === 'voter').map(([id]) => id),
        learners: [...this.memberInfo].filter(([, m]) => m.role === 'learner').map(([id]) => id),
      },
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
