/**
 * End to end: the membership procedures of docs/operations.md, run as written there (`raftkv
 * start`, `raftkv member`, `raftkv leader`, each a real process), against founding members that
 * are `raftkv start` processes too. The doc's example hosts 10.0.0.<k> become local ports.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  agreedLeader,
  expectReadable,
  getJson,
  Hosts,
  logLines,
  procedure,
  Processes,
  waitFor,
  Writer,
  writeAll,
  type MembersJson,
  type Started,
  type StatusJson,
} from './membership-support.js';

/**
 * Shorter than the defaults, but not the 200 ms of the other process tests: up to five nodes and
 * the commands' own start-up share two cores here, and no step waits for an election anyway
 * (the dead machine is a follower). An election the load caused would break the check that the
 * wiped node leaves the leader and its term alone.
 */
const FAST = ['--tick-ms', '50', '--election-timeout-ms', '500', '--heartbeat-interval-ms', '50'];
/** Compact often and keep little below it, so that a new member catches up by snapshot. */
const SNAPSHOTS = ['--snapshot-every', '100', '--snapshot-catchup', '20'];
/** Every node gets these besides what the docs say (timing is not the procedures' business). */
const NODE_EXTRA = [...FAST, ...SNAPSHOTS];
const CLUSTER_ID = 'prod-kv';
/** A new member is a voter once it has kept up for 2 s (autoPromoteStableMs); catching up comes first. */
const PROMOTION_TIMEOUT_MS = 60_000;

/** The procedures as the test runs them; the test fails if docs/operations.md says otherwise. */
const REPLACE = [
  'raftkv member list --endpoints http://10.0.0.1:8001,http://10.0.0.2:8001',
  'raftkv member remove n3 --endpoints http://10.0.0.1:8001,http://10.0.0.2:8001',
  'raftkv start --id n4 --data-dir /var/lib/raftkv --peer-addr 10.0.0.4:7001 --http-addr 10.0.0.4:8001 --cluster-id prod-kv --join http://10.0.0.1:8001,http://10.0.0.2:8001',
  'raftkv member list --endpoints http://10.0.0.1:8001,http://10.0.0.2:8001',
];
const GROW_AND_SHRINK = [
  'raftkv start --id n4 --data-dir /var/lib/raftkv --peer-addr 10.0.0.4:7001 --http-addr 10.0.0.4:8001 --cluster-id prod-kv --join http://10.0.0.1:8001,http://10.0.0.2:8001',
  'raftkv member list --endpoints http://10.0.0.1:8001',
  'raftkv start --id n5 --data-dir /var/lib/raftkv --peer-addr 10.0.0.5:7001 --http-addr 10.0.0.5:8001 --cluster-id prod-kv --join http://10.0.0.1:8001,http://10.0.0.2:8001',
  'raftkv member list --endpoints http://10.0.0.1:8001',
  'raftkv member remove n5 --endpoints http://10.0.0.1:8001',
  'raftkv member remove n4 --endpoints http://10.0.0.1:8001',
];
const HAND_OVER = ['raftkv leader transfer --to n2 --endpoints http://10.0.0.1:8001', 'raftkv leader transfer --endpoints http://10.0.0.1:8001'];
const ADD_BY_HAND = [
  'raftkv start --id n4 --data-dir /var/lib/raftkv --peer-addr 10.0.0.4:7001 --http-addr 10.0.0.4:8001 --cluster-id prod-kv --join http://10.0.0.1:8001 --wait-to-be-added',
  'raftkv member add-learner n4 --peer-address 10.0.0.4:7001 --http-address http://10.0.0.4:8001 --endpoints http://10.0.0.1:8001',
  'raftkv member promote n4 --endpoints http://10.0.0.1:8001',
  'raftkv start --id n5 --data-dir /var/lib/raftkv --peer-addr 10.0.0.5:7001 --http-addr 10.0.0.5:8001 --cluster-id prod-kv --join http://10.0.0.1:8001 --wait-to-be-added',
  'raftkv member add n5 --peer-address 10.0.0.5:7001 --http-address http://10.0.0.5:8001 --endpoints http://10.0.0.1:8001',
];

const processes = new Processes();
const dirsToRemove: string[] = [];

afterEach(async () => {
  await processes.stopAll();
  for (const dir of dirsToRemove.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A test's machines: local ports for hosts 10.0.0.1.., a data directory per node id. */
async function machines(count: number): Promise<{ hosts: Hosts; dataDir: (id: string) => string }> {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-members-'));
  dirsToRemove.push(dir);
  return { hosts: await Hosts.allocate(count), dataDir: (id) => join(dir, id) };
}

/** The founding command of node n<k> of three (the docs' three hosts, as flags). */
function foundingArgs(hosts: Hosts, dataDir: (id: string) => string, k: number): string[] {
  const ids = [1, 2, 3];
  const peers = ids.map((i) => `n${i}=${hosts.peer(i)}`).join(',');
  const httpPeers = ids.map((i) => `n${i}=${hosts.url(i)}`).join(',');
  return ['start', '--id', `n${k}`, '--data-dir', dataDir(`n${k}`), '--peers', peers, '--http-peers', httpPeers, '--cluster-id', CLUSTER_ID, ...NODE_EXTRA];
}

/** Starts n1..n3 and waits until they agree on a leader. */
async function foundCluster(hosts: Hosts, dataDir: (id: string) => string): Promise<Map<string, Started>> {
  const nodes = new Map<string, Started>();
  for (const k of [1, 2, 3]) nodes.set(`n${k}`, processes.raftkv(foundingArgs(hosts, dataDir, k)));
  await agreedLeader([1, 2, 3].map((k) => hosts.url(k)), 30_000);
  return nodes;
}

/** Runs a command of the docs; fails the test (with its output) unless it exits `code`. */
async function runDoc(hosts: Hosts, dataDir: (id: string) => string, command: string, code = 0): Promise<{ stdout: string; stderr: string }> {
  const result = await processes.run(hosts.localize(command, dataDir));
  expect(result.code, `${command}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(code);
  return result;
}

/** Starts a node with a command of the docs (plus the test's timing flags). */
function startDoc(hosts: Hosts, dataDir: (id: string) => string, command: string): Started {
  return processes.raftkv([...hosts.localize(command, dataDir), ...NODE_EXTRA]);
}

/** A row of the member table: `<id>  <role>  ...`. */
function tableRow(output: string, id: string): string | undefined {
  return output.split('\n').find((line) => line.startsWith(`${id} `));
}

async function membersAt(url: string): Promise<MembersJson> {
  return getJson<MembersJson>(`${url}/v1/members`);
}

function roleOf(view: MembersJson, id: string): string | null {
  return view.members.find((m) => m.id === id)?.role ?? null;
}

/** Moves leadership to `to` over HTTP (test setup, not a procedure step). */
async function moveLeader(url: string, to: string): Promise<void> {
  await waitFor(`leadership moved to ${to}`, async () => ((await fetch(`${url}/v1/leader/transfer?to=${to}`, { method: 'POST' })).status === 200 ? true : null), 20_000);
}

function context(nodes: ReadonlyMap<string, Started>): () => string {
  return () => [...nodes].map(([id, s]) => `--- ${id} (pid ${s.pid}) stderr:\n${s.stderr.join('\n')}\n--- stdout (last 15):\n${s.stdout.slice(-15).join('\n')}`).join('\n');
}

describe('docs/operations.md procedures, run as written', () => {
  it('Replace a machine: remove the dead member, join a new machine under a new id; it catches up by snapshot and is promoted while writes go on; the old id stays out', async () => {
    expect(await procedure('replace-a-machine')).toEqual(REPLACE);
    const { hosts, dataDir } = await machines(4);
    const nodes = await foundCluster(hosts, dataDir);
    const show = context(nodes);
    // The docs' dead machine is n3: make sure it is a follower (killing a leader is another story).
    if ((await agreedLeader([1, 2, 3].map((k) => hosts.url(k)))).id === 'n3') await moveLeader(hosts.url(1), 'n1');
    const acked = new Map<string, string>();
    await writeAll(hosts.url(1), Array.from({ length: 200 }, (_, k) => [`before/${k}`, `b${k}`] as [string, string]), acked);

    const writer = new Writer([hosts.url(1), hosts.url(2)], 'w/');
    try {
      // The machine dies, and its disk with it.
      await processes.stop(nodes.get('n3')!, 'SIGKILL');
      await rm(dataDir('n3'), { recursive: true, force: true });

      const list = await runDoc(hosts, dataDir, REPLACE[0]!);
      expect(tableRow(list.stdout, 'n3')).toMatch(/^n3 +voter/);
      const removed = await runDoc(hosts, dataDir, REPLACE[1]!);
      expect(tableRow(removed.stdout, 'n3')).toBeUndefined();
      expect(removed.stderr).toContain('n3 removed');

      const n4 = startDoc(hosts, dataDir, REPLACE[2]!);
      nodes.set('n4', n4);
      await waitFor('n4 a voter', async () => (roleOf(await membersAt(hosts.url(1)), 'n4') === 'voter' ? true : null), PROMOTION_TIMEOUT_MS, show);
      const after = await runDoc(hosts, dataDir, REPLACE[3]!);
      expect(tableRow(after.stdout, 'n4')).toMatch(/^n4 +voter/);
      expect(after.stdout.split('\n').filter((l) => / voter /.test(l))).toHaveLength(3);
      // A few more writes with n4 voting: they need two of n1, n2, n4.
      const settled = writer.acked.size;
      await waitFor('writes acknowledged with n4 voting', () => (writer.acked.size >= settled + 50 ? true : null), 20_000, show);
    } finally {
      await writer.stop();
    }
    for (const [key, value] of writer.acked) acked.set(key, value);
    console.log(
      `replace a machine: ${writer.acked.size} writes acknowledged during the procedure, ${writer.failures} failed ${JSON.stringify(Object.fromEntries(writer.failureCodes))}, longest time without an acknowledged write ${Math.round(writer.longestGapMs)} ms`,
    );
    expect(writer.longestGapMs, 'longest time without an acknowledged write').toBeLessThan(5_000);

    // n4 caught up from a snapshot of the leader's state machine, not from the log.
    const n4 = nodes.get('n4')!;
    const n4Log = logLines(n4).map((l) => l['msg']);
    expect(n4Log, show()).toEqual(expect.arrayContaining(['learned the cluster to join', 'added to the cluster as a learner', 'receiving snapshot', 'snapshot installed']));
    expect(n4.stderr.join('\n')).toContain('raftkv node n4: added to the cluster as a learner');
    // Every acknowledged write, read on the new machine (linearizable: confirmed with the leader).
    await expectReadable(hosts.url(4), acked);

    // The old id on a wiped directory, started exactly as it was founded: its peers refuse it.
    const live = [1, 2, 4].map((k) => hosts.url(k));
    const before = await agreedLeader(live);
    const ghost = processes.raftkv(foundingArgs(hosts, dataDir, 3));
    nodes.set('n3 (wiped)', ghost);
    const refusals = (): Record<string, unknown>[] =>
      ['n1', 'n2'].flatMap((id) => logLines(nodes.get(id)!)).filter((l) => l['reason'] === 'identity-mismatch' && l['from'] === 'n3');
    // It keeps trying (it campaigns, and redials with back-off): wait for a few refusals.
    await waitFor('peers refusing the wiped n3 (identity-mismatch) again and again', () => (refusals().length >= 5 ? true : null), 20_000, show);
    expect(refusals()[0]).toMatchObject({ msg: 'transport: handshake refused, connection closed', code: 'RAFTKV_PEER_REJECTED' });
    // Meanwhile the cluster kept its leader and term, and commits without it.
    await writeAll(hosts.url(2), [['after/ghost', 'still-writing']], acked);
    const later = await agreedLeader(live);
    expect({ leader: later.id, term: later.term }).toEqual({ leader: before.id, term: before.term });
    expect(later.commit).toBeGreaterThan(before.commit);
    const ghostStatus = await getJson<StatusJson>(`${hosts.url(3)}/v1/status`);
    expect(ghostStatus.leader, 'the wiped n3 hears from no leader').toBeNull();
    expect(ghostStatus.commit).toBeLessThan(later.commit);
    expect((await membersAt(hosts.url(1))).members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n4']);
    await processes.stop(ghost, 'SIGKILL');

    // Nor does it come back by joining: a removed id is refused for good, and the refused start
    // leaves the data directory as empty as it found it.
    await rm(dataDir('n3'), { recursive: true, force: true });
    const rejoin = await processes.run(hosts.localize(REPLACE[2]!.replace('--id n4', '--id n3').replaceAll('10.0.0.4', '10.0.0.3'), dataDir).concat(NODE_EXTRA));
    expect(rejoin.code, rejoin.stderr).toBe(1);
    expect(rejoin.stderr).toMatch(/^raftkv: JoinError: the cluster refused to add n3: RAFTKV_CONF_CHANGE_INVALID: n3 was removed from this cluster/m);
    expect(await readdir(dataDir('n3'))).toEqual([]);
  }, 240_000);

  it('Grow and shrink: 3 → 5 with raftkv start --join twice, then → 3 with raftkv member remove twice, without a restart', async () => {
    expect(await procedure('grow-and-shrink')).toEqual(GROW_AND_SHRINK);
    const { hosts, dataDir } = await machines(5);
    const nodes = await foundCluster(hosts, dataDir);
    const show = context(nodes);
    const acked = new Map<string, string>();
    await writeAll(hosts.url(2), Array.from({ length: 300 }, (_, k) => [`grow/${k}`, `g${k}`] as [string, string]), acked);

    for (const [start, list, id] of [[0, 1, 'n4'], [2, 3, 'n5']] as const) {
      nodes.set(id, startDoc(hosts, dataDir, GROW_AND_SHRINK[start]!));
      await waitFor(`${id} a voter`, async () => (roleOf(await membersAt(hosts.url(1)), id) === 'voter' ? true : null), PROMOTION_TIMEOUT_MS, show);
      expect(tableRow((await runDoc(hosts, dataDir, GROW_AND_SHRINK[list]!)).stdout, id)).toMatch(new RegExp(`^${id} +voter`));
    }
    const five = await membersAt(hosts.url(5));
    expect(five.members.map((m) => `${m.id}:${m.role}`).sort()).toEqual(['n1:voter', 'n2:voter', 'n3:voter', 'n4:voter', 'n5:voter']);
    // Five voters serve: a write through n5 (forwarded to the leader), read through n4.
    await writeAll(hosts.url(5), [['grow/five', 'five']], acked);
    await expectReadable(hosts.url(4), acked);

    for (const [step, id] of [[4, 'n5'], [5, 'n4']] as const) {
      const removed = await runDoc(hosts, dataDir, GROW_AND_SHRINK[step]!);
      expect(tableRow(removed.stdout, id)).toBeUndefined();
    }
    const three = await membersAt(hosts.url(1));
    expect(three.members.map((m) => `${m.id}:${m.role}`).sort()).toEqual(['n1:voter', 'n2:voter', 'n3:voter']);
    // The removed machines stop cleanly; the founding members were never restarted.
    for (const id of ['n4', 'n5']) expect(await processes.stop(nodes.get(id)!, 'SIGTERM'), show()).toEqual({ code: 0, signal: null });
    for (const id of ['n1', 'n2', 'n3']) expect(nodes.get(id)!.child.exitCode, `${id} exited`).toBeNull();
    await writeAll(hosts.url(3), [['shrink/three', 'three']], acked);
    await expectReadable(hosts.url(1), acked);
  }, 240_000);

  it('Hand leadership over, member list -o json, and adding nodes by hand: add-learner, promote, add', async () => {
    expect(await procedure('hand-leadership-over')).toEqual(HAND_OVER);
    expect(await procedure('add-by-hand')).toEqual(ADD_BY_HAND);
    const { hosts, dataDir } = await machines(5);
    const nodes = await foundCluster(hosts, dataDir);
    const show = context(nodes);
    const founders = [1, 2, 3].map((k) => hosts.url(k));

    // member list -o json through a follower: the leader's view, every field of every member.
    const leader = await agreedLeader(founders);
    const follower = [1, 2, 3].find((k) => `n${k}` !== leader.id)!;
    const listed = await processes.run(['member', 'list', '-o', 'json', '--endpoints', hosts.url(follower)]);
    expect(listed.code, listed.stderr).toBe(0);
    const view = JSON.parse(listed.stdout) as MembersJson;
    expect(['n1', 'n2', 'n3']).toContain(view.leader);
    expect(view.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
    for (const m of view.members) {
      expect(Object.keys(m).sort()).toEqual(['autoPromote', 'httpAddress', 'id', 'isLeader', 'lag', 'match', 'peerAddress', 'replication', 'role']);
      const k = Number(m.id.slice(1));
      expect(m).toMatchObject({ role: 'voter', peerAddress: hosts.peer(k), httpAddress: hosts.url(k), isLeader: m.id === view.leader, autoPromote: false, replication: 'replicate' });
      expect(m.match).toBeGreaterThan(0);
      expect(m.lag).toBeGreaterThanOrEqual(0);
    }

    // Hand leadership over to n2 (away from it first, if it leads already), then to whoever is best.
    if ((await agreedLeader(founders)).id === 'n2') await moveLeader(hosts.url(1), 'n1');
    const from = (await agreedLeader(founders)).id;
    const toN2 = await runDoc(hosts, dataDir, HAND_OVER[0]!);
    expect(toN2.stdout.split('\n')).toEqual(['FROM  TO  LEADER', `${from}    n2  n2`]);
    expect((await agreedLeader(founders)).id).toBe('n2');
    const onward = await runDoc(hosts, dataDir, HAND_OVER[1]!);
    expect(onward.stdout).toMatch(/^n2 +(n1|n3) +\1$/m);
    expect((await agreedLeader(founders)).id).not.toBe('n2');
    const refused = await processes.run(['leader', 'transfer', '--to', 'n9', '--endpoints', hosts.url(1)]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('RAFTKV_TRANSFER_REJECTED: n9 is not a voter of the cluster');

    // n4 waits to be added; added as a learner, it catches up and stays one until promoted.
    const n4 = startDoc(hosts, dataDir, ADD_BY_HAND[0]!);
    nodes.set('n4', n4);
    await waitFor('n4 waiting to be added', () => (n4.stderr.some((l) => l.includes('raftkv node n4: waiting to be added')) ? true : null), 30_000, show);
    const learner = await runDoc(hosts, dataDir, ADD_BY_HAND[1]!);
    expect(tableRow(learner.stdout, 'n4')).toMatch(/^n4 +learner +127\.0\.0\.1:\d+ +http:\/\/127\.0\.0\.1:\d+ +no /);
    await waitFor(
      'n4 caught up',
      async () => {
        const m = (await membersAt(hosts.url(1))).members.find((x) => x.id === 'n4');
        return m?.replication === 'replicate' && m.lag !== null && m.lag <= 10 ? m : null;
      },
      30_000,
      show,
    );
    expect(roleOf(await membersAt(hosts.url(1)), 'n4'), 'a learner added without auto-promotion stays one').toBe('learner');
    const promoted = await runDoc(hosts, dataDir, ADD_BY_HAND[2]!);
    expect(tableRow(promoted.stdout, 'n4')).toMatch(/^n4 +voter/);

    // n5 waits too; member add makes it a voter and waits for that.
    const n5 = startDoc(hosts, dataDir, ADD_BY_HAND[3]!);
    nodes.set('n5', n5);
    await waitFor('n5 waiting to be added', () => (n5.stderr.some((l) => l.includes('raftkv node n5: waiting to be added')) ? true : null), 30_000, show);
    const added = await runDoc(hosts, dataDir, ADD_BY_HAND[4]!);
    expect(tableRow(added.stdout, 'n5')).toMatch(/^n5 +voter .* yes /);
    expect(added.stderr).toContain('n5 added as a learner; waiting until it has caught up');

    // A joined node restarted with the same command: --join changes nothing, and the founding
    // members' addresses, in no replicated record, come from the join record.
    expect(await processes.stop(n4, 'SIGTERM')).toEqual({ code: 0, signal: null });
    const again = startDoc(hosts, dataDir, ADD_BY_HAND[0]!);
    nodes.set('n4', again);
    await waitFor('n4 listening again', () => (again.stderr.some((l) => l.startsWith('raftkv node n4: peers on')) ? true : null), 30_000, show);
    expect(logLines(again).find((l) => l['msg'] === 'data directory holds state; --join changes nothing')).toMatchObject({ record: join(dataDir('n4'), 'join.json') });
    expect(again.stderr.join('\n')).not.toContain('waiting to be added');
    const acked = new Map<string, string>();
    await writeAll(hosts.url(1), [['restart/n4', 'back']], acked);
    // A linearizable read on n4 needs the leader's answer: it reaches the founding leader again.
    await waitFor('n4 serving a linearizable read', async () => ((await fetch(`${hosts.url(4)}/v1/kv/restart/n4`)).status === 200 ? true : null), 20_000, show);
    await expectReadable(hosts.url(4), acked);
  }, 240_000);
});
