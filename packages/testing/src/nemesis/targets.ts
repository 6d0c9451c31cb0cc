/**
 * Nemesis targets for the two kinds of test cluster: a ProcessCluster (every fault, including
 * kill -9 and SIGSTOP) and an in-process LocalCluster from startCluster() (network faults only:
 * its nodes share one process).
 */
import type { LocalCluster } from '@raftkv/node';
import { Role, type NodeId } from '@raftkv/raft';
import type { ProcessCluster } from '../process/process-cluster.js';
import type { LinkControl } from './links.js';
import type { NemesisTarget } from './nemesis.js';

/** A status request to a paused or partitioned node gives up after this long. */
const STATUS_TIMEOUT_MS = 500;

/**
 * The leader is the node that says it leads in the highest term: during a partition an old
 * leader may not yet know it was replaced.
 */
function newestLeader(statuses: readonly ({ id: NodeId; role: Role; term: number } | null)[]): NodeId | null {
  let best: { id: NodeId; term: number } | null = null;
  for (const s of statuses) if (s !== null && s.role === Role.Leader && (best === null || s.term > best.term)) best = s;
  return best?.id ?? null;
}

/** A target for a ProcessCluster started with `network: 'proxy'` or `'netns'`. */
export function processClusterTarget(cluster: ProcessCluster): NemesisTarget {
  const network = cluster.network;
  if (network === null) throw new Error("nemesis: the ProcessCluster was started with network 'direct'; use 'proxy' or 'netns'");
  return {
    get ids() {
      return cluster.ids;
    },
    network,
    processes: {
      kill: async (id) => {
        await cluster.kill(id, 'SIGKILL');
      },
      restart: (id) => cluster.restart(id),
      pause: (id) => cluster.pause(id),
      resume: (id) => cluster.resume(id),
      stop: async (id) => {
        await cluster.kill(id, 'SIGTERM');
      },
    },
    // A joining machine needs links the network can add; the namespaces of 'netns' are fixed.
    membership:
      network.addNode === undefined
        ? undefined
        : {
            add: (options) => cluster.addNode(options),
            promote: (id) => cluster.promote(id),
            remove: (id) => cluster.removeNode(id),
            members: () => cluster.membersOnLeader({ timeoutMs: STATUS_TIMEOUT_MS * 4 }),
          },
    leader: async () => {
      const statuses = await Promise.all(cluster.running.map((id) => cluster.status(id, { timeoutMs: STATUS_TIMEOUT_MS }).catch(() => null)));
      return newestLeader(statuses.map((s) => (s === null ? null : { id: s.id, role: s.role, term: s.term })));
    },
  };
}

/**
 * A target for an in-process cluster whose links go through `network` (start it with
 * `peerAddress: network.router()`). Only network faults: kill -9 and SIGSTOP need processes.
 */
export function localClusterTarget(cluster: LocalCluster, network: LinkControl): NemesisTarget {
  return {
    ids: cluster.ids,
    network,
    leader: () => Promise.resolve(newestLeader(cluster.nodes.map((node) => ({ id: node.id, role: node.role, term: node.status().term })))),
  };
}
