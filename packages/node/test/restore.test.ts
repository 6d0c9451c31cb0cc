import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backupStream, encodeCommand, encodeMemberInfo, openKvStateMachine } from '@raftkv/kv';
import { encodeConfChange, EntryType, ErrorCode, isRaftKvError, type Entry } from '@raftkv/raft';
import { openLevelLogStorage } from '@raftkv/storage';
import { forceNewCluster, restoreDataDir, restoredClusterId } from '../src/index.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-restore-'));
  dirs.push(dir);
  return dir;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isRaftKvError(error) ? `${error.code}: ${error.message}` : `not a RaftKvError: ${String(error)}`;
  }
  return 'resolved';
}

const put = (index: number, term: number, key: string, value = `v${index}`): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: encodeCommand({ type: 'put', key, value: new TextEncoder().encode(value) }),
});
const confEntry = (index: number, term: number, change: Parameters<typeof encodeConfChange>[0], context: Uint8Array = new Uint8Array(0)): Entry => ({
  index,
  term,
  type: EntryType.ConfChange,
  data: encodeConfChange(change, context),
});

/** A node's data directory: `entries` in the log (committed up to `commit`), the first `applied` of them applied. */
async function nodeDir(dir: string, entries: readonly Entry[], commit: number, applied: number): Promise<void> {
  const storage = await openLevelLogStorage(join(dir, 'log'), { voters: [], learners: [] });
  await storage.persist({ snapshot: null, entries, hardState: { term: entries[entries.length - 1]!.term, vote: 'n1', commit }, mustSync: true });
  await storage.setIdentity({ clusterId: 'prod', nodeId: 'n1', uid: 'uid-n1' });
  await storage.close();
  const kv = await openKvStateMachine(join(dir, 'kv'));
  await kv.apply(entries.slice(0, applied));
  await kv.close();
}

describe('forceNewCluster', () => {
  const history = [
    confEntry(1, 1, { type: 'bootstrap', voters: ['n1', 'n2', 'n3'] }),
    put(2, 2, 'a'),
    confEntry(3, 2, { type: 'add-learner', id: 'n4' }, encodeMemberInfo({ peer: '10.0.0.4:7001', http: null, uid: 'uid-n4', autoPromote: false })),
    put(4, 2, 'b'),
    put(5, 2, 'c'),
    put(6, 3, 'd'),
    put(7, 3, 'e'),
    put(8, 3, 'f'),
    confEntry(9, 3, { type: 'add-learner', id: 'n5' }),
    put(10, 3, 'never-committed'),
  ];

  it('applies what the log knows to be committed, discards the rest, and makes this node the only voter of a new cluster', async () => {
    const dir = await tempDir();
    await nodeDir(dir, history, 8, 5);
    const report = await forceNewCluster({ dataDir: dir, now: new Date('2025-05-06T07:08:09.000Z') });
    expect(report).toMatchObject({
      nodeId: 'n1',
      previousClusterId: 'prod',
      index: 8,
      term: 3,
      appliedFromLog: 3,
      discardedEntries: 2,
      // The members of the configuration (n4 a learner), and n5, named by an uncommitted change.
      retired: ['n2', 'n3', 'n4', 'n5'],
      previousLog: join(dir, 'log.before-recover-2025-05-06T07-08-09-000Z'),
      resumed: false,
    });
    expect(report.clusterId).toMatch(/^prod-recovered-[0-9a-f]{12}$/);

    const kv = await openKvStateMachine(join(dir, 'kv'));
    expect(kv.appliedIndex).toBe(8);
    expect(kv.confState).toEqual({ voters: ['n1'], learners: [] });
    expect((await kv.scan('', 100)).map((i) => i.key)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    const { members, removed } = await kv.members();
    expect(members.size).toBe(0); // n4's addresses do not survive into the new cluster's address book
    expect([...removed].sort()).toEqual(['n2', 'n3', 'n4', 'n5']);
    await kv.close();

    const log = await openLevelLogStorage(join(dir, 'log'), { voters: [], learners: [] });
    expect(log.snapshot().meta).toEqual({ index: 8, term: 3, confState: { voters: ['n1'], learners: [] } });
    expect(log.hardState()).toEqual({ term: 3, vote: 'n1', commit: 8 });
    expect([log.firstIndex(), log.lastIndex()]).toEqual([9, 8]);
    expect(log.identity()).toEqual({ clusterId: report.clusterId, nodeId: 'n1', uid: 'uid-n1' });
    expect(log.peerIdentities().size).toBe(0);
    await log.close();
    // The old log is kept whole, for diagnosis.
    const old = await openLevelLogStorage(report.previousLog, { voters: [], learners: [] });
    expect(old.lastIndex()).toBe(10);
    await old.close();
  });

  it('a run interrupted between its two renames is finished by running it again; an explicit cluster id must be new', async () => {
    const dir = await tempDir();
    await nodeDir(dir, history, 8, 8);
    expect(await codeOf(forceNewCluster({ dataDir: dir, clusterId: 'prod' }))).toContain(`${ErrorCode.INVALID_CONFIG}: the recovered cluster needs a new, non-empty cluster id`);
    const first = await forceNewCluster({ dataDir: dir, clusterId: 'prod-2' });
    expect(first).toMatchObject({ clusterId: 'prod-2', appliedFromLog: 0, index: 8 });
    // The state a crash after the first rename leaves: no log, the new one complete beside it.
    await rename(join(dir, 'log'), join(dir, 'log.recover-new'));
    const resumed = await forceNewCluster({ dataDir: dir });
    expect(resumed).toMatchObject({ resumed: true, clusterId: 'prod-2', previousClusterId: 'prod', index: 8, previousLog: first.previousLog });
    expect((await readdir(dir)).sort()).toEqual(['kv', 'log', 'log.before-recover-' + first.previousLog.split('log.before-recover-')[1]]);
    // Recovering the recovered node again is allowed, and its id does not grow a second suffix.
    const again = await forceNewCluster({ dataDir: dir });
    expect(again.clusterId).toMatch(/^prod-2-recovered-[0-9a-f]{12}$/);
    expect(again.retired).toEqual([]);
  });

  it('refuses a state machine behind the log (its entries are gone) and a directory without a log', async () => {
    const dir = await tempDir();
    await nodeDir(dir, history, 8, 8);
    const log = await openLevelLogStorage(join(dir, 'log'), { voters: [], learners: [] });
    await log.compact({ index: 6, term: 3, confState: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } }, new Uint8Array(0));
    await log.close();
    await rm(join(dir, 'kv'), { recursive: true });
    await mkdir(join(dir, 'kv'));
    expect(await codeOf(forceNewCluster({ dataDir: dir }))).toContain(`${ErrorCode.STORAGE_CORRUPT}: the state machine has applied up to index 0, but the log begins after index 6`);
    expect((await readdir(dir)).sort()).toEqual(['kv', 'log']);
  });
});

describe('restoreDataDir', () => {
  /** A backup file of a state machine at index 4, taken from cluster "prod". */
  async function backupFile(dir: string): Promise<string> {
    const kv = await openKvStateMachine(join(dir, 'source'));
    await kv.apply([
      confEntry(1, 1, { type: 'bootstrap', voters: ['a', 'b', 'c'] }),
      confEntry(2, 2, { type: 'add-learner', id: 'd' }, encodeMemberInfo({ peer: '10.0.0.9:7001', http: null, uid: 'x', autoPromote: false })),
      confEntry(3, 2, { type: 'remove', id: 'c' }),
      put(4, 2, 'k'),
    ]);
    const chunks: Uint8Array[] = [];
    for await (const chunk of backupStream(await kv.exportSnapshot(), { clusterId: 'prod', nodeId: 'a' }, new Date())) chunks.push(chunk);
    await kv.close();
    const file = join(dir, 'b.rkvbackup');
    await writeFile(file, Buffer.concat(chunks));
    return file;
  }

  it("builds a member whose kv, log and identity all name the new configuration; the old cluster's member records are gone", async () => {
    const dir = await tempDir();
    const file = await backupFile(dir);
    const report = await restoreDataDir({ file, dataDir: join(dir, 'n2'), id: 'n2', members: ['n3', 'n1', 'n2'] });
    expect(report).toMatchObject({ nodeId: 'n2', members: ['n1', 'n2', 'n3'], index: 4, term: 2 });
    expect(report.clusterId).toBe(restoredClusterId('prod', report.sha256, ['n1', 'n2', 'n3']));
    expect(report.clusterId).toMatch(/^prod-restored-[0-9a-f]{12}$/);
    expect((await readdir(join(dir, 'n2'))).sort()).toEqual(['kv', 'log']);

    const kv = await openKvStateMachine(join(dir, 'n2', 'kv'));
    expect([kv.appliedIndex, kv.appliedTerm]).toEqual([4, 2]);
    expect(kv.confState).toEqual({ voters: ['n1', 'n2', 'n3'], learners: [] });
    const { members, removed } = await kv.members();
    expect([members.size, removed.size]).toEqual([0, 0]);
    expect(new TextDecoder().decode((await kv.get('k'))?.value)).toBe('v4');
    await kv.close();
    const log = await openLevelLogStorage(join(dir, 'n2', 'log'), { voters: [], learners: [] });
    expect(log.snapshot().meta).toEqual({ index: 4, term: 2, confState: { voters: ['n1', 'n2', 'n3'], learners: [] } });
    expect(log.hardState()).toEqual({ term: 2, vote: null, commit: 4 });
    expect(log.identity()).toMatchObject({ clusterId: report.clusterId, nodeId: 'n2' });
    await log.close();
  });

  it('derives one cluster id per file and member list; refuses the source id, a non-empty directory and an id outside the members', async () => {
    const dir = await tempDir();
    const file = await backupFile(dir);
    const one = await restoreDataDir({ file, dataDir: join(dir, 'x1'), id: 'n1', members: ['n1', 'n2', 'n3'] });
    const same = await restoreDataDir({ file, dataDir: join(dir, 'x2'), id: 'n3', members: ['n3', 'n2', 'n1'] });
    const other = await restoreDataDir({ file, dataDir: join(dir, 'x3'), id: 'n1', members: ['n1', 'n2'] });
    expect(same.clusterId).toBe(one.clusterId);
    expect(other.clusterId).not.toBe(one.clusterId);
    const named = await restoreDataDir({ file, dataDir: join(dir, 'x4'), id: 'n1', members: ['n1'], clusterId: 'staging-copy' });
    expect(named.clusterId).toBe('staging-copy');

    expect(await codeOf(restoreDataDir({ file, dataDir: join(dir, 'y'), id: 'n1', members: ['n1'], clusterId: 'prod' }))).toContain('is the id of the cluster the backup was taken from');
    expect(await codeOf(restoreDataDir({ file, dataDir: join(dir, 'x1'), id: 'n1', members: ['n1'] }))).toContain('is not empty (it holds kv, log)');
    expect(await codeOf(restoreDataDir({ file, dataDir: join(dir, 'y'), id: 'n9', members: ['n1', 'n2'] }))).toContain('node n9 is not one of the members [n1, n2]');
    expect(await codeOf(restoreDataDir({ file, dataDir: join(dir, 'y'), id: 'n1', members: ['n1', 'n1'] }))).toContain('name a node twice');
    expect((await readdir(dir)).includes('y')).toBe(false);
  });
});
