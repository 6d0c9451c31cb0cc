/**
 * `raftkv start --join URL`: a new node learns the cluster from a member (the members' peer and
 * HTTP addresses, the cluster id), starts with no configuration, and asks the leader to add it as
 * a learner. What it learned is kept in `<dataDir>/join.json`: the founding members' addresses
 * are in no replicated record (only members added by a change are), and a restarted node needs
 * them to reach its peers.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RaftKvNode } from '@raftkv/node';
import { ErrorCode, type NodeId } from '@raftkv/raft';
import type { MembersJson } from '@raftkv/server';
import type { Logger } from 'pino';
import type { JoinConfig, StartConfig } from './args.js';
import { ApiError, call, NoAnswerError, OutcomeUnknownError, type Endpoints } from './endpoints.js';

export const JOIN_RECORD_FILE = 'join.json';
/** How long a new node keeps asking the --join URLs who the members are before it gives up (it has not started yet). */
export const JOIN_DISCOVERY_TIMEOUT_MS = 30_000;
/** Back-off ceiling while asking to be added: the cluster may be electing, or busy with another change. */
const ADD_RETRY_DELAY_MAX_MS = 5_000;

/** What `<dataDir>/join.json` holds. */
interface JoinRecord {
  readonly clusterId: string;
  readonly peers: Readonly<Record<NodeId, string>>;
  readonly httpPeers: Readonly<Record<NodeId, string>>;
  /** The URLs it was learned from. */
  readonly learnedFrom: string;
}

export interface JoinStart {
  /** Whether the data directory was empty: this start creates the node. */
  readonly fresh: boolean;
  /** Where the other members are, by id (this node's own entries not included). */
  readonly peers: Readonly<Record<NodeId, string>>;
  readonly httpPeers: Readonly<Record<NodeId, string>>;
  /** The cluster's id, for a fresh data directory (an existing one keeps its own). */
  readonly clusterId?: string;
}

/** Thrown when the cluster will not take this node; the start fails with it. */
export class JoinError extends Error {
  override readonly name = 'JoinError';
}

/**
 * Before the node starts: with an empty data directory, learns the cluster through `join.urls`
 * and records it; with state there, reads the record and changes nothing.
 */
export async function prepareJoin(config: StartConfig, settings: JoinConfig, log: Logger): Promise<JoinStart> {
  const recordPath = join(config.dataDir, JOIN_RECORD_FILE);
  // The log store is the node's first directory: its presence means the node has started here before.
  if (existsSync(join(config.dataDir, 'log'))) {
    // Without the record this node would know only the members added after it: it could not
    // reach the founding ones. A directory a founding member made is started as it was made.
    if (!existsSync(recordPath)) {
      throw new JoinError(`${config.dataDir} holds a node's state but no ${JOIN_RECORD_FILE}: it was not made by --join. Start this node as it was first started (--peers and --http-peers)`);
    }
    const record = await readRecord(recordPath);
    log.info({ nodeId: config.id, join: settings.urls, record: recordPath }, 'data directory holds state; --join changes nothing');
    return { fresh: false, peers: record.peers, httpPeers: record.httpPeers };
  }
  const endpoints: Endpoints = { urls: settings.urls, source: '--join' };
  const learned = await learnCluster(endpoints, config, log);
  await mkdir(config.dataDir, { recursive: true });
  // Written whole or not at all: a torn record would strand the node after a restart.
  await writeFile(`${recordPath}.tmp`, `${JSON.stringify(learned, null, 2)}\n`);
  await rename(`${recordPath}.tmp`, recordPath);
  log.info({ nodeId: config.id, clusterId: learned.clusterId, peers: learned.peers, learnedFrom: learned.learnedFrom }, 'learned the cluster to join');
  return { fresh: true, peers: learned.peers, httpPeers: learned.httpPeers, clusterId: learned.clusterId };
}

async function learnCluster(endpoints: Endpoints, config: StartConfig, log: Logger): Promise<JoinRecord> {
  const deadlineMs = performance.now() + JOIN_DISCOVERY_TIMEOUT_MS;
  const onRetry = (why: string): void => log.warn({ nodeId: config.id, why }, 'no member answered --join yet; retrying');
  for (;;) {
    const answer = await call(endpoints, 'GET', '/v1/members', { deadlineMs, onRetry });
    if (answer.status !== 200) throw new ApiError(answer);
    const listing = answer.body as MembersJson;
    if (listing.members.some((m) => m.id === config.id)) {
      throw new JoinError(
        `${config.id} is already a member of the cluster at ${answer.endpoint}, and this data directory is empty. A node that lost its disk never comes back under its old id: remove it (raftkv member remove ${config.id}) and start this machine under a new id`,
      );
    }
    const peers: Record<NodeId, string> = {};
    const httpPeers: Record<NodeId, string> = {};
    for (const m of listing.members) {
      if (m.peerAddress !== null) peers[m.id] = m.peerAddress;
      if (m.httpAddress !== null) httpPeers[m.id] = m.httpAddress;
    }
    // A member that has no configuration itself (one still joining) knows no one: ask the next.
    if (Object.keys(peers).length === 0) {
      if (performance.now() > deadlineMs) throw new NoAnswerError(`no member named at --join knows the cluster's members (${answer.endpoint} lists none)`);
      onRetry(`${answer.endpoint} lists no member with a peer address`);
      await sleep(200);
      continue;
    }
    const status = await call({ urls: [answer.endpoint], source: answer.endpoint }, 'GET', '/v1/status', { deadlineMs });
    const clusterId = (status.body as { clusterId?: unknown }).clusterId;
    if (status.status !== 200 || typeof clusterId !== 'string') throw new ApiError(status);
    if (config.clusterId !== undefined && config.clusterId !== clusterId) {
      throw new JoinError(`the cluster at ${answer.endpoint} has the id ${JSON.stringify(clusterId)}, not --cluster-id ${JSON.stringify(config.clusterId)}`);
    }
    return { clusterId, peers, httpPeers, learnedFrom: answer.endpoint };
  }
}

async function readRecord(path: string): Promise<JoinRecord> {
  const text = await readFile(path, 'utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JoinError(`${path} is not valid JSON (${(error as Error).message}); it records where the members were when this node joined`);
  }
  const r = value as Partial<JoinRecord> | null;
  const isMap = (m: unknown): m is Record<string, string> => typeof m === 'object' && m !== null && Object.values(m).every((v) => typeof v === 'string');
  if (r === null || typeof r.clusterId !== 'string' || !isMap(r.peers) || !isMap(r.httpPeers)) throw new JoinError(`${path} does not have the shape of a join record`);
  return r as JoinRecord;
}

/**
 * Once the node and its HTTP API listen: asks the leader, through `join.urls`, to add this node
 * as a learner (promoted on its own unless --no-auto-promote). Retries, with back-off and without
 * end, while there is no leader, another change is in progress, or no member can be reached;
 * stops when `signal` aborts. Rejects with a JoinError when the cluster refuses the node.
 * A node restarted with state asks only if it was never added (its log holds no configuration).
 */
export async function requestMembership(node: RaftKvNode, config: StartConfig, settings: JoinConfig, start: JoinStart, log: Logger, signal: AbortSignal): Promise<'added' | 'member' | 'waiting'> {
  const me = { id: config.id, peerAddress: config.peers[config.id]!, httpAddress: config.httpPeers[config.id]! };
  const conf = node.status().confState;
  if (!start.fresh && conf.voters.length + conf.learners.length > 0) return 'member';
  if (settings.waitToBeAdded) {
    log.info(
      { nodeId: me.id, ...me },
      `waiting to be added: raftkv member add ${me.id} --peer-address ${me.peerAddress} --http-address ${me.httpAddress} --uid ${node.identity.uid} --endpoints ${settings.urls.join(',')}`,
    );
    return 'waiting';
  }
  if (!start.fresh) log.info({ nodeId: me.id }, 'this node was never added to the cluster; asking again');
  const endpoints: Endpoints = { urls: settings.urls, source: '--join' };
  const body = { id: me.id, peerAddress: me.peerAddress, httpAddress: me.httpAddress, uid: node.identity.uid, autoPromote: settings.autoPromote };
  const onRetry = (why: string, delayMs: number): void => log.warn({ nodeId: me.id, why, retryInMs: delayMs }, 'asking to be added failed; retrying');
  for (;;) {
    let answer;
    try {
      answer = await call(endpoints, 'POST', '/v1/members', { body, deadlineMs: Infinity, signal, onRetry, retryDelayMaxMs: ADD_RETRY_DELAY_MAX_MS });
    } catch (error) {
      if (!(error instanceof OutcomeUnknownError)) throw error;
      // The request left; whether the change was made shows in the member list.
      log.warn({ nodeId: me.id, err: error }, 'the answer to our request to be added was lost; checking the member list');
      if (await isListed(endpoints, me, signal)) return 'added';
      continue;
    }
    if (answer.status === 200) return 'added';
    const refused = new ApiError(answer);
    // Our own earlier request may have been applied without its answer reaching us.
    if (refused.code === ErrorCode.CONF_CHANGE_INVALID && (await isListed(endpoints, me, signal))) return 'added';
    throw new JoinError(`the cluster refused to add ${me.id}: ${refused.code}: ${refused.message}`);
  }
}

/** Whether the cluster lists `me` as a member at its peer address. */
async function isListed(endpoints: Endpoints, me: { id: NodeId; peerAddress: string }, signal: AbortSignal): Promise<boolean> {
  const answer = await call(endpoints, 'GET', '/v1/members', { deadlineMs: Infinity, signal, retryDelayMaxMs: ADD_RETRY_DELAY_MAX_MS });
  if (answer.status !== 200) return false;
  return (answer.body as MembersJson).members.some((m) => m.id === me.id && m.peerAddress === me.peerAddress);
}

/**
 * After the cluster refused a node this start created: removes what the start made in the data
 * directory (the node's empty log and state machine, the join record), so that the machine can
 * try again, under another id, with the same command otherwise. Nothing there was ever part of
 * the cluster.
 */
export async function undoJoin(config: StartConfig): Promise<void> {
  await Promise.all(['log', 'kv', JOIN_RECORD_FILE].map((name) => rm(join(config.dataDir, name), { recursive: true, force: true })));
}
