import { startNode } from '@raftkv/node';

// One node per process. Every node gets the same members and peers; only `id` differs.
const peers = { n1: '127.0.0.1:7001', n2: '127.0.0.1:7002', n3: '127.0.0.1:7003' };
const id = process.argv[2] ?? 'n1';

const node = await startNode({ id, dataDir: `data/${id}`, members: Object.keys(peers), peers });
console.log(`${id} listening on ${node.peerAddress}`);

node.on('leader', ({ leader, term }) => console.log(`${id}: leader ${leader ?? 'unknown'} in term ${term}`));
// The node stops itself when a disk write or an apply fails; without a listener the process dies.
node.on('error', (error) => {
  console.error(`${id} stopped:`, error);
  process.exitCode = 1;
  void node.close();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void node.close());
