/**
 * `raftkv member list|add|add-learner|promote|remove` and `raftkv leader transfer`: the
 * membership of a running cluster, through its HTTP API (docs/http-api.md#membership).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeId } from '@raftkv/raft';
import type { MemberJson, MembersJson } from '@raftkv/server';
import { EXIT_FAILURE, EXIT_OK, httpUrl, nodeId, optional, parseStrict, peerAddress, positiveInt, UsageError, type ParseOptions } from './args.js';
import { call, callOk, ENDPOINTS_DEFAULT, ENDPOINTS_ENV, endpointsFrom, type Endpoints } from './endpoints.js';
import type { Output } from './output.js';

export const MEMBER_TIMEOUT_MS_DEFAULT = 60_000;
/** How often `member add` looks at whether the new member is a voter yet. */
const PROMOTION_POLL_MS = 250;
/** The leader's own view (with each member's progress) is asked for with this deadline; past it, the first answer is shown. */
const LEADER_VIEW_TIMEOUT_MS = 2_000;

const COMMON_USAGE = `  --endpoints URL[,URL...]     members' HTTP URLs, tried in turn until one answers (default:
                               $${ENDPOINTS_ENV}, else ${ENDPOINTS_DEFAULT})
  -o, --output table|json      a table (default), or the API's JSON answer
  --timeout-ms N               keep trying this long while no leader is known or another change
                               is in progress (default ${MEMBER_TIMEOUT_MS_DEFAULT})`;

export const MEMBER_USAGE = `usage: raftkv member list [options]
       raftkv member add ID --peer-address HOST:PORT --http-address URL [--uid UID] [options]
       raftkv member add-learner ID --peer-address HOST:PORT [--http-address URL] [--uid UID] [options]
       raftkv member promote ID [options]
       raftkv member remove ID [options]

The members of a running cluster. Any member takes the request; a change is made by the
leader, one at a time.

  list          every member: role (voter or learner), addresses, and on the leader how far
                each has replicated the log (MATCH, LAG behind the leader's last entry)
  add           add a new node as a learner, made a voter by the leader once it has caught up,
                and wait (up to --timeout-ms) until it is one. The node must be running and
                waiting to be added (raftkv start --join URL --wait-to-be-added)
  add-learner   add a new node as a learner that stays one, and return at once
  promote       make a caught-up learner a voter
  remove        remove a member, voter or learner (a dead machine, or one to retire). Its id
                can never be used again: a replacement joins under a new id

  --peer-address HOST:PORT     where the new node listens for peers (add, add-learner)
  --http-address URL           the new node's HTTP base URL (add; add-learner: optional, but
                               without it the others cannot forward requests to it)
  --uid UID                    the new node's data directory id (its /v1/status "uid"): its
                               peers then accept no other data directory under its id
${COMMON_USAGE}
`;

export const LEADER_USAGE = `usage: raftkv leader transfer [--to ID] [options]

Hands leadership over to another voter (default: the one whose log is furthest on), and waits
until it leads. Use it before stopping the leader's machine for maintenance.

  --to ID                      the voter to hand leadership to
${COMMON_USAGE}
`;

export type OutputFormat = 'table' | 'json';

export type MemberCommand =
  | { readonly verb: 'list' }
  | { readonly verb: 'add' | 'add-learner'; readonly id: NodeId; readonly peerAddress: string; readonly httpAddress?: string; readonly uid?: string }
  | { readonly verb: 'promote' | 'remove'; readonly id: NodeId };

interface Common {
  readonly endpoints: Endpoints;
  readonly output: OutputFormat;
  readonly timeoutMs: number;
}

export interface MemberConfig extends Common {
  readonly command: MemberCommand;
}

export interface LeaderConfig extends Common {
  readonly to?: NodeId;
}

type Env = Readonly<Record<string, string | undefined>>;

const COMMON_OPTIONS: ParseOptions = { endpoints: { type: 'string' }, output: { type: 'string', short: 'o' }, 'timeout-ms': { type: 'string' } };
const ADD_FLAGS = ['peer-address', 'http-address', 'uid'] as const;

export function parseMemberArgs(argv: readonly string[], env: Env = process.env): MemberConfig {
  const options: ParseOptions = { ...COMMON_OPTIONS };
  for (const flag of ADD_FLAGS) options[flag] = { type: 'string' };
  const { values, positionals } = parseStrict(argv, options, true);
  const [verb, ...ids] = positionals;
  const str = (flag: string): string | undefined => (typeof values[flag] === 'string' ? values[flag] : undefined);
  const common = commonOptions(values, env);
  if (verb === undefined) throw new UsageError('expected a subcommand: list, add, add-learner, promote or remove');
  if (verb !== 'add' && verb !== 'add-learner') {
    const misplaced = ADD_FLAGS.find((flag) => values[flag] !== undefined);
    if (misplaced !== undefined) throw new UsageError(`--${misplaced} applies only to member add and member add-learner`);
  }
  const oneId = (): NodeId => {
    if (ids.length !== 1) throw new UsageError(`member ${verb} takes one node id, got ${ids.length === 0 ? 'none' : ids.join(' ')}`);
    return nodeId('ID', ids[0]);
  };
  switch (verb) {
    case 'list':
      if (ids.length > 0) throw new UsageError(`member list takes no argument, got ${ids.join(' ')}`);
      return { ...common, command: { verb } };
    case 'add':
    case 'add-learner': {
      const id = oneId();
      const peer = str('peer-address');
      if (peer === undefined) throw new UsageError(`member ${verb} needs --peer-address HOST:PORT: where ${id} listens for peers`);
      const http = optional('http-address', str('http-address'), httpUrl);
      if (verb === 'add' && http === undefined) throw new UsageError(`member add needs --http-address URL: a voter may lead, and the others forward requests to the leader's URL`);
      const uid = optional('uid', str('uid'), (name, value) => {
        if (typeof value !== 'string' || value === '' || value.length > 128) throw new UsageError(`--${name} must be 1 to 128 characters`);
        return value;
      });
      return {
        ...common,
        command: { verb, id, peerAddress: peerAddress('peer-address', peer), ...(http === undefined ? {} : { httpAddress: http }), ...(uid === undefined ? {} : { uid }) },
      };
    }
    case 'promote':
    case 'remove':
      return { ...common, command: { verb, id: oneId() } };
    default:
      throw new UsageError(`unknown subcommand ${JSON.stringify(verb)}: use list, add, add-learner, promote or remove`);
  }
}

export function parseLeaderArgs(argv: readonly string[], env: Env = process.env): LeaderConfig {
  const { values, positionals } = parseStrict(argv, { ...COMMON_OPTIONS, to: { type: 'string' } }, true);
  const [verb, ...rest] = positionals;
  if (verb !== 'transfer') throw new UsageError(verb === undefined ? 'expected a subcommand: transfer' : `unknown subcommand ${JSON.stringify(verb)}: use transfer`);
  if (rest.length > 0) throw new UsageError(`leader transfer takes no argument (name the target with --to ID), got ${rest.join(' ')}`);
  const to = optional('to', values['to'], nodeId);
  return { ...commonOptions(values, env), ...(to === undefined ? {} : { to }) };
}

function commonOptions(values: Record<string, string | boolean | undefined>, env: Env): Common {
  const output = values['output'] ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`--output (-o) must be table or json, got ${JSON.stringify(output)}`);
  const endpoints = values['endpoints'];
  return {
    endpoints: endpointsFrom(typeof endpoints === 'string' ? endpoints : undefined, env),
    output,
    timeoutMs: optional('timeout-ms', values['timeout-ms'], positiveInt) ?? MEMBER_TIMEOUT_MS_DEFAULT,
  };
}

// ------------------------------------------------------------------------------------------ run

export async function runMember(config: MemberConfig, out: Output): Promise<number> {
  const { command, endpoints } = config;
  const deadlineMs = performance.now() + config.timeoutMs;
  const path = (id: NodeId, suffix = ''): string => `/v1/members/${encodeURIComponent(id)}${suffix}`;
  let listing: MembersJson;
  switch (command.verb) {
    case 'list':
      listing = await leaderView(endpoints, deadlineMs);
      break;
    case 'add':
    case 'add-learner': {
      const { id, peerAddress: peer, httpAddress, uid } = command;
      const body = { id, peerAddress: peer, ...(httpAddress === undefined ? {} : { httpAddress }), ...(uid === undefined ? {} : { uid }), autoPromote: command.verb === 'add' };
      listing = members(await callOk(endpoints, 'POST', '/v1/members', { body, deadlineMs, failWhenUnreachable: true }));
      if (command.verb === 'add') {
        out.err(`${id} added as a learner; waiting until it has caught up and the leader makes it a voter (at most ${config.timeoutMs} ms)`);
        listing = await untilVoter(endpoints, id, deadlineMs, config.timeoutMs);
      } else {
        out.err(`${id} added as a learner`);
      }
      break;
    }
    case 'promote':
      listing = members(await callOk(endpoints, 'POST', path(command.id, '/promote'), { deadlineMs, failWhenUnreachable: true }));
      out.err(`${command.id} is a voter`);
      break;
    case 'remove':
      listing = members(await callOk(endpoints, 'DELETE', path(command.id), { deadlineMs, failWhenUnreachable: true }));
      out.err(`${command.id} removed; its id cannot be used again`);
      break;
  }
  if (config.output === 'json') out.out(JSON.stringify(listing, null, 2));
  else for (const line of membersTable(listing)) out.out(line);
  return EXIT_OK;
}

export async function runLeader(config: LeaderConfig, out: Output): Promise<number> {
  const query = config.to === undefined ? '' : `?to=${encodeURIComponent(config.to)}`;
  const answer = await callOk(config.endpoints, 'POST', `/v1/leader/transfer${query}`, { deadlineMs: performance.now() + config.timeoutMs, failWhenUnreachable: true });
  const moved = answer.body as { from?: unknown; to?: unknown; leader?: unknown };
  if (typeof moved.from !== 'string' || typeof moved.to !== 'string' || typeof moved.leader !== 'string') {
    throw new Error(`${answer.endpoint} answered something that is not a transfer: ${JSON.stringify(answer.body).slice(0, 200)}`);
  }
  if (config.output === 'json') out.out(JSON.stringify(moved, null, 2));
  else for (const line of table([['FROM', 'TO', 'LEADER'], [moved.from, moved.to, moved.leader]])) out.out(line);
  if (moved.leader !== moved.to) {
    out.err(`leadership went to ${moved.leader}, not ${moved.to} (another election won first)`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/**
 * The members as the leader sees them (only it knows how far each has replicated): the first
 * endpoint that answers, then, if that was not the leader, the leader at its HTTP address.
 */
async function leaderView(endpoints: Endpoints, deadlineMs: number): Promise<MembersJson> {
  const first = members(await callOk(endpoints, 'GET', '/v1/members', { deadlineMs, failWhenUnreachable: true }));
  const leader = first.members.find((m) => m.isLeader);
  if (leader === undefined || leader.match !== null || leader.httpAddress === null) return first;
  const fromLeader = await call({ urls: [leader.httpAddress], source: `the leader's address` }, 'GET', '/v1/members', { deadlineMs: performance.now() + LEADER_VIEW_TIMEOUT_MS }).catch(() => null);
  if (fromLeader === null || fromLeader.status !== 200) return first;
  const view = members(fromLeader);
  return view.leader === leader.id ? view : first;
}

/** Polls until `id` is a voter; a NoAnswerError or an explanation of where it stands at the deadline. */
async function untilVoter(endpoints: Endpoints, id: NodeId, deadlineMs: number, timeoutMs: number): Promise<MembersJson> {
  for (;;) {
    const view = await leaderView(endpoints, deadlineMs);
    const member = view.members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`${id} is no longer a member (removed meanwhile?)`);
    if (member.role === 'voter') return view;
    if (performance.now() + PROMOTION_POLL_MS > deadlineMs) {
      const where = member.lag === null ? '' : ` (${member.replication ?? 'unknown'}, ${member.lag} entries behind)`;
      throw new Error(
        `${id} is still a learner after ${timeoutMs} ms${where}: it is catching up, or the leader cannot reach it at ${member.peerAddress ?? 'its peer address'}. The leader promotes it once it has caught up; check with raftkv member list`,
      );
    }
    await sleep(PROMOTION_POLL_MS);
  }
}

function members(answer: { endpoint: string; body: unknown }): MembersJson {
  const body = answer.body as Partial<MembersJson> | null;
  if (body === null || typeof body !== 'object' || !Array.isArray(body.members) || !(body.leader === null || typeof body.leader === 'string')) {
    throw new Error(`${answer.endpoint} answered something that is not a member list: ${JSON.stringify(answer.body).slice(0, 200)}`);
  }
  return body as MembersJson;
}

export function membersTable(listing: MembersJson): string[] {
  const dash = (value: string | number | null): string => (value === null ? '-' : String(value));
  const rows = listing.members.map((m: MemberJson) => [
    m.id,
    m.role,
    m.isLeader ? 'yes' : '',
    dash(m.peerAddress),
    dash(m.httpAddress),
    m.autoPromote ? 'yes' : 'no',
    dash(m.match),
    dash(m.lag),
    dash(m.replication),
  ]);
  const lines = table([['ID', 'ROLE', 'LEADER', 'PEER ADDRESS', 'HTTP ADDRESS', 'AUTO-PROMOTE', 'MATCH', 'LAG', 'REPLICATION'], ...rows]);
  if (listing.leader === null) lines.push('no leader known');
  else if (listing.members.every((m) => m.match === null)) lines.push(`MATCH and LAG are known on the leader only (${listing.leader}), which did not answer`);
  return lines;
}

/** Columns padded to their widest cell, two spaces apart. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, k) => Math.max(...rows.map((row) => row[k]!.length)));
  return rows.map((row) => row.map((cell, k) => (k === row.length - 1 ? cell : cell.padEnd(widths[k]!))).join('  ').trimEnd());
}
