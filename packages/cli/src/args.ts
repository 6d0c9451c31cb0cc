/**
 * Command-line and config-file parsing for every `raftkv` command. Pure: no process, no socket;
 * a bad argument throws a UsageError whose message names it (main.ts prints it, exit status 2).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseAddress, resolveNodeOptions } from '@raftkv/node';
import { isRaftKvError, type NodeId } from '@raftkv/raft';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A bad command line or config file: printed with a pointer to `--help`, exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Node ids become file names (`<dir>/<id>`) and URL parts: keep them plain. */
const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Nodes one `raftkv cluster` runs at most (it is a local demo, not a deployment tool). */
export const CLUSTER_NODES_MAX = 9;

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface StartConfig {
  readonly id: NodeId;
  readonly dataDir: string;
  /** Where this node listens for peers (default: its own entry in `peers`). */
  readonly peerListen: HostPort;
  /** Where this node's HTTP API listens (default: host and port of its own entry in `httpPeers`). */
  readonly httpListen: HostPort;
  /** Peer addresses by node id, this node's own (where the others reach it) among them. */
  readonly peers: Readonly<Record<NodeId, string>>;
  /** HTTP base URLs by node id, this node's own among them. */
  readonly httpPeers: Readonly<Record<NodeId, string>>;
  /** The founding voters; absent for a node that joins a running cluster (`join`). */
  readonly members?: readonly NodeId[];
  readonly clusterId?: string;
  readonly tickMs?: number;
  readonly electionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly snapshotEveryEntries?: number;
  readonly snapshotCatchupEntries?: number;
  readonly logLevel: LogLevel;
  /** Join a running cluster through these members rather than found one (`--join`). */
  readonly join?: JoinConfig;
}

export interface JoinConfig {
  /** HTTP base URLs of members of the cluster, tried in turn. */
  readonly urls: readonly string[];
  /** Ask to be made a voter once caught up (`--no-auto-promote`: stay a learner). */
  readonly autoPromote: boolean;
  /** Do not ask to be added: an operator adds the node (`raftkv member add`). */
  readonly waitToBeAdded: boolean;
}

/** `--flag` → the config file key it overrides. The config file uses the camelCase keys. */
const START_FLAGS = {
  id: 'id',
  'data-dir': 'dataDir',
  'peer-addr': 'peerAddr',
  'http-addr': 'httpAddr',
  peers: 'peers',
  'http-peers': 'httpPeers',
  'cluster-id': 'clusterId',
  'tick-ms': 'tickMs',
  'election-timeout-ms': 'electionTimeoutMs',
  'heartbeat-interval-ms': 'heartbeatIntervalMs',
  'snapshot-every': 'snapshotEvery',
  'snapshot-catchup': 'snapshotCatchup',
  'log-level': 'logLevel',
  join: 'join',
} as const;
/** Flags without a value, the config file key each sets, and the value it sets. */
const START_SWITCHES = {
  'no-auto-promote': ['autoPromote', false],
  'wait-to-be-added': ['waitToBeAdded', true],
} as const;
type StartKey = (typeof START_FLAGS)[keyof typeof START_FLAGS] | (typeof START_SWITCHES)[keyof typeof START_SWITCHES][0];
const START_KEYS: readonly StartKey[] = [...Object.values(START_FLAGS), ...Object.values(START_SWITCHES).map(([key]) => key)];

export const START_USAGE = `usage: raftkv start --id ID --data-dir DIR --peers ID=HOST:PORT,... --http-peers ID=URL,... [options]
       raftkv start --id ID --data-dir DIR --join URL[,URL...] --peer-addr HOST:PORT --http-addr HOST:PORT [options]

Runs one raftkv node and its HTTP API in this process. Logs are JSON lines on stdout; one
human-readable line goes to stderr once the node listens. SIGINT or SIGTERM stops it cleanly.
The first form founds a cluster whose members are the ids of --peers; the second joins a
running one.

  --id ID                      this node's id (one of --peers)
  --data-dir DIR               where the node keeps its log and state machine
  --peers n1=H:P,n2=H:P,...    peer (Raft) address of every node, this one included
  --http-peers n1=URL,...      HTTP base URL of every node (for forwarding writes to the leader)
  --peer-addr HOST:PORT        where to listen for peers (default: this node's --peers entry)
  --http-addr HOST:PORT        where the HTTP API listens (default: from this node's --http-peers URL)
  --cluster-id ID              nodes refuse peers of another cluster id (default raftkv)
  --tick-ms N                  Raft tick (default 100)
  --election-timeout-ms N      election timeout, a multiple of the tick (default 1000)
  --heartbeat-interval-ms N    heartbeat interval, a multiple of the tick (default 100)
  --snapshot-every N           compact the log every N applied entries (default 10000)
  --snapshot-catchup N         entries kept below each compaction, so that a follower that far
                               behind catches up from the log, not a snapshot (default 5000)
  --log-level LEVEL            ${LOG_LEVELS.join(', ')} (default info)
  --config FILE.json           read options from a JSON file (camelCase keys: dataDir, peers, ...;
                               relative paths are relative to the file); flags override it

Joining a running cluster (a new machine, or one replacing a dead one under a new id):
  --join URL[,URL...]          HTTP URLs of members. With an empty data directory: learn the
                               members and the cluster id from the first that answers, start
                               with no configuration, and ask the leader to add this node as a
                               learner, promoted to voter once caught up. With a data directory
                               that holds state, it changes nothing. --peers and --http-peers
                               may then name only this node (where the others reach it; default
                               --peer-addr and http://--http-addr)
  --no-auto-promote            join as a learner that stays one (raftkv member promote ID)
  --wait-to-be-added           do not ask to be added: wait for raftkv member add (or add-learner)
`;

/** Parses `raftkv start` arguments (after the command name). `readText` reads `--config`. */
export function parseStartArgs(argv: readonly string[], readText: (path: string) => string = (path) => readFileSync(path, 'utf8')): StartConfig {
  const options: ParseOptions = Object.fromEntries([...Object.keys(START_FLAGS), 'config'].map((flag) => [flag, { type: 'string' as const }]));
  for (const flag of Object.keys(START_SWITCHES)) options[flag] = { type: 'boolean' };
  const { values } = parseStrict(argv, options, false);
  const raw: Partial<Record<StartKey, unknown>> = {};
  let baseDir = '.';
  const configPath = values['config'];
  if (typeof configPath === 'string') {
    Object.assign(raw, readConfigFile(configPath, readText));
    baseDir = dirname(configPath);
  }
  for (const [flag, key] of Object.entries(START_FLAGS)) {
    const value = values[flag];
    if (typeof value === 'string') raw[key] = value;
  }
  for (const [flag, [key, set]] of Object.entries(START_SWITCHES)) if (values[flag] === true) raw[key] = set;
  // A data directory from the config file is relative to the file; one from a flag, to the cwd.
  if (typeof raw.dataDir === 'string' && typeof values['data-dir'] !== 'string') raw.dataDir = resolve(baseDir, raw.dataDir);
  return validateStart(raw);
}

function readConfigFile(path: string, readText: (path: string) => string): Partial<Record<StartKey, unknown>> {
  let text: string;
  try {
    text = readText(path);
  } catch (error) {
    throw new UsageError(`cannot read config file ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`config file ${path} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`config file ${path} must hold a JSON object`);
  const unknown = Object.keys(value).filter((key) => !(START_KEYS as readonly string[]).includes(key));
  if (unknown.length > 0) throw new UsageError(`config file ${path}: unknown key ${unknown.map((k) => JSON.stringify(k)).join(', ')} (known: ${START_KEYS.join(', ')})`);
  return value as Partial<Record<StartKey, unknown>>;
}

function validateStart(raw: Partial<Record<StartKey, unknown>>): StartConfig {
  if (raw.join !== undefined) return validateJoinStart(raw);
  for (const [flag, [key]] of Object.entries(START_SWITCHES)) {
    if (raw[key] !== undefined) throw new UsageError(`--${flag} applies only with --join`);
  }
  const id = required('id', raw.id, nodeId);
  const dataDir = required('data-dir', raw.dataDir, nonEmpty);
  const peers = required('peers', raw.peers, (name, v) => idMap(name, v, peerAddress));
  const httpPeers = required('http-peers', raw.httpPeers, (name, v) => idMap(name, v, httpUrl));
  const members = Object.keys(peers);
  const ownPeer = peers[id];
  const ownHttp = httpPeers[id];
  if (ownPeer === undefined) throw new UsageError(`--peers has no entry for this node's id ${id} (it has ${members.join(', ')})`);
  if (ownHttp === undefined) throw new UsageError(`--http-peers has no entry for this node's id ${id}`);
  const httpIds = Object.keys(httpPeers);
  if (httpIds.length !== members.length || !httpIds.every((n) => members.includes(n))) {
    throw new UsageError(`--peers and --http-peers must name the same nodes (peers: ${members.join(', ')}; http-peers: ${httpIds.join(', ')})`);
  }
  const peerListen = raw.peerAddr === undefined ? parseAddress(ownPeer) : hostPort('peer-addr', raw.peerAddr);
  const httpListen = raw.httpAddr === undefined ? urlHostPort(ownHttp) : hostPort('http-addr', raw.httpAddr);
  const config: StartConfig = {
    id,
    dataDir,
    peerListen,
    httpListen,
    peers,
    httpPeers,
    members,
    ...commonStartOptions(raw),
  };
  checkNodeOptions(config);
  return config;
}

/** The options a founding node and a joining node share. */
function commonStartOptions(raw: Partial<Record<StartKey, unknown>>): Pick<StartConfig, 'logLevel' | 'clusterId' | 'tickMs' | 'electionTimeoutMs' | 'heartbeatIntervalMs' | 'snapshotEveryEntries' | 'snapshotCatchupEntries'> {
  return {
    logLevel: optional('log-level', raw.logLevel, logLevel) ?? 'info',
    ...defined('clusterId', optional('cluster-id', raw.clusterId, nonEmpty)),
    ...defined('tickMs', optional('tick-ms', raw.tickMs, positiveInt)),
    ...defined('electionTimeoutMs', optional('election-timeout-ms', raw.electionTimeoutMs, positiveInt)),
    ...defined('heartbeatIntervalMs', optional('heartbeat-interval-ms', raw.heartbeatIntervalMs, positiveInt)),
    ...defined('snapshotEveryEntries', optional('snapshot-every', raw.snapshotEvery, positiveInt)),
    ...defined('snapshotCatchupEntries', optional('snapshot-catchup', raw.snapshotCatchup, nonNegativeInt)),
  };
}

/**
 * `raftkv start --join`: the other members' addresses come from the cluster, so --peers and
 * --http-peers may name only this node, and say where the others reach it; without them the
 * listen addresses are advertised, which must then be addresses others can dial.
 */
function validateJoinStart(raw: Partial<Record<StartKey, unknown>>): StartConfig {
  const id = required('id', raw.id, nodeId);
  const dataDir = required('data-dir', raw.dataDir, nonEmpty);
  const urls = urlList('join', raw.join);
  const given = {
    peers: raw.peers === undefined ? {} : idMap('peers', raw.peers, peerAddress),
    'http-peers': raw.httpPeers === undefined ? {} : idMap('http-peers', raw.httpPeers, httpUrl),
  };
  for (const [flag, map] of Object.entries(given)) {
    const others = Object.keys(map).filter((n) => n !== id);
    if (others.length > 0) {
      throw new UsageError(`--${flag} names ${others.join(', ')}: with --join the cluster says where its members are; give only this node's entry (${id}=...), or none`);
    }
  }
  const ownPeer = given.peers[id];
  const ownHttp = given['http-peers'][id];
  if (raw.peerAddr === undefined && ownPeer === undefined) throw new UsageError(`--join needs --peer-addr HOST:PORT (or --peers ${id}=HOST:PORT): where this node listens for peers`);
  if (raw.httpAddr === undefined && ownHttp === undefined) throw new UsageError(`--join needs --http-addr HOST:PORT (or --http-peers ${id}=URL): where this node serves HTTP`);
  const peerListen = raw.peerAddr === undefined ? parseAddress(ownPeer!) : hostPort('peer-addr', raw.peerAddr);
  const httpListen = raw.httpAddr === undefined ? urlHostPort(ownHttp!) : hostPort('http-addr', raw.httpAddr);
  const advertised = (flag: string, entryFlag: string, address: HostPort): string => {
    if (['0.0.0.0', '::', ''].includes(address.host)) {
      throw new UsageError(`--${flag} ${formatHostPort(address)} listens on every interface: give --${entryFlag} ${id}=... to say where the other members reach this node`);
    }
    return formatHostPort(address);
  };
  const autoPromote = optional('no-auto-promote', raw.autoPromote, boolean) ?? true;
  const waitToBeAdded = optional('wait-to-be-added', raw.waitToBeAdded, boolean) ?? false;
  if (waitToBeAdded && !autoPromote) {
    throw new UsageError('--no-auto-promote has no effect with --wait-to-be-added: whoever adds the node decides (raftkv member add, or add-learner)');
  }
  const config: StartConfig = {
    id,
    dataDir,
    peerListen,
    httpListen,
    peers: { [id]: ownPeer ?? advertised('peer-addr', 'peers', peerListen) },
    httpPeers: { [id]: ownHttp ?? `http://${advertised('http-addr', 'http-peers', httpListen)}` },
    join: { urls, autoPromote, waitToBeAdded },
    ...commonStartOptions(raw),
  };
  checkNodeOptions(config);
  return config;
}

/** The node's own validation (timeouts are multiples of the tick, ...), reported as usage. */
function checkNodeOptions(c: StartConfig): void {
  try {
    resolveNodeOptions({
      id: c.id,
      dataDir: c.dataDir,
      ...defined('members', c.members),
      peers: c.peers,
      listen: c.peerListen,
      ...defined('clusterId', c.clusterId),
      ...defined('tickMs', c.tickMs),
      ...defined('electionTimeoutMs', c.electionTimeoutMs),
      ...defined('heartbeatIntervalMs', c.heartbeatIntervalMs),
      ...defined('snapshotEveryEntries', c.snapshotEveryEntries),
      ...defined('snapshotCatchupEntries', c.snapshotCatchupEntries),
    });
  } catch (error) {
    if (isRaftKvError(error)) throw new UsageError(error.message);
    throw error;
  }
}

// ------------------------------------------------------------------------------------ cluster

export interface ClusterConfig {
  readonly dir: string;
  readonly host: string;
  readonly basePort: number;
  readonly httpBasePort: number;
  readonly nodes: number;
  readonly tickMs?: number;
  readonly electionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly logLevel: LogLevel;
  /** How long a node may take to stop after SIGTERM before it gets SIGKILL. */
  readonly stopTimeoutMs: number;
}

export const CLUSTER_DEFAULTS = { dir: './raftkv-data', host: '127.0.0.1', basePort: 7001, httpBasePort: 8001, nodes: 3, stopTimeoutMs: 10_000 } as const;

export const CLUSTER_USAGE = `usage: raftkv cluster [options]

Runs a local cluster: one OS process per node (\`raftkv start\`), supervised. Node i (1-based)
listens for peers on base-port + i - 1 and serves HTTP on http-base-port + i - 1, keeps its data
in DIR/n<i> (a second run finds it again) and writes its output to DIR/n<i>.log. A node that
exits unexpectedly is restarted, with back-off. Ctrl-C (SIGINT) or SIGTERM stops every node.

  --dir DIR                    data and log directory (default ${CLUSTER_DEFAULTS.dir})
  --base-port N                first peer port (default ${CLUSTER_DEFAULTS.basePort})
  --http-base-port N           first HTTP port (default ${CLUSTER_DEFAULTS.httpBasePort})
  --nodes N                    number of nodes, 1 to ${CLUSTER_NODES_MAX} (default ${CLUSTER_DEFAULTS.nodes})
  --host HOST                  address every node listens on (default ${CLUSTER_DEFAULTS.host})
  --tick-ms, --election-timeout-ms, --heartbeat-interval-ms N
                               passed to every node (see raftkv start --help)
  --log-level LEVEL            log level of the nodes (default info)
  --stop-timeout-ms N          SIGKILL a node that has not stopped this long after SIGTERM (default ${CLUSTER_DEFAULTS.stopTimeoutMs})
`;

export function parseClusterArgs(argv: readonly string[]): ClusterConfig {
  const flags = ['dir', 'host', 'base-port', 'http-base-port', 'nodes', 'tick-ms', 'election-timeout-ms', 'heartbeat-interval-ms', 'log-level', 'stop-timeout-ms'];
  const { values } = parseStrict(argv, Object.fromEntries(flags.map((f) => [f, { type: 'string' as const }])), false);
  const v = (flag: string): string | undefined => {
    const value = values[flag];
    return typeof value === 'string' ? value : undefined;
  };
  const config: ClusterConfig = {
    dir: optional('dir', v('dir'), nonEmpty) ?? CLUSTER_DEFAULTS.dir,
    host: optional('host', v('host'), nonEmpty) ?? CLUSTER_DEFAULTS.host,
    basePort: optional('base-port', v('base-port'), port) ?? CLUSTER_DEFAULTS.basePort,
    httpBasePort: optional('http-base-port', v('http-base-port'), port) ?? CLUSTER_DEFAULTS.httpBasePort,
    nodes: optional('nodes', v('nodes'), positiveInt) ?? CLUSTER_DEFAULTS.nodes,
    logLevel: optional('log-level', v('log-level'), logLevel) ?? 'info',
    stopTimeoutMs: optional('stop-timeout-ms', v('stop-timeout-ms'), positiveInt) ?? CLUSTER_DEFAULTS.stopTimeoutMs,
    ...defined('tickMs', optional('tick-ms', v('tick-ms'), positiveInt)),
    ...defined('electionTimeoutMs', optional('election-timeout-ms', v('election-timeout-ms'), positiveInt)),
    ...defined('heartbeatIntervalMs', optional('heartbeat-interval-ms', v('heartbeat-interval-ms'), positiveInt)),
  };
  if (config.nodes > CLUSTER_NODES_MAX) throw new UsageError(`--nodes must be at most ${CLUSTER_NODES_MAX}, got ${config.nodes}`);
  for (const [flag, base] of [['base-port', config.basePort], ['http-base-port', config.httpBasePort]] as const) {
    if (base + config.nodes - 1 > 65_535) throw new UsageError(`--${flag} ${base} + ${config.nodes} nodes goes past port 65535`);
  }
  if (Math.abs(config.basePort - config.httpBasePort) < config.nodes) {
    throw new UsageError(`peer ports ${config.basePort}.. and HTTP ports ${config.httpBasePort}.. overlap for ${config.nodes} nodes`);
  }
  // Every node gets the same options: checking the first node's checks them all.
  parseStartArgs(clusterNodeArgs(config, clusterIds(config)[0]!));
  return config;
}

/** `n1`, `n2`, ... */
export function clusterIds(config: Pick<ClusterConfig, 'nodes'>): NodeId[] {
  return Array.from({ length: config.nodes }, (_, i) => `n${i + 1}`);
}

export interface ClusterNodeAddresses {
  readonly peer: string;
  readonly http: string;
}

export function clusterAddresses(config: ClusterConfig): Map<NodeId, ClusterNodeAddresses> {
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return new Map(clusterIds(config).map((id, i) => [id, { peer: `${host}:${config.basePort + i}`, http: `http://${host}:${config.httpBasePort + i}` }]));
}

/** The `raftkv start` arguments of node `id` of a local cluster. */
export function clusterNodeArgs(config: ClusterConfig, id: NodeId): string[] {
  const addresses = [...clusterAddresses(config)];
  const list = (pick: (a: ClusterNodeAddresses) => string): string => addresses.map(([n, a]) => `${n}=${pick(a)}`).join(',');
  const args = ['--id', id, '--data-dir', resolve(config.dir, id), '--peers', list((a) => a.peer), '--http-peers', list((a) => a.http), '--log-level', config.logLevel];
  if (config.tickMs !== undefined) args.push('--tick-ms', String(config.tickMs));
  if (config.electionTimeoutMs !== undefined) args.push('--election-timeout-ms', String(config.electionTimeoutMs));
  if (config.heartbeatIntervalMs !== undefined) args.push('--heartbeat-interval-ms', String(config.heartbeatIntervalMs));
  return args;
}

// ------------------------------------------------------------------------------------- status

export interface StatusConfig {
  /** Base URL of the node's HTTP API, without a trailing slash. */
  readonly url: string;
  readonly timeoutMs: number;
}

export const STATUS_USAGE = `usage: raftkv status URL [--timeout-ms N]

Prints a node's view of the cluster (GET URL/v1/status): role, term, leader, commit and applied
indexes and, on the leader, each peer's replication progress. Exit status 1 if it cannot be read.
URL is the node's HTTP base, e.g. http://127.0.0.1:8001 (http:// may be left out).
`;

export function parseStatusArgs(argv: readonly string[]): StatusConfig {
  const { values, positionals } = parseStrict(argv, { 'timeout-ms': { type: 'string' } }, true);
  if (positionals.length !== 1) throw new UsageError(`expected one URL, got ${positionals.length} arguments`);
  const given = positionals[0]!;
  const url = httpUrl('URL', /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`);
  const timeoutMs = optional('timeout-ms', values['timeout-ms'], positiveInt) ?? 5_000;
  return { url, timeoutMs };
}

// ------------------------------------------------------------------------------------ helpers

export type ParseOptions = Record<string, { type: 'string'; short?: string } | { type: 'boolean'; short?: string }>;

export function parseStrict(argv: readonly string[], options: ParseOptions, allowPositionals: boolean): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (error) {
    // parseArgs's messages name the flag; its error codes (ERR_PARSE_ARGS_*) say nothing more.
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

export type Check<T> = (name: string, value: unknown) => T;

export function required<T>(name: string, value: unknown, check: Check<T>): T {
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return check(name, value);
}

export function optional<T>(name: string, value: unknown, check: Check<T>): T | undefined {
  return value === undefined ? undefined : check(name, value);
}

/** `{ key: value }` when value is defined, else `{}` (for exactOptionalPropertyTypes). */
function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

export function nonEmpty(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}

export function nodeId(name: string, value: unknown): NodeId {
  const id = nonEmpty(name, value);
  if (!NODE_ID_PATTERN.test(id)) throw new UsageError(`--${name}: node id ${JSON.stringify(id)} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`);
  return id;
}

export function positiveInt(name: string, value: unknown): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

function nonNegativeInt(name: string, value: unknown): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be an integer >= 0, got ${JSON.stringify(value)}`);
  return n;
}

function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new UsageError(`--${name}: expected true or false in the config file, got ${JSON.stringify(value)}`);
  return value;
}

function port(name: string, value: unknown): number {
  const n = positiveInt(name, value);
  if (n > 65_535) throw new UsageError(`--${name} must be a port number (1-65535), got ${n}`);
  return n;
}

function logLevel(name: string, value: unknown): LogLevel {
  if (!(LOG_LEVELS as readonly unknown[]).includes(value)) throw new UsageError(`--${name} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`);
  return value as LogLevel;
}

function hostPort(name: string, value: unknown): HostPort {
  const text = nonEmpty(name, value);
  let address: HostPort;
  try {
    address = parseAddress(text);
  } catch {
    throw new UsageError(`--${name}: ${JSON.stringify(text)} is not HOST:PORT`);
  }
  if (address.port === 0) throw new UsageError(`--${name}: port 0 is not allowed (the other nodes must know the port)`);
  return address;
}

export function peerAddress(name: string, value: unknown): string {
  hostPort(name, value);
  return value as string;
}

/** An http(s) base URL with an explicit port, normalised to have no trailing slash. */
export function httpUrl(name: string, value: unknown): string {
  const text = nonEmpty(name, value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--${name}: ${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--${name}: ${JSON.stringify(text)} must be an http:// or https:// URL`);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') throw new UsageError(`--${name}: ${JSON.stringify(text)} must be a base URL (no path, query or fragment)`);
  return url.origin;
}

/**
 * `URL[,URL...]` (a flag) or an array of URLs (the config file): members' HTTP APIs, each an
 * http:// base URL (a node serves plain HTTP only).
 */
export function urlList(name: string, value: unknown): string[] {
  const parts = typeof value === 'string' ? value.split(',').map((part) => part.trim()) : Array.isArray(value) ? (value as unknown[]) : null;
  if (parts === null || parts.length === 0) throw new UsageError(`--${name} must be URL[,URL...]`);
  return parts.map((part) => {
    const url = httpUrl(name, part);
    if (!url.startsWith('http://')) throw new UsageError(`--${name}: ${JSON.stringify(part)}: a node serves plain HTTP; give its http:// URL`);
    return url;
  });
}

function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function urlHostPort(base: string): HostPort {
  const url = new URL(base);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port) };
}

/** `n1=a,n2=b` (a flag) or `{ "n1": "a", "n2": "b" }` (the config file) → a map by node id. */
function idMap(name: string, value: unknown, check: Check<string>): Record<NodeId, string> {
  let pairs: [string, unknown][];
  if (typeof value === 'string') {
    pairs = value.split(',').map((part) => {
      const at = part.indexOf('=');
      if (at <= 0) throw new UsageError(`--${name}: ${JSON.stringify(part)} is not ID=ADDRESS`);
      return [part.slice(0, at).trim(), part.slice(at + 1).trim()];
    });
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    pairs = Object.entries(value);
  } else {
    throw new UsageError(`--${name} must be ID=ADDRESS,... (or an object in the config file)`);
  }
  if (pairs.length === 0) throw new UsageError(`--${name} names no node`);
  const map: Record<NodeId, string> = {};
  for (const [id, address] of pairs) {
    nodeId(name, id);
    if (Object.hasOwn(map, id)) throw new UsageError(`--${name} names node ${id} twice`);
    map[id] = check(name, address);
  }
  return map;
}

