import { setTimeout as sleep } from 'node:timers/promises';
import { startCluster, type RaftKvNode } from '@raftkv/node';
import { Role } from '@raftkv/raft';
import { checkLinearizable, type Operation } from '@raftkv/testing';
import { localClusterTarget, Nemesis, ProxyNetwork } from '@raftkv/testing/nemesis';
import { expect, it, onTestFinished } from 'vitest';

/** Polls until `find` returns something, for at most 10 s. */
async function eventually<T>(what: string, find: () => T | undefined | false): Promise<T> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(20)) {
    const found = find();
    if (found !== undefined && found !== false) return found;
  }
  throw new Error(`timed out waiting for ${what}`);
}

it('an isolated leader loses its leadership, and no acknowledged write', async () => {
  // Every link between the nodes goes through its own proxy, which the nemesis can cut.
  const network = await ProxyNetwork.start({ nodes: ['n1', 'n2', 'n3'], channels: ['raft'] });
  onTestFinished(() => network.close());
  const cluster = await startCluster({
    nodes: 3,
    tickMs: 20,
    electionTimeoutMs: 300,
    heartbeatIntervalMs: 20,
    requestTimeoutMs: 1_000,
    peerAddress: network.router(),
  });
  onTestFinished(() => cluster.close());
  const nemesis = new Nemesis(localClusterTarget(cluster, network), { seed: 7 });

  // Record what each call returned and when, for the linearizability checker.
  const history: Operation[] = [];
  const write = async (node: RaftKvNode, key: string, value: string): Promise<void> => {
    const invoke = performance.now();
    await node.put(key, value);
    history.push({ id: history.length, clientId: node.id, key, kind: 'write', value, invoke, complete: performance.now() });
  };
  const read = async (node: RaftKvNode, key: string): Promise<string | null> => {
    const invoke = performance.now();
    const item = await node.get(key); // linearizable by default
    const output = item === null ? null : Buffer.from(item.value).toString('utf8');
    history.push({ id: history.length, clientId: node.id, key, kind: 'read', output, invoke, complete: performance.now() });
    return output;
  };

  const oldLeader = await cluster.leader();
  await write(oldLeader, 'x', 'before');

  await nemesis.isolate(oldLeader.id); // both directions of its links, dropped silently
  const newLeader = await eventually('a new leader', () => cluster.nodes.find((n) => n.id !== oldLeader.id && n.role === Role.Leader));
  await write(newLeader, 'x', 'during');

  // The old leader cannot confirm it still leads, so it serves no linearizable read...
  await expect(oldLeader.get('x')).rejects.toThrow();
  // ...but a stale read, served from its own state, shows the old value.
  const stale = await oldLeader.get('x', { consistency: 'stale' });
  expect(Buffer.from(stale!.value).toString('utf8')).toBe('before');

  await nemesis.healAll();
  await eventually('the old leader to follow', () => oldLeader.role === Role.Follower && oldLeader.leader === newLeader.id);
  expect(await read(oldLeader, 'x')).toBe('during');
  expect(checkLinearizable(history).result).toBe('ok');
});
