import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError, Role } from '@raftkv/raft';
import { startCluster, type LocalCluster } from '../src/index.js';

const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));
// Short timeouts keep elections quick; the ratio is etcd's (heartbeat = election / 10).
const FAST = { tickMs: 20, electionTimeoutMs: 200, heartbeatIntervalMs: 20 } as const;

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return isRaftKvError(error) ? error.code : `not a RaftKvError: ${String(error)}`;
  }
  return undefined;
}

let cluster: LocalCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

describe('an embedded three-node cluster (startCluster)', () => {
  it('elects one leader; writes through it are readable from every node at every consistency level', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const leader = await cluster.leader();
    expect(cluster.nodes.filter((n) => n.role === Role.Leader)).toHaveLength(1);
    const { modIndex } = await leader.put('users/alice', 'v1');
    for (const node of cluster.nodes) {
      const item = await node.get('users/alice'); // linearizable, via ReadIndex even on followers
      expect(text(item?.value)).toBe('v1');
      expect(item?.modIndex).toBe(modIndex);
      expect(text((await node.get('users/alice', { consistency: 'lease' }))?.value)).toBe('v1');
    }
    // A stale read never goes through the leader; after a linearizable read it has caught up.
    for (const node of cluster.nodes) expect(text((await node.get('users/alice', { consistency: 'stale' }))?.value)).toBe('v1');
    expect(await leader.get('users/nobody')).toBeNull();
  });

  it('compare-and-set, delete and prefix scan', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const leader = await cluster.leader();
    const first = await leader.put('k', 'a');
    expect(await leader.cas('k', 'b', { modIndex: first.modIndex })).toMatchObject({ ok: true });
    expect(await leader.cas('k', 'c', { modIndex: first.modIndex })).toMatchObject({ ok: false, current: { modIndex: first.modIndex + 1 } });
    expect(await leader.cas('fresh', 'x', { absent: true })).toMatchObject({ ok: true });
    expect(await leader.cas('fresh', 'y', { absent: true })).toMatchObject({ ok: false });
    for (const key of ['dir/a', 'dir/b', 'dir/sub/c', 'other']) await leader.put(key, key);
    expect((await leader.scan('dir/')).map((i) => i.key)).toEqual(['dir/a', 'dir/b', 'dir/sub/c']);
    expect((await leader.scan('dir/', { limit: 2 })).map((i) => i.key)).toEqual(['dir/a', 'dir/b']);
    expect(await leader.delete('dir/a')).toMatchObject({ existed: true });
    expect(await leader.delete('dir/a')).toMatchObject({ existed: false });
    expect(await leader.get('dir/a')).toBeNull();
  });

  it('exactly-once: a retried write with the same session is applied once', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const leader = await cluster.leader();
    const session = { clientId: 'client-1', seq: 1 };
    const first = await leader.cas('once', 'x', { absent: true }, { session });
    const retry = await leader.cas('once', 'x', { absent: true }, { session });
    expect(first).toMatchObject({ ok: true });
    // Without the session the second CAS would fail (the key exists); with it, the first answer comes back.
    expect(retry).toEqual(first);
  });

  it('typed errors: a follower names the leader; limits and bad options are refused before proposing', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST, kvLimits: { valueBytesMax: 1024 } });
    const leader = await cluster.leader();
    const follower = cluster.nodes.find((n) => n !== leader)!;
    try {
      await follower.put('k', 'v');
      expect.unreachable('a follower accepted a write');
    } catch (error) {
      expect(isRaftKvError(error, ErrorCode.NOT_LEADER)).toBe(true);
      expect((error as { leaderHint: string }).leaderHint).toBe(leader.id);
    }
    expect(await codeOf(leader.put('k', new Uint8Array(1025)))).toBe(ErrorCode.VALUE_TOO_LARGE);
    expect(await codeOf(leader.put('', 'v'))).toBe(ErrorCode.KEY_INVALID);
    expect(await codeOf(leader.get('k', { consistency: 'sometimes' as 'stale' }))).toBe(ErrorCode.INVALID_CONFIG);
    // The refused requests left nothing behind.
    expect(await leader.get('k')).toBeNull();
  });

  it('a stopped leader is replaced; writes go on; it rejoins and catches up with its data', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const first = await cluster.leader();
    const acked: string[] = [];
    for (let k = 0; k < 20; k++) {
      await cluster.put(`before/${k}`, `v${k}`);
      acked.push(`before/${k}`);
    }
    await cluster.stopNode(first.id);
    const second = await cluster.leader();
    expect(second.id).not.toBe(first.id);
    for (let k = 0; k < 20; k++) {
      await cluster.put(`after/${k}`, `v${k}`);
      acked.push(`after/${k}`);
    }
    const back = await cluster.startNode(first.id);
    await cluster.leader();
    for (const key of acked) expect(text((await back.get(key))?.value), key).toBeDefined();
    expect(back.status().appliedIndexKv).toBe(second.status().appliedIndexKv);
  });

  it('leadership transfer moves the leader to the named node', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const leader = await cluster.leader();
    const target = cluster.nodes.find((n) => n !== leader)!;
    await leader.put('k', 'v');
    leader.transferLeadership(target.id);
    for (let k = 0; k < 200 && (await cluster.leader()).id !== target.id; k++) await new Promise((r) => setTimeout(r, 10));
    expect((await cluster.leader()).id).toBe(target.id);
    expect(text((await target.get('k'))?.value)).toBe('v');
  });

  it('a closed node fails pending and new requests with SHUTTING_DOWN, and closes only once', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST });
    const leader = await cluster.leader();
    const follower = cluster.nodes.find((n) => n !== leader)!;
    await leader.put('k', 'v');
    await cluster.stopNode(leader.id);
    expect(await codeOf(leader.put('k', 'v'))).toBe(ErrorCode.SHUTTING_DOWN);
    for (const consistency of ['linearizable', 'lease', 'stale'] as const) {
      expect(await codeOf(leader.get('k', { consistency }))).toBe(ErrorCode.SHUTTING_DOWN);
    }
    expect(() => leader.status()).toThrow(expect.objectContaining({ code: ErrorCode.SHUTTING_DOWN }));
    await leader.close(); // idempotent
    // A read pending on a follower when it closes settles too (it does not hang).
    const pending = follower.get('k');
    const closing = cluster.stopNode(follower.id);
    const code = await codeOf(pending);
    expect([undefined, ErrorCode.SHUTTING_DOWN, ErrorCode.NOT_LEADER, ErrorCode.TIMEOUT]).toContain(code);
    await closing;
  });

  it('read arguments are checked before any round trip; the cluster helper has cas', async () => {
    cluster = await startCluster({ nodes: 3, ...FAST, kvLimits: { scanCountMax: 100 } });
    const leader = await cluster.leader();
    for (const limit of [0, -1, 1.5, 101]) expect(await codeOf(leader.scan('a/', { limit }))).toBe(ErrorCode.INVALID_CONFIG);
    expect(await codeOf(leader.get(''))).toBe(ErrorCode.KEY_INVALID);
    expect(await cluster.cas('c', 'v', { absent: true })).toMatchObject({ ok: true });
    expect(await cluster.cas('c', 'w', { absent: true })).toMatchObject({ ok: false });
  });
});
