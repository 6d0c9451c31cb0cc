/**
 * docs/operations.md, "Back up and restore", as a test: a backup taken over HTTP from a running
 * cluster (real LevelDB, TCP, the CLI's own functions) is restored into a new three-node cluster
 * whose every node holds the backup's state hash, takes writes, and refuses the old cluster's
 * nodes; damaged files are refused before anything is written.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { restoredClusterId, startCluster, startNode, type LocalCluster, type RaftKvNode } from '@raftkv/node';
import { ErrorCode, isRaftKvError, Role } from '@raftkv/raft';
import { createServer } from '@raftkv/server';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBackupArgs, parseRestoreArgs, runBackup, runRestore, type Output } from '../src/index.js';

/** Short timeouts keep elections quick (as in the node tests). */
const FAST = { tickMs: 20, electionTimeoutMs: 200, heartbeatIntervalMs: 20 } as const;
const KEYS = 3000;
const WRITERS = 32;
const MEMBERS = ['n1', 'n2', 'n3'] as const;

function capture(): Output & { lines: string[]; text: () => string } {
  const lines: string[] = [];
  return { lines, out: (line) => void lines.push(line), err: (line) => void lines.push(line), text: () => lines.join('\n') };
}

/** A pino logger at warn that keeps every line, parsed. */
function recordingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
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

/** The state hash of every node once all have applied the same index, at least `indexMin` (writes stopped). */
async function settledHashes(nodes: readonly RaftKvNode[], indexMin: number): Promise<{ index: number; hashes: string[] }> {
  return waitFor(`every node to apply the same index, at least ${indexMin}`, async () => {
    const all = await Promise.all(nodes.map((n) => n.stateHash({ consistency: 'stale' })));
    const index = all[0]!.index;
    return index >= indexMin && all.every((h) => h.index === index) ? { index, hashes: all.map((h) => h.stateHash) } : null;
  });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isRaftKvError(error) ? `${error.code}: ${error.message}` : `not a RaftKvError: ${String(error)}`;
  }
  return 'resolved';
}

describe('back up a running cluster over HTTP, restore it as a new cluster', () => {
  let root: string;
  let old: LocalCluster;
  let app: ReturnType<typeof createServer>;
  let file: string;
  let backupLines: string[];
  let beforeBackup: { modIndex: number };
  let writtenDuring = 0;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'raftkv-backup-'));
    old = await startCluster({ nodes: 3, ...FAST, dataDir: join(root, 'old') });
    // Through the cluster, which retries on the next leader should an election happen under load.
    let next = 0;
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        for (let k = next++; k < KEYS; k = next++) await old.put(`key/${String(k).padStart(5, '0')}`, `value-${k}`);
      }),
    );
    for (let k = 0; k < KEYS; k += 10) await old.delete(`key/${String(k).padStart(5, '0')}`);
    await old.put('binary', new Uint8Array([0, 255, 7]), { session: { clientId: 'client-1', seq: 1 } });
    beforeBackup = await old.put('before-backup', 'acknowledged before the backup started');
    const leader = await old.leader();

    // Served by a follower: its read barrier asks the leader, and the leader is spared the stream.
    const follower = old.nodes.find((n) => n.id !== leader.id)!;
    app = createServer({ node: follower, httpAddresses: {} });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    file = join(root, 'cluster.rkvbackup');
    // Writes go on while the backup streams: the image is one point in time all the same.
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        await old.put(`during/${writtenDuring}`, 'x');
        writtenDuring++;
      }
    })();
    const out = capture();
    expect(await runBackup(parseBackupArgs(['--from', url, file]), out)).toBe(0);
    stop = true;
    await writer;
    backupLines = out.lines;
  });

  afterAll(async () => {
    await app?.close();
    await old?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it('the backup holds every write acknowledged before it started, and prints its metadata', async () => {
    const out = capture();
    expect(await runBackup(parseBackupArgs(['inspect', '--json', file]), out)).toBe(0);
    const info = JSON.parse(out.lines[0]!) as Record<string, unknown>;
    expect(info).toMatchObject({ formatVersion: 1, clusterId: 'raftkv', keyCount: expect.any(Number), voters: [...MEMBERS], learners: [] });
    expect(info['index']).toBeGreaterThanOrEqual(beforeBackup.modIndex);
    // Every key but the deleted tenth, plus binary and before-backup, plus whatever writes of the loop it caught.
    expect(info['keyCount']).toBeGreaterThanOrEqual(KEYS - KEYS / 10 + 2);
    expect(info['keyCount']).toBeLessThanOrEqual(KEYS - KEYS / 10 + 2 + writtenDuring);
    expect(backupLines[0]).toBe(`backup ${file} (verified)`);
    expect(backupLines.join('\n')).toContain(`state hash  ${String(info['stateHash'])}`);
    expect(backupLines.join('\n')).toMatch(/position {4}index \d+, term \d+/);
    // Nothing but the file itself is left next to it (the temporary file was renamed).
    expect(await readdir(root)).toEqual(expect.arrayContaining(['cluster.rkvbackup']));
    expect((await readdir(root)).filter((name) => name.includes('.partial-'))).toEqual([]);
    // A second backup never overwrites the first.
    const again = capture();
    const refused = await codeOf(runBackup(parseBackupArgs(['--from', `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, file]), again));
    expect(refused).toContain(`${ErrorCode.INVALID_CONFIG}: ${file} exists`);
  });

  it('restores into a new three-node cluster: the same state hash on every node, writes work, the old nodes are refused', async () => {
    const inspect = capture();
    await runBackup(parseBackupArgs(['inspect', '--json', file]), inspect);
    const meta = JSON.parse(inspect.lines[0]!) as { stateHash: string; index: number; term: number; sha256: string; keyCount: number };

    const dirs = Object.fromEntries(MEMBERS.map((id) => [id, join(root, 'new', id)]));
    for (const id of MEMBERS) {
      const out = capture();
      expect(await runRestore(parseRestoreArgs([file, '--data-dir', dirs[id]!, '--id', id, '--members', 'n3,n1,n2']), out), out.text()).toBe(0);
      expect(out.lines[0]).toContain(`restored node ${id} of the new cluster ${restoredClusterId('raftkv', meta.sha256, MEMBERS)}`);
    }
    // A restore never writes into a directory that holds anything.
    expect(await codeOf(runRestore(parseRestoreArgs([file, '--data-dir', dirs['n1']!, '--id', 'n1', '--members', 'n1,n2,n3']), capture()))).toContain(
      `${ErrorCode.INVALID_CONFIG}: ${dirs['n1']} is not empty`,
    );

    // Start each restored member as `raftkv start` does: the members it derives from --peers are
    // not read (the log is not empty), and no cluster id (the data directory holds it).
    const logs = Object.fromEntries(MEMBERS.map((id) => [id, recordingLogger()]));
    const started: RaftKvNode[] = [];
    try {
      for (const id of MEMBERS) {
        started.push(await startNode({ id, dataDir: dirs[id]!, members: [...MEMBERS], peers: {}, listen: { host: '127.0.0.1', port: 0 }, logger: logs[id]!.logger, ...FAST }));
      }
      const peers = Object.fromEntries(started.map((n) => [n.id, n.peerAddress]));
      for (const n of started) n.setPeers(peers);
      const leader = await waitFor('a leader of the new cluster', () => started.find((n) => n.role === Role.Leader) ?? null);

      const clusterId = restoredClusterId('raftkv', meta.sha256, MEMBERS);
      for (const n of started) {
        const st = n.status();
        expect(st.clusterId).toBe(clusterId);
        expect(st.confState).toEqual({ voters: [...MEMBERS], learners: [] });
        expect(st.firstIndex).toBe(meta.index + 1); // the log begins after the backup's snapshot
      }
      // The state hash on every node is the backup's, once the new leader's no-op (past the
      // backup's index) is applied everywhere: an entry that writes no key changes no hash.
      const settled = await settledHashes(started, meta.index + 1);
      expect(settled.hashes).toEqual(MEMBERS.map(() => meta.stateHash));
      expect((await leader.stateHash()).keyCount).toBe(meta.keyCount);

      // The data is there, sessions included, and the cluster takes writes.
      const follower = started.find((n) => n !== leader)!;
      expect(new TextDecoder().decode((await follower.get('before-backup'))?.value)).toBe('acknowledged before the backup started');
      expect((await follower.get('key/00010'))).toBeNull();
      expect(new TextDecoder().decode((await follower.get('key/00011'))?.value)).toBe('value-11');
      const retry = await leader.put('binary', 'a retry of an old session write', { session: { clientId: 'client-1', seq: 1 } });
      expect(retry.modIndex).toBeLessThanOrEqual(meta.index); // answered from the restored session: not applied again
      const written = await leader.put('after-restore', 'new');
      expect(written.modIndex).toBeGreaterThan(meta.index);
      expect(new TextDecoder().decode((await follower.get('after-restore'))?.value)).toBe('new');

      // A node of the old cluster dials a new node: the handshake is refused (another cluster id),
      // and the new cluster goes on as it was.
      const term = leader.status().term;
      const oldLeader = await old.leader();
      // Its follower of the same id is redirected to the new node: the old leader's heartbeats go there.
      const target = started.find((n) => n.id !== oldLeader.id)!;
      oldLeader.setPeers({ [target.id]: target.peerAddress });
      const refusal = await waitFor('the old leader to be refused', () =>
        logs[target.id]!.lines.find((l) => l['msg'] === 'transport: handshake refused, connection closed' && l['reason'] === 'cluster-mismatch') ?? null,
      );
      expect(refusal).toMatchObject({ clusterId: 'raftkv', from: oldLeader.id });
      expect(target.transport.stats().handshakesRejected).toBeGreaterThan(0);
      expect(leader.status().term).toBe(term);
      expect(leader.role).toBe(Role.Leader);
      await leader.put('still-writing', 'yes');
    } finally {
      await Promise.allSettled(started.map((n) => n.close()));
    }
  });

  it('a flipped byte anywhere, or a truncated file, is refused before anything is written', async () => {
    const original = await readFile(file);
    const size = original.byteLength;
    const target = join(root, 'target');
    await mkdir(target);
    const cases: Array<[string, Buffer]> = [];
    for (const [where, at] of [
      ['preamble', 3],
      ['image', Math.floor(size / 2)],
      ['metadata', size - 52 - 20],
      ['footer', size - 40],
      ['hash', size - 1],
    ] as const) {
      const damaged = Buffer.from(original);
      damaged[at]! ^= 0x10;
      cases.push([`a flipped byte in the ${where}`, damaged]);
    }
    cases.push(['a file cut in half', original.subarray(0, Math.floor(size / 2))]);
    cases.push(['a file one byte short', original.subarray(0, size - 1)]);
    for (const [what, bytes] of cases) {
      const damaged = join(root, 'damaged.rkvbackup');
      await writeFile(damaged, bytes);
      const out = capture();
      const failure = await codeOf(runRestore(parseRestoreArgs([damaged, '--data-dir', target, '--id', 'n1', '--members', 'n1,n2,n3']), out));
      expect(failure, what).toMatch(new RegExp(`^${ErrorCode.BACKUP_INVALID}: backup file ${damaged.replaceAll('/', '\\/')}: `));
      expect(failure, what).toMatch(/SHA-256|RAFTKVBK|RKVBKEND|truncated/);
      expect(await readdir(target), what).toEqual([]);
    }
    // An absent target stays absent.
    const absent = join(root, 'absent');
    await writeFile(join(root, 'damaged.rkvbackup'), original.subarray(0, size - 1));
    expect(await codeOf(runRestore(parseRestoreArgs([join(root, 'damaged.rkvbackup'), '--data-dir', absent, '--id', 'n1', '--members', 'n1']), capture()))).toContain(ErrorCode.BACKUP_INVALID);
    await expect(stat(absent)).rejects.toThrow(/ENOENT/);
  });
});
