/**
 * docs/operations.md, "Losing a majority", as a test: two of three nodes lose their disks for
 * good; the survivor is recovered with `raftkv recover --force-new-cluster`, serves everything it
 * had applied, takes writes, and grows again by a new machine added as a learner.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { forceNewCluster, startCluster, startNode, type LocalCluster, type RaftKvNode } from '@raftkv/node';
import { ErrorCode, isRaftKvError, Role } from '@raftkv/raft';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRecoverArgs, runRecover, UsageError, type Output } from '../src/index.js';

const FAST = { tickMs: 20, electionTimeoutMs: 200, heartbeatIntervalMs: 20 } as const;
const KEYS = 1500;

function capture(): Output & { lines: string[] } {
  const lines: string[] = [];
  return { lines, out: (line) => void lines.push(line), err: (line) => void lines.push(line) };
}

async function waitFor<T>(what: string, probe: () => Promise<T | null> | T | null, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) expect.unreachable(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isRaftKvError(error) ? `${error.code}: ${error.message}` : `not a RaftKvError: ${String(error)}`;
  }
  return 'resolved';
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

describe('losing a majority for good: raftkv recover --force-new-cluster on the survivor', () => {
  it('starts alone, serves what it had applied, drops what was not committed, takes writes, and grows by a learner', async () => {
    const root = await mkdtemp(join(tmpdir(), 'raftkv-recover-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const cluster: LocalCluster = await startCluster({ nodes: 3, ...FAST, requestTimeoutMs: 1000, dataDir: root });
    cleanups.push(() => cluster.close());
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let k = next++; k < KEYS; k = next++) await cluster.put(`key/${k}`, `value-${k}`);
      }),
    );
    await cluster.delete('key/0');
    const leader = await cluster.leader();
    const survivor = leader;
    // Every node applied everything: the survivor's state is the cluster's.
    await waitFor('every node to apply the last write', () => (cluster.nodes.every((n) => n.status().appliedIndexKv === leader.status().commit) ? true : null));
    const before = await survivor.stateHash();

    // The other two machines die for good: their processes stop, their disks are destroyed.
    const lost = cluster.nodes.filter((n) => n !== survivor).map((n) => n.id);
    for (const id of lost) {
      await cluster.stopNode(id);
      await rm(join(root, id), { recursive: true, force: true });
    }
    // A write the survivor takes now cannot commit: if it still leads, the entry is in its log
    // only, past the commit index, and the recovery discards it.
    expect(await codeOf(survivor.put('never-committed', 'x'))).toMatch(/RAFTKV_(TIMEOUT|NOT_LEADER|PROPOSAL_DROPPED)/);
    const { lastIndex, commit } = survivor.status();
    await cluster.stopNode(survivor.id);

    // Without --force-new-cluster the command refuses to run.
    expect(() => parseRecoverArgs(['--data-dir', join(root, survivor.id)])).toThrow(UsageError);
    const out = capture();
    expect(await runRecover(parseRecoverArgs(['--force-new-cluster', '--data-dir', join(root, survivor.id)]), out)).toBe(0);
    const text = out.lines.join('\n');
    expect(out.lines[0]).toMatch(new RegExp(`^node ${survivor.id} is now the one member of the new cluster raftkv-recovered-[0-9a-f]{12} \\(was raftkv\\)$`));
    expect(text).toContain(`retired     ${[...lost].sort().join(', ')} (never to be added again under these ids)`);
    expect(text).toContain(`discarded   ${lastIndex - commit} (log entries past the commit index this node knew)`);
    expect((await readdir(join(root, survivor.id))).filter((name) => name.startsWith('log.before-recover-'))).toHaveLength(1);

    // It starts alone (its own entry only in its peers), elects itself, and serves.
    const alone = await startNode({ id: survivor.id, dataDir: join(root, survivor.id), members: [survivor.id], peers: {}, listen: { host: '127.0.0.1', port: 0 }, autoPromoteStableMs: 200, ...FAST });
    cleanups.push(() => alone.close());
    await waitFor('the survivor to lead', () => (alone.role === Role.Leader ? true : null));
    const st = alone.status();
    expect(st.confState).toEqual({ voters: [survivor.id], learners: [] });
    expect(st.clusterId).toMatch(/^raftkv-recovered-[0-9a-f]{12}$/);
    const after = await alone.stateHash();
    expect(after.stateHash).toBe(before.stateHash);
    expect(after.keyCount).toBe(KEYS - 1);
    expect(await alone.get('never-committed')).toBeNull();
    expect(new TextDecoder().decode((await alone.get('key/1234'))?.value)).toBe('value-1234');
    await alone.put('after-recovery', 'yes');

    // A running node's directory is refused: recover needs the node stopped.
    expect(await codeOf(forceNewCluster({ dataDir: join(root, survivor.id) }))).toMatch(/RAFTKV_INVALID_CONFIG: .* is in use by another process: stop the node first/);
    // The lost ids are retired: a new machine comes back under a new id.
    expect(await codeOf(alone.addLearner(lost[0]!, { peerAddress: '127.0.0.1:1' }))).toContain(ErrorCode.CONF_CHANGE_INVALID);

    // Grow again: a new machine joins the new cluster (its id) as a learner, and is promoted.
    const fresh: RaftKvNode = await startNode({ id: 'n4', dataDir: join(root, 'n4'), clusterId: st.clusterId, peers: { [survivor.id]: alone.peerAddress }, listen: { host: '127.0.0.1', port: 0 }, ...FAST });
    cleanups.push(() => fresh.close());
    alone.setPeers({ n4: fresh.peerAddress });
    await alone.addLearner('n4', { peerAddress: fresh.peerAddress, uid: fresh.identity.uid, autoPromote: true });
    await waitFor('n4 to become a voter', () => (alone.status().confState.voters.includes('n4') ? true : null));
    await alone.put('after-growth', 'yes');
    const settled = await waitFor('both to apply the same index', async () => {
      const [a, b] = await Promise.all([alone.stateHash({ consistency: 'stale' }), fresh.stateHash({ consistency: 'stale' })]);
      return a.index === b.index ? ([a, b] as const) : null;
    });
    expect(settled[1].stateHash).toBe(settled[0].stateHash);
    expect(settled[1].keyCount).toBe(KEYS + 1);
  });

  it('a directory that is not a node data directory is refused', async () => {
    const root = await mkdtemp(join(tmpdir(), 'raftkv-recover-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    expect(await codeOf(forceNewCluster({ dataDir: root }))).toContain(`${ErrorCode.INVALID_CONFIG}: ${root} is not a node's data directory`);
  });
});
