import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { JoinError, parseStartArgs, prepareJoin, type StartConfig } from '@raftkv/cli';

const silent = pino({ level: 'silent' });
const servers: Server[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const MEMBERS = {
  leader: 'n1',
  members: [
    { id: 'n1', role: 'voter', peerAddress: '10.0.0.1:7001', httpAddress: 'http://10.0.0.1:8001', isLeader: true, autoPromote: false, match: 9, lag: 0, replication: 'replicate' },
    { id: 'n2', role: 'voter', peerAddress: '10.0.0.2:7001', httpAddress: null, isLeader: false, autoPromote: false, match: 9, lag: 0, replication: 'replicate' },
  ],
};

/** A member that answers GET /v1/members and /v1/status. */
async function member(members: unknown = MEMBERS, clusterId = 'prod-kv'): Promise<string> {
  const server = createServer((request, response) => {
    const body = request.url === '/v1/members' ? members : request.url === '/v1/status' ? { id: 'n1', clusterId } : null;
    response.writeHead(body === null ? 404 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? { code: 'RAFTKV_ROUTE_NOT_FOUND', message: 'no' }));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function joinConfig(url: string, extra: string[] = [], id = 'n4'): Promise<StartConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-join-'));
  dirs.push(dir);
  return parseStartArgs(['--id', id, '--data-dir', join(dir, 'data'), '--peer-addr', '10.0.0.4:7001', '--http-addr', '10.0.0.4:8001', '--join', url, ...extra]);
}

describe('prepareJoin', () => {
  it('learns the members and the cluster id on an empty data directory, and records them', async () => {
    const config = await joinConfig(await member());
    const start = await prepareJoin(config, config.join!, silent);
    expect(start).toEqual({ fresh: true, peers: { n1: '10.0.0.1:7001', n2: '10.0.0.2:7001' }, httpPeers: { n1: 'http://10.0.0.1:8001' }, clusterId: 'prod-kv' });
    const record = JSON.parse(await readFile(join(config.dataDir, 'join.json'), 'utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({ clusterId: 'prod-kv', peers: start.peers, httpPeers: start.httpPeers });
  });

  it('changes nothing once the data directory holds state: the peers come from the record', async () => {
    const config = await joinConfig(await member());
    await prepareJoin(config, config.join!, silent);
    await mkdir(join(config.dataDir, 'log'));
    // The cluster's answer has changed since; the record is what counts, and nothing is asked.
    const restart = { ...config, join: { ...config.join!, urls: ['http://127.0.0.1:1'] } };
    expect(await prepareJoin(restart, restart.join, silent)).toEqual({ fresh: false, peers: { n1: '10.0.0.1:7001', n2: '10.0.0.2:7001' }, httpPeers: { n1: 'http://10.0.0.1:8001' } });
  });

  it('refuses a data directory with state that --join did not make', async () => {
    const config = await joinConfig('http://127.0.0.1:1');
    await mkdir(join(config.dataDir, 'log'), { recursive: true });
    await expect(prepareJoin(config, config.join!, silent)).rejects.toThrow(/holds a node's state but no join\.json: it was not made by --join/);
    await writeFile(join(config.dataDir, 'join.json'), '{"clusterId": 5}');
    await expect(prepareJoin(config, config.join!, silent)).rejects.toThrow(/does not have the shape of a join record/);
  });

  it('refuses an id the cluster already has, and a cluster whose id is not --cluster-id', async () => {
    const url = await member();
    const taken = await joinConfig(url, [], 'n2');
    await expect(prepareJoin(taken, taken.join!, silent)).rejects.toThrow(JoinError);
    await expect(prepareJoin(taken, taken.join!, silent)).rejects.toThrow(/n2 is already a member .* start this machine under a new id/);
    const other = await joinConfig(url, ['--cluster-id', 'staging-kv']);
    await expect(prepareJoin(other, other.join!, silent)).rejects.toThrow('the cluster at');
    await expect(prepareJoin(other, other.join!, silent)).rejects.toThrow(/has the id "prod-kv", not --cluster-id "staging-kv"/);
  });
});
