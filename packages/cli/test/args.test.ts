import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterAddresses, clusterNodeArgs, formatStatus, parseClusterArgs, parseStartArgs, parseStatusArgs, UsageError, type NodeStatusJson } from '@raftkv/cli';

const PEERS = 'n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003';
const HTTP = 'n1=http://127.0.0.1:8001,n2=http://127.0.0.1:8002,n3=http://127.0.0.1:8003';
const BASE = ['--id', 'n1', '--data-dir', 'data/n1', '--peers', PEERS, '--http-peers', HTTP];

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

const noFile = (path: string): string => {
  throw new Error(`ENOENT: no such file, open '${path}'`);
};

describe('raftkv start arguments', () => {
  it('parses the flags and derives listen addresses from this node\'s entries', () => {
    const c = parseStartArgs([...BASE, '--tick-ms', '20', '--election-timeout-ms', '200', '--heartbeat-interval-ms', '20', '--snapshot-every', '500', '--cluster-id', 'demo', '--log-level', 'debug']);
    expect(c).toEqual({
      id: 'n1',
      dataDir: 'data/n1',
      members: ['n1', 'n2', 'n3'],
      peers: { n1: '127.0.0.1:7001', n2: '127.0.0.1:7002', n3: '127.0.0.1:7003' },
      httpPeers: { n1: 'http://127.0.0.1:8001', n2: 'http://127.0.0.1:8002', n3: 'http://127.0.0.1:8003' },
      peerListen: { host: '127.0.0.1', port: 7001 },
      httpListen: { host: '127.0.0.1', port: 8001 },
      clusterId: 'demo',
      tickMs: 20,
      electionTimeoutMs: 200,
      heartbeatIntervalMs: 20,
      snapshotEveryEntries: 500,
      logLevel: 'debug',
    });
  });

  it('leaves unset options out (the node\'s defaults apply) and logs at info', () => {
    const c = parseStartArgs(BASE);
    expect(c.logLevel).toBe('info');
    expect('tickMs' in c || 'clusterId' in c || 'snapshotEveryEntries' in c).toBe(false);
  });

  it('listens where --peer-addr and --http-addr say, apart from the advertised addresses', () => {
    const c = parseStartArgs([...BASE, '--peer-addr', '0.0.0.0:7001', '--http-addr', '[::]:9000']);
    expect(c.peerListen).toEqual({ host: '0.0.0.0', port: 7001 });
    expect(c.httpListen).toEqual({ host: '::', port: 9000 });
  });

  it('reads a config file, resolves its data directory against the file, and lets flags override it', () => {
    const file = JSON.stringify({ id: 'n2', dataDir: 'd2', peers: { n1: '127.0.0.1:7001', n2: '127.0.0.1:7002' }, httpPeers: { n1: 'http://127.0.0.1:8001', n2: 'http://127.0.0.1:8002/' }, tickMs: 50, electionTimeoutMs: 500, heartbeatIntervalMs: 50 });
    const read = (path: string): string => (path === '/etc/raftkv/n2.json' ? file : noFile(path));
    const c = parseStartArgs(['--config', '/etc/raftkv/n2.json', '--tick-ms', '25'], read);
    expect(c.id).toBe('n2');
    expect(c.dataDir).toBe(resolve('/etc/raftkv', 'd2'));
    expect(c.httpPeers['n2']).toBe('http://127.0.0.1:8002');
    expect(c.httpListen).toEqual({ host: '127.0.0.1', port: 8002 });
    expect(c.tickMs).toBe(25);
    expect(c.electionTimeoutMs).toBe(500);
    // A data directory given as a flag is relative to the working directory.
    expect(parseStartArgs(['--config', '/etc/raftkv/n2.json', '--data-dir', 'here'], read).dataDir).toBe('here');
  });

  it.each([
    [['--id', 'n1'], '--data-dir is required'],
    [BASE.filter((a) => a !== '--http-peers' && a !== HTTP), '--http-peers is required'],
    [[...BASE, '--bogus', '1'], "Unknown option '--bogus'"],
    [[...BASE, 'extra'], 'Unexpected argument'],
    [[...BASE, '--tick-ms', '0'], '--tick-ms must be a positive integer, got "0"'],
    [[...BASE, '--tick-ms', '1.5'], '--tick-ms must be a positive integer'],
    [[...BASE, '--log-level', 'loud'], '--log-level must be one of trace, debug, info, warn, error, fatal, silent'],
    [[...BASE, '--tick-ms', '30'], 'must be multiples of tickMs (30)'],
    [[...BASE, '--election-timeout-ms', '100'], 'electionTimeoutMs must be larger than heartbeatIntervalMs'],
    [['--id', 'n4', ...BASE.slice(2)], "--peers has no entry for this node's id n4"],
    [['--id', 'n/1', ...BASE.slice(2)], 'node id "n/1" must be'],
    [[...BASE.slice(0, 5), 'n1=127.0.0.1:7001,n1=127.0.0.1:7002', ...BASE.slice(6)], '--peers names node n1 twice'],
    [[...BASE.slice(0, 5), 'n1=127.0.0.1', ...BASE.slice(6)], '--peers: "127.0.0.1" is not HOST:PORT'],
    [[...BASE.slice(0, 5), 'n1', ...BASE.slice(6)], '--peers: "n1" is not ID=ADDRESS'],
    [[...BASE.slice(0, 7), 'n1=http://127.0.0.1:8001,n2=http://127.0.0.1:8002'], '--peers and --http-peers must name the same nodes'],
    [[...BASE.slice(0, 7), 'n1=ftp://h:1,n2=http://h:2,n3=http://h:3'], 'must be an http:// or https:// URL'],
    [[...BASE.slice(0, 7), 'n1=http://h:1/api,n2=http://h:2,n3=http://h:3'], 'must be a base URL'],
    [[...BASE, '--peer-addr', '127.0.0.1:0'], '--peer-addr: port 0 is not allowed'],
  ])('refuses %j: %s', (argv, message) => {
    expect(usageError(() => parseStartArgs(argv))).toContain(message);
  });

  it.each([
    ['{', 'is not valid JSON'],
    ['[]', 'must hold a JSON object'],
    ['{"id":"n1","dataDirectory":"x"}', 'unknown key "dataDirectory"'],
    ['{"id":"n1","dataDir":"d","peers":"n1=127.0.0.1:7001","httpPeers":{"n1":"http://127.0.0.1:8001"},"tickMs":"fast"}', '--tick-ms must be a positive integer, got "fast"'],
    ['{"id":"n1","dataDir":"d","peers":["127.0.0.1:7001"],"httpPeers":{}}', '--peers must be ID=ADDRESS'],
  ])('refuses the config file %s: %s', (text, message) => {
    expect(usageError(() => parseStartArgs(['--config', 'c.json'], () => text))).toContain(message);
  });

  it('names an unreadable config file', () => {
    expect(usageError(() => parseStartArgs(['--config', 'missing.json'], noFile))).toContain('cannot read config file missing.json: ENOENT');
  });
});

describe('raftkv cluster arguments', () => {
  it('has documented defaults: three nodes on 7001-7003 and 8001-8003 under ./raftkv-data', () => {
    const c = parseClusterArgs([]);
    expect(c).toEqual({ dir: './raftkv-data', host: '127.0.0.1', basePort: 7001, httpBasePort: 8001, nodes: 3, logLevel: 'info', stopTimeoutMs: 10_000 });
    expect([...clusterAddresses(c)]).toEqual([
      ['n1', { peer: '127.0.0.1:7001', http: 'http://127.0.0.1:8001' }],
      ['n2', { peer: '127.0.0.1:7002', http: 'http://127.0.0.1:8002' }],
      ['n3', { peer: '127.0.0.1:7003', http: 'http://127.0.0.1:8003' }],
    ]);
  });

  it('builds start arguments that `raftkv start` accepts, timeouts passed through', () => {
    const c = parseClusterArgs(['--dir', '/tmp/d', '--base-port', '9100', '--http-base-port', '9200', '--tick-ms', '20', '--election-timeout-ms', '200', '--heartbeat-interval-ms', '20', '--log-level', 'warn']);
    const start = parseStartArgs(clusterNodeArgs(c, 'n2'));
    expect(start.id).toBe('n2');
    expect(start.dataDir).toBe('/tmp/d/n2');
    expect(start.peerListen).toEqual({ host: '127.0.0.1', port: 9101 });
    expect(start.httpListen).toEqual({ host: '127.0.0.1', port: 9201 });
    expect(start.members).toEqual(['n1', 'n2', 'n3']);
    expect([start.tickMs, start.electionTimeoutMs, start.heartbeatIntervalMs, start.logLevel]).toEqual([20, 200, 20, 'warn']);
  });

  it.each([
    [['--nodes', '0'], '--nodes must be a positive integer'],
    [['--nodes', '10'], '--nodes must be at most 9'],
    [['--base-port', '65534'], '--base-port 65534 + 3 nodes goes past port 65535'],
    [['--base-port', '70000'], '--base-port must be a port number'],
    [['--base-port', '8000'], 'overlap for 3 nodes'],
    [['--tick-ms', '30'], 'must be multiples of tickMs (30)'],
    [['--dir'], "Option '--dir <value>' argument missing"],
    [['now'], 'Unexpected argument'],
  ])('refuses %j: %s', (argv, message) => {
    expect(usageError(() => parseClusterArgs(argv))).toContain(message);
  });
});

describe('raftkv status', () => {
  it('takes one URL, with or without http://', () => {
    expect(parseStatusArgs(['http://127.0.0.1:8001/'])).toEqual({ url: 'http://127.0.0.1:8001', timeoutMs: 5000 });
    expect(parseStatusArgs(['127.0.0.1:8002', '--timeout-ms', '300'])).toEqual({ url: 'http://127.0.0.1:8002', timeoutMs: 300 });
    expect(usageError(() => parseStatusArgs([]))).toContain('expected one URL, got 0');
    expect(usageError(() => parseStatusArgs(['a:1', 'b:2']))).toContain('expected one URL, got 2');
  });

  const leader: NodeStatusJson = {
    id: 'n1', clusterId: 'raftkv', role: 'leader', term: 3, leader: 'n1', commit: 12, applied: 12, firstIndex: 1, lastIndex: 12,
    voters: ['n1', 'n2', 'n3'], peerAddress: '127.0.0.1:7001', pendingWrites: 0, pendingReads: 1,
    progress: {
      n1: { match: 12, next: 13, state: 'replicate', inflightCount: 0, recentActive: true, pendingSnapshot: 0 },
      n2: { match: 12, next: 13, state: 'replicate', inflightCount: 0, recentActive: true, pendingSnapshot: 0 },
      n3: { match: 4, next: 5, state: 'probe', inflightCount: 0, recentActive: false, pendingSnapshot: 0 },
    },
  };

  it("prints the leader's view of every peer", () => {
    expect(formatStatus(leader)).toEqual([
      'node n1 (cluster raftkv, peers on 127.0.0.1:7001)',
      '  role      leader, term 3',
      '  leader    n1',
      '  commit    12, applied 12',
      '  log       1..12',
      '  voters    n1, n2, n3',
      '  pending   0 writes, 1 reads',
      "  progress  (the leader's view of each member)",
      '    n1  match 12, next 13, replicate, 0 in flight, up to date, active',
      '    n2  match 12, next 13, replicate, 0 in flight, up to date, active',
      '    n3  match 4, next 5, probe, 0 in flight, 8 behind, inactive',
    ]);
  });

  it('says where progress is on a follower, and how far applied lags', () => {
    const lines = formatStatus({ ...leader, id: 'n2', role: 'follower', applied: 10, progress: null });
    expect(lines).toContain('  commit    12, applied 10 (2 behind)');
    expect(lines.at(-1)).toBe('  progress  only the leader tracks it (ask n1)');
  });
});
