import { describe, expect, it } from 'vitest';
import { formatStatus, membersTable, parseLeaderArgs, parseMemberArgs, parseStartArgs, UsageError } from '@raftkv/cli';

/** The message of the UsageError `run` throws (fails the test if it throws anything else). */
function usageError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  return expect.unreachable('no UsageError thrown');
}

const NO_ENV = {};

describe('raftkv member arguments', () => {
  it('parses each subcommand', () => {
    expect(parseMemberArgs(['list'], NO_ENV)).toEqual({ command: { verb: 'list' }, endpoints: { urls: ['http://127.0.0.1:8001'], source: expect.stringContaining('default') }, output: 'table', timeoutMs: 60_000 });
    expect(parseMemberArgs(['add', 'n4', '--peer-address', '10.0.0.4:7001', '--http-address', 'http://10.0.0.4:8001/', '--uid', 'u1'], NO_ENV).command).toEqual({
      verb: 'add',
      id: 'n4',
      peerAddress: '10.0.0.4:7001',
      httpAddress: 'http://10.0.0.4:8001',
      uid: 'u1',
    });
    expect(parseMemberArgs(['add-learner', 'n5', '--peer-address', 'h:1'], NO_ENV).command).toEqual({ verb: 'add-learner', id: 'n5', peerAddress: 'h:1' });
    expect(parseMemberArgs(['promote', 'n5'], NO_ENV).command).toEqual({ verb: 'promote', id: 'n5' });
    expect(parseMemberArgs(['remove', 'n3', '-o', 'json', '--timeout-ms', '500'], NO_ENV)).toMatchObject({ command: { verb: 'remove', id: 'n3' }, output: 'json', timeoutMs: 500 });
  });

  it('takes the endpoints from --endpoints, else RAFTKV_ENDPOINTS, else the default', () => {
    const env = { RAFTKV_ENDPOINTS: 'http://10.0.0.1:8001, http://10.0.0.2:8001' };
    expect(parseMemberArgs(['list'], env).endpoints).toEqual({ urls: ['http://10.0.0.1:8001', 'http://10.0.0.2:8001'], source: 'RAFTKV_ENDPOINTS' });
    expect(parseMemberArgs(['list', '--endpoints', 'http://h:9'], env).endpoints).toEqual({ urls: ['http://h:9'], source: '--endpoints' });
    expect(parseMemberArgs(['list'], { RAFTKV_ENDPOINTS: '' }).endpoints.urls).toEqual(['http://127.0.0.1:8001']);
  });

  it.each([
    [[], 'expected a subcommand'],
    [['join'], 'unknown subcommand "join"'],
    [['list', 'n1'], 'member list takes no argument'],
    [['remove'], 'member remove takes one node id, got none'],
    [['remove', 'n1', 'n2'], 'member remove takes one node id, got n1 n2'],
    [['remove', 'n/1'], 'node id "n/1" must be'],
    [['add', 'n4', '--http-address', 'http://h:1'], 'member add needs --peer-address HOST:PORT'],
    [['add', 'n4', '--peer-address', 'h:1'], 'member add needs --http-address URL'],
    [['add', 'n4', '--peer-address', 'h', '--http-address', 'http://h:1'], '--peer-address: "h" is not HOST:PORT'],
    [['add-learner', 'n4', '--peer-address', 'h:1', '--http-address', 'h:1'], '--http-address: "h:1" must be an http:// or https:// URL'],
    [['promote', 'n4', '--peer-address', 'h:1'], '--peer-address applies only to member add and member add-learner'],
    [['list', '-o', 'yaml'], '--output (-o) must be table or json, got "yaml"'],
    [['list', '--endpoints', 'https://h:1'], '--endpoints: "https://h:1": a node serves plain HTTP'],
    [['list', '--endpoints', 'http://h:1/api'], '--endpoints: "http://h:1/api" must be a base URL'],
    [['list', '--timeout-ms', '0'], '--timeout-ms must be a positive integer'],
    [['list', '--bogus'], "Unknown option '--bogus'"],
  ])('refuses %j: %s', (argv, message) => {
    expect(usageError(() => parseMemberArgs(argv, NO_ENV))).toContain(message);
  });

  it('names RAFTKV_ENDPOINTS when the bad URL came from it', () => {
    expect(usageError(() => parseMemberArgs(['list'], { RAFTKV_ENDPOINTS: 'localhost:8001' }))).toMatch(/^RAFTKV_ENDPOINTS=localhost:8001: /);
  });
});

describe('raftkv leader arguments', () => {
  it('parses transfer with or without a target', () => {
    expect(parseLeaderArgs(['transfer'], NO_ENV)).toMatchObject({ output: 'table' });
    expect(parseLeaderArgs(['transfer'], NO_ENV)).not.toHaveProperty('to');
    expect(parseLeaderArgs(['transfer', '--to', 'n2', '-o', 'json'], NO_ENV)).toMatchObject({ to: 'n2', output: 'json' });
  });

  it.each([
    [[], 'expected a subcommand: transfer'],
    [['move'], 'unknown subcommand "move"'],
    [['transfer', 'n2'], 'name the target with --to ID'],
    [['transfer', '--to', ''], '--to must be a non-empty string'],
  ])('refuses %j: %s', (argv, message) => {
    expect(usageError(() => parseLeaderArgs(argv, NO_ENV))).toContain(message);
  });
});

describe('raftkv start --join arguments', () => {
  const JOIN = ['--id', 'n4', '--data-dir', 'd4', '--join', 'http://10.0.0.1:8001,http://10.0.0.2:8001'];

  it('advertises the listen addresses when no entry of its own is given, and founds nothing', () => {
    const c = parseStartArgs([...JOIN, '--peer-addr', '10.0.0.4:7001', '--http-addr', '10.0.0.4:8001']);
    expect(c).toMatchObject({
      id: 'n4',
      peers: { n4: '10.0.0.4:7001' },
      httpPeers: { n4: 'http://10.0.0.4:8001' },
      peerListen: { host: '10.0.0.4', port: 7001 },
      httpListen: { host: '10.0.0.4', port: 8001 },
      join: { urls: ['http://10.0.0.1:8001', 'http://10.0.0.2:8001'], autoPromote: true, waitToBeAdded: false },
    });
    expect(c.members).toBeUndefined();
  });

  it('listens on every interface while advertising its own --peers and --http-peers entries', () => {
    const c = parseStartArgs([...JOIN, '--peers', 'n4=10.0.0.4:7001', '--http-peers', 'n4=http://10.0.0.4:8001', '--peer-addr', '0.0.0.0:7001', '--http-addr', '[::]:8001', '--no-auto-promote']);
    expect(c).toMatchObject({ peers: { n4: '10.0.0.4:7001' }, peerListen: { host: '0.0.0.0', port: 7001 }, httpListen: { host: '::', port: 8001 }, join: { autoPromote: false } });
  });

  it('reads join, autoPromote and waitToBeAdded from the config file', () => {
    const file = JSON.stringify({ id: 'n4', dataDir: 'd', join: ['http://10.0.0.1:8001'], peerAddr: '10.0.0.4:7001', httpAddr: '10.0.0.4:8001', waitToBeAdded: true, snapshotCatchup: 0 });
    const c = parseStartArgs(['--config', '/etc/raftkv/n4.json'], () => file);
    expect(c).toMatchObject({ join: { urls: ['http://10.0.0.1:8001'], autoPromote: true, waitToBeAdded: true }, snapshotCatchupEntries: 0 });
  });

  it.each([
    [[...JOIN, '--http-addr', '10.0.0.4:8001'], '--join needs --peer-addr HOST:PORT (or --peers n4=HOST:PORT)'],
    [[...JOIN, '--peer-addr', '10.0.0.4:7001'], '--join needs --http-addr HOST:PORT (or --http-peers n4=URL)'],
    [[...JOIN, '--peer-addr', '0.0.0.0:7001', '--http-addr', '10.0.0.4:8001'], '--peer-addr 0.0.0.0:7001 listens on every interface: give --peers n4=...'],
    [[...JOIN, '--peers', 'n1=10.0.0.1:7001,n4=10.0.0.4:7001', '--http-addr', '10.0.0.4:8001'], '--peers names n1: with --join the cluster says where its members are'],
    [[...JOIN.slice(0, 5), 'ftp://h:1', '--peer-addr', 'h:1', '--http-addr', 'h:2'], '--join: "ftp://h:1" must be an http:// or https:// URL'],
    [[...JOIN, '--peer-addr', 'h:1', '--http-addr', 'h:2', '--wait-to-be-added', '--no-auto-promote'], '--no-auto-promote has no effect with --wait-to-be-added'],
    [['--id', 'n1', '--data-dir', 'd', '--peers', 'n1=h:1', '--http-peers', 'n1=http://h:2', '--no-auto-promote'], '--no-auto-promote applies only with --join'],
    [['--id', 'n1', '--data-dir', 'd', '--peers', 'n1=h:1', '--http-peers', 'n1=http://h:2', '--snapshot-catchup=-1'], '--snapshot-catchup must be an integer >= 0, got "-1"'],
  ])('refuses %j: %s', (argv, message) => {
    expect(usageError(() => parseStartArgs(argv))).toContain(message);
  });
});

describe('the member table', () => {
  it('shows every member, a dash for what this node does not know, and says when progress is missing', () => {
    const lines = membersTable({
      leader: 'n1',
      members: [
        { id: 'n1', role: 'voter', peerAddress: '10.0.0.1:7001', httpAddress: 'http://10.0.0.1:8001', isLeader: true, autoPromote: false, match: null, lag: null, replication: null },
        { id: 'n4', role: 'learner', peerAddress: '10.0.0.4:7001', httpAddress: null, isLeader: false, autoPromote: true, match: null, lag: null, replication: null },
      ],
    });
    expect(lines).toEqual([
      'ID  ROLE     LEADER  PEER ADDRESS   HTTP ADDRESS          AUTO-PROMOTE  MATCH  LAG  REPLICATION',
      'n1  voter    yes     10.0.0.1:7001  http://10.0.0.1:8001  no            -      -    -',
      'n4  learner          10.0.0.4:7001  -                     yes           -      -    -',
      'MATCH and LAG are known on the leader only (n1), which did not answer',
    ]);
  });
});

describe('raftkv status with learners', () => {
  it('lists the learners under the voters', () => {
    const lines = formatStatus({
      id: 'n1',
      clusterId: 'raftkv',
      role: 'follower',
      term: 3,
      leader: 'n2',
      commit: 12,
      applied: 12,
      firstIndex: 1,
      lastIndex: 12,
      voters: ['n1', 'n2', 'n3'],
      learners: ['n4'],
      peerAddress: '127.0.0.1:7001',
      pendingWrites: 0,
      pendingReads: 0,
      progress: null,
    });
    expect(lines.slice(5, 7)).toEqual(['  voters    n1, n2, n3', '  learners  n4']);
  });
});
