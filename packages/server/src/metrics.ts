import type { NodeStatus } from '@raftkv/node';
import { Role } from '@raftkv/raft';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Request latency buckets, in seconds: 0.25 ms to about 8 s, doubling. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Array.from({ length: 16 }, (_, k) => 0.00025 * 2 ** k);

const ROLES: readonly Role[] = Object.values(Role);

export interface ServerMetrics {
  readonly registry: Registry;
  observeRequest(labels: { route: string; method: string; status: number }, seconds: number): void;
}

/**
 * One registry per server (several nodes in one process must not share the global one). Raft
 * gauges are read from `status()` at scrape time, so they cost nothing between scrapes.
 */
export function createMetrics(status: () => NodeStatus): ServerMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: 'raftkv_http_requests_total',
    help: 'HTTP requests answered, by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'raftkv_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  /** The status of a node that is shutting down throws; its gauges then keep their last value. */
  const read = (): NodeStatus | null => {
    try {
      return status();
    } catch {
      return null;
    }
  };
  const gauge = (name: string, help: string, pick: (s: NodeStatus) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = read();
        if (s !== null) this.set(pick(s));
      },
    });
  };
  gauge('raftkv_raft_term', 'Current Raft term.', (s) => s.term);
  gauge('raftkv_raft_commit_index', 'Highest log index known to be committed.', (s) => s.commit);
  gauge('raftkv_raft_applied_index', 'Highest log index applied to the key-value state machine.', (s) => s.appliedIndexKv);
  gauge('raftkv_raft_last_index', 'Last index of the local log.', (s) => s.lastIndex);
  gauge('raftkv_raft_leader_known', '1 when this node knows a leader, else 0.', (s) => (s.lead === null ? 0 : 1));
  new Gauge({
    name: 'raftkv_raft_role',
    help: "1 for this node's current Raft role, 0 for the others.",
    labelNames: ['role'] as const,
    registers: [registry],
    collect() {
      const s = read();
      if (s === null) return;
      for (const role of ROLES) this.set({ role }, s.role === role ? 1 : 0);
    },
  });
  return {
    registry,
    observeRequest(labels, seconds) {
      const l = { route: labels.route, method: labels.method, status: String(labels.status) };
      requests.inc(l);
      latency.observe(l, seconds);
    },
  };
}
