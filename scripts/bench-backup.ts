/**
 * Backup and restore times for a cluster of N keys (default 100,000), in one process over
 * loopback TCP and real LevelDB: the figures docs/operations.md quotes.
 *
 *   pnpm exec tsx --conditions=@raftkv/source scripts/bench-backup.ts [--keys N] [--value-bytes N]
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parseBackupArgs, runBackup } from '@raftkv/cli';
import { restoreDataDir, startCluster, startNode, verifyBackupFile, type RaftKvNode } from '@raftkv/node';
import { Role } from '@raftkv/raft';
import { createServer } from '@raftkv/server';

const { values } = parseArgs({ options: { keys: { type: 'string' }, 'value-bytes': { type: 'string' } } });
const KEYS = Number(values.keys ?? 100_000);
const VALUE_BYTES = Number(values['value-bytes'] ?? 100);
const WRITERS = 128;
const MEMBERS = ['n1', 'n2', 'n3'];

const seconds = (since: number): string => `${((performance.now() - since) / 1000).toFixed(2)} s`;
const rows: Array<[string, string]> = [];
const note = (what: string, value: string): void => {
  rows.push([what, value]);
  console.error(`${what}: ${value}`);
};

const root = await mkdtemp(join(tmpdir(), 'raftkv-bench-backup-'));
try {
  const cluster = await startCluster({ nodes: 3, dataDir: join(root, 'old') });
  const value = 'v'.repeat(VALUE_BYTES);
  let next = 0;
  let t = performance.now();
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      for (let k = next++; k < KEYS; k = next++) await cluster.put(`key/${String(k).padStart(7, '0')}`, value);
    }),
  );
  note(`write ${KEYS} keys of ${VALUE_BYTES} bytes (${WRITERS} writers)`, seconds(t));
  const leader = await cluster.leader();
  const follower = cluster.nodes.find((n) => n !== leader)!;

  t = performance.now();
  const hash = await follower.stateHash();
  note('state hash on a running node (GET /v1/state-hash)', seconds(t));

  const app = createServer({ node: follower, httpAddresses: {} });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const file = join(root, 'bench.rkvbackup');
  t = performance.now();
  await runBackup(parseBackupArgs(['--from', url, file]), { out: () => undefined, err: (line) => console.error(line) });
  note('raftkv backup (stream, fsync, verify, rename)', seconds(t));
  note('backup file size', `${((await stat(file)).size / 1024 / 1024).toFixed(1)} MiB`);
  t = performance.now();
  const info = await verifyBackupFile(file);
  note('raftkv backup inspect (verify the file)', seconds(t));
  if (info.metadata.stateHash !== hash.stateHash) throw new Error('the backup does not hold the state hashed just before');
  await app.close();
  await cluster.close();

  t = performance.now();
  for (const id of MEMBERS) await restoreDataDir({ file, dataDir: join(root, 'new', id), id, members: MEMBERS });
  note('raftkv restore, three members one after the other', seconds(t));

  t = performance.now();
  const nodes: RaftKvNode[] = [];
  for (const id of MEMBERS) nodes.push(await startNode({ id, dataDir: join(root, 'new', id), peers: {}, listen: { host: '127.0.0.1', port: 0 } }));
  const peers = Object.fromEntries(nodes.map((n) => [n.id, n.peerAddress]));
  for (const n of nodes) n.setPeers(peers);
  const known = (): boolean => nodes.some((n) => n.role === Role.Leader) && nodes.every((n) => n.leader !== null && n.leader === nodes[0]!.leader);
  while (!known()) await sleep(10);
  note('restored cluster: start three nodes and elect a leader', seconds(t));
  const hashes = await Promise.all(nodes.map((n) => n.stateHash({ consistency: 'stale' })));
  if (!hashes.every((h) => h.stateHash === info.metadata.stateHash)) throw new Error('a restored node does not hold the backup state hash');
  await Promise.all(nodes.map((n) => n.close()));

  console.log(`| step (${KEYS.toLocaleString('en')} keys, ${VALUE_BYTES}-byte values) | time |`);
  console.log('| --- | --- |');
  for (const [what, v] of rows) console.log(`| ${what} | ${v} |`);
} finally {
  await rm(root, { recursive: true, force: true });
}
