import { randomUUID } from 'node:crypto';
import { startCluster, type RoleChange } from '@raftkv/node';
import type { NodeId } from '@raftkv/raft';
import { withLeaderRetry } from './retry.js';

const text = (bytes: Uint8Array | undefined): string => new TextDecoder().decode(bytes);

// Three nodes in this process over loopback TCP, in a fresh temporary directory.
const cluster = await startCluster({ nodes: 3 });
try {
  const leader = await cluster.leader();
  console.log(`leader: ${leader.id}`);

  // A write resolves once a majority has it on disk and the leader has applied it.
  const { modIndex } = await leader.put('greeting', 'hello');
  const follower = cluster.nodes.find((n) => n !== leader)!;
  const item = await follower.get('greeting'); // linearizable, even on a follower
  console.log(`read on follower ${follower.id}: greeting = ${text(item?.value)}`);

  // Compare-and-set against the modification index the write returned.
  const first = await leader.cas('greeting', 'hi', { modIndex });
  const second = await leader.cas('greeting', 'hey', { modIndex });
  console.log(`cas: first ${first.ok ? 'ok' : 'refused'}, second ${second.ok ? 'ok' : 'refused'}`);

  for (const name of ['ada', 'bob', 'cy']) await leader.put(`users/${name}`, name);
  const users = await leader.scan('users/');
  console.log(`scan users/: ${users.map((u) => u.key).join(', ')}`);

  // Stop the leader; a survivor reports the new one through its 'leader' event.
  const elected = new Promise<RoleChange>((resolve) => {
    follower.on('leader', (change) => {
      if (change.leader !== null && change.leader !== leader.id) resolve(change);
    });
  });
  await cluster.stopNode(leader.id);

  // Until the election ends the survivors answer NOT_LEADER; withLeaderRetry waits it out.
  // The session makes the write exactly-once even if a retry repeats it.
  const session = { clientId: randomUUID(), seq: 1 };
  const nodeFor = (hint: NodeId | null) => cluster.nodes.find((n) => n.id === hint) ?? cluster.nodes[0]!;
  await withLeaderRetry(nodeFor, (node) => node.put('greeting', 'bonjour', { session }));
  const change = await elected;
  console.log(`stopped ${leader.id}; new leader ${change.leader} in term ${change.term}`);
  for (const node of cluster.nodes) console.log(`${node.id} reads greeting = ${text((await node.get('greeting'))?.value)}`);
} finally {
  await cluster.close(); // stops every node and removes the temporary directory
}
console.log('closed');
