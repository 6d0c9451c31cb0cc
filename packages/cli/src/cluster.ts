/**
 * `raftkv cluster`: a local cluster of `raftkv start` processes on fixed ports, supervised until
 * SIGINT or SIGTERM. See CLUSTER_USAGE in args.ts for the port and directory layout.
 */
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeId } from '@raftkv/raft';
import { clusterAddresses, clusterNodeArgs, EXIT_FAILURE, EXIT_OK, type ClusterConfig } from './args.js';
import type { Output } from './output.js';
import { fetchStatus } from './status.js';
import { SupervisedNode } from './supervisor.js';

/** How often the supervisor asks the nodes for a leader while it waits for one. */
const LEADER_POLL_MS = 100;
const STATUS_TIMEOUT_MS = 1_000;
/** Waiting longer than this for a leader prints a hint (and the wait goes on). */
const LEADER_WAIT_HINT_MS = 15_000;

export async function runCluster(config: ClusterConfig, out: Output): Promise<number> {
  const addresses = clusterAddresses(config);
  const busy = await busyPorts(config);
  if (busy.length > 0) {
    for (const line of busy) out.err(`raftkv cluster: ${line}`);
    out.err('raftkv cluster: stop what uses these ports (another raftkv cluster?) or pick others with --base-port and --http-base-port');
    return EXIT_FAILURE;
  }
  const dir = resolve(config.dir);
  await mkdir(dir, { recursive: true });
  const print = (line: string): void => out.out(line);
  const nodes = [...addresses.keys()].map((id) => new SupervisedNode({ id, startArgs: clusterNodeArgs(config, id), logPath: join(dir, `${id}.log`), print }));

  const stopSignal = new Promise<NodeJS.Signals>((resolveSignal) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolveSignal(signal));
  });
  const waiting = new AbortController();
  print(`raftkv cluster: ${nodes.length} nodes, data in ${dir}`);
  for (const node of nodes) {
    const pid = node.start();
    const a = addresses.get(node.id)!;
    print(`node ${node.id}: pid ${pid}, peers on ${a.peer}, HTTP on ${a.http}, data in ${join(dir, node.id)}, log ${join(dir, `${node.id}.log`)}`);
  }
  void announceWhenReady(config, nodes, out, waiting.signal);

  const signal = await stopSignal;
  waiting.abort();
  print(`received ${signal}: stopping ${nodes.map((n) => n.id).join(', ')} (SIGTERM, SIGKILL after ${config.stopTimeoutMs} ms)`);
  const force = (): void => {
    print('second signal: sending SIGKILL to every node');
    for (const node of nodes) node.kill();
  };
  process.once('SIGINT', force).once('SIGTERM', force);
  await Promise.all(nodes.map((node) => node.stop(config.stopTimeoutMs)));
  print('raftkv cluster: stopped');
  return EXIT_OK;
}

/** One line per port of the cluster that something else already listens on. */
async function busyPorts(config: ClusterConfig): Promise<string[]> {
  const busy: string[] = [];
  for (const [i, id] of [...clusterAddresses(config).keys()].entries()) {
    for (const [what, port] of [['peer', config.basePort + i], ['HTTP', config.httpBasePort + i]] as const) {
      const error = await tryListen(config.host, port);
      if (error !== null) busy.push(`${what} port ${port} of ${id} on ${config.host} is not free (${error})`);
    }
  }
  return busy;
}

function tryListen(host: string, port: number): Promise<string | null> {
  return new Promise((resolveResult) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolveResult(error.code ?? error.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolveResult(null)));
  });
}

/** Polls /v1/status until every node names the same leader, then prints how to use the cluster. */
async function announceWhenReady(config: ClusterConfig, nodes: readonly SupervisedNode[], out: Output, signal: AbortSignal): Promise<void> {
  const addresses = clusterAddresses(config);
  const startedMs = Date.now();
  let hinted = false;
  let leader: NodeId | null = null;
  while (leader === null) {
    if (signal.aborted) return;
    leader = await agreedLeader([...addresses.values()].map((a) => a.http));
    if (leader !== null) break;
    if (!hinted && Date.now() - startedMs > LEADER_WAIT_HINT_MS) {
      hinted = true;
      out.out(`still no leader after ${LEADER_WAIT_HINT_MS / 1000} s; see the logs in ${resolve(config.dir)}/n*.log`);
    }
    await sleep(LEADER_POLL_MS);
  }
  if (signal.aborted) return;
  const leaderPid = nodes.find((n) => n.id === leader)?.pid ?? null;
  for (const line of usageLines(config, leader, leaderPid)) out.out(line);
  out.out(`cluster ready: leader ${leader}${leaderPid === null ? '' : ` (pid ${leaderPid})`}; Ctrl-C stops every node`);
}

/** The leader every node reports, once they all report the same one; null before that. */
async function agreedLeader(urls: readonly string[]): Promise<NodeId | null> {
  const statuses = await Promise.all(urls.map((url) => fetchStatus(url, STATUS_TIMEOUT_MS).catch(() => null)));
  const leaders = new Set(statuses.map((s) => (s === null ? null : s.leader)));
  const [only] = leaders;
  const leaderReports = statuses.some((s) => s !== null && s.role === 'leader' && s.id === only);
  return leaders.size === 1 && only !== undefined && only !== null && leaderReports ? only : null;
}

/** Ready-to-paste commands against this cluster. */
export function usageLines(config: ClusterConfig, leader: NodeId, leaderPid: number | null): string[] {
  const http = [...clusterAddresses(config).values()].map((a) => a.http);
  const first = http[0]!;
  const second = http[1] ?? first;
  return [
    '',
    'try it (any node accepts any request; writes are forwarded to the leader):',
    `  curl -X PUT --data-binary 'hello' ${first}/v1/kv/greeting                # write through n1`,
    `  curl -i ${second}/v1/kv/greeting                                         # read on ${http.length > 1 ? 'n2' : 'n1'} (linearizable)`,
    `  curl -X PUT --data-binary 'me' '${first}/v1/kv/lock?cas=absent'         # compare-and-set: the second run gets 409`,
    `  curl '${first}/v1/kv?prefix=gr'                                          # list keys under a prefix`,
    `  curl ${first}/v1/status                                                  # one node's view (pnpm raftkv status ${first})`,
    ...(leaderPid === null ? [] : [`  kill -9 ${leaderPid}                                                    # crash the leader, ${leader}: the others elect a new one, the supervisor restarts it`]),
    '',
  ];
}
