/** `raftkv status URL`: a node's GET /v1/status, printed for people. */
import { EXIT_FAILURE, EXIT_OK, type StatusConfig } from './args.js';
import type { Output } from './output.js';
import { describeError } from './start.js';

export interface PeerProgress {
  readonly match: number;
  readonly next: number;
  readonly state: string;
  readonly inflightCount: number;
  readonly recentActive: boolean;
  readonly pendingSnapshot: number;
}

/** The fields of GET /v1/status this command reads (docs/http-api.md). */
export interface NodeStatusJson {
  readonly id: string;
  readonly clusterId: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly voters: readonly string[];
  /** Members that receive the log but do not vote (absent from nodes that predate membership changes). */
  readonly learners?: readonly string[];
  readonly peerAddress: string;
  readonly pendingWrites: number;
  readonly pendingReads: number;
  readonly progress: Readonly<Record<string, PeerProgress>> | null;
}

/** GET <baseUrl>/v1/status; throws on a network error, a timeout, a non-200 or a body of the wrong shape. */
export async function fetchStatus(baseUrl: string, timeoutMs: number): Promise<NodeStatusJson> {
  const response = await fetch(`${baseUrl}/v1/status`, { signal: AbortSignal.timeout(timeoutMs) });
  const body: unknown = await response.json();
  if (!response.ok) throw new Error(`GET ${baseUrl}/v1/status answered ${response.status}: ${JSON.stringify(body)}`);
  if (!isStatusJson(body)) throw new Error(`GET ${baseUrl}/v1/status answered something that is not a node status: ${JSON.stringify(body).slice(0, 200)}`);
  return body;
}

function isStatusJson(value: unknown): value is NodeStatusJson {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const numbers = ['term', 'commit', 'applied', 'firstIndex', 'lastIndex'].every((key) => typeof v[key] === 'number');
  return typeof v['id'] === 'string' && typeof v['role'] === 'string' && numbers && (v['leader'] === null || typeof v['leader'] === 'string');
}

export function formatStatus(s: NodeStatusJson): string[] {
  const lines = [
    `node ${s.id} (cluster ${s.clusterId}, peers on ${s.peerAddress})`,
    `  role      ${s.role}, term ${s.term}`,
    `  leader    ${s.leader ?? 'none known'}`,
    `  commit    ${s.commit}, applied ${s.applied}${s.applied < s.commit ? ` (${s.commit - s.applied} behind)` : ''}`,
    `  log       ${s.firstIndex}..${s.lastIndex}`,
    `  voters    ${s.voters.join(', ')}`,
    ...(s.learners !== undefined && s.learners.length > 0 ? [`  learners  ${s.learners.join(', ')}`] : []),
    `  pending   ${s.pendingWrites} writes, ${s.pendingReads} reads`,
  ];
  if (s.progress === null) {
    lines.push(`  progress  only the leader tracks it${s.leader === null ? '' : ` (ask ${s.leader})`}`);
    return lines;
  }
  lines.push("  progress  (the leader's view of each member)");
  const width = Math.max(...Object.keys(s.progress).map((id) => id.length));
  for (const [id, p] of Object.entries(s.progress)) {
    const lag = s.lastIndex - p.match;
    const flags = [p.recentActive ? 'active' : 'inactive', ...(p.pendingSnapshot > 0 ? [`snapshot ${p.pendingSnapshot} pending`] : [])];
    lines.push(`    ${id.padEnd(width)}  match ${p.match}, next ${p.next}, ${p.state}, ${p.inflightCount} in flight, ${lag === 0 ? 'up to date' : `${lag} behind`}, ${flags.join(', ')}`);
  }
  return lines;
}

export async function runStatus(config: StatusConfig, out: Output): Promise<number> {
  let status: NodeStatusJson;
  try {
    status = await fetchStatus(config.url, config.timeoutMs);
  } catch (error) {
    out.err(`raftkv status: cannot read ${config.url}/v1/status: ${describeError(error)}${causeOf(error)}`);
    return EXIT_FAILURE;
  }
  for (const line of formatStatus(status)) out.out(line);
  return EXIT_OK;
}

/** fetch's "fetch failed" hides the reason (ECONNREFUSED, ...) in `cause`. */
function causeOf(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause === undefined ? '' : ` (${describeError(cause)})`;
}
