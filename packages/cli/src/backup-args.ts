/**
 * Command lines of `raftkv backup`, `raftkv backup inspect`, `raftkv restore` and `raftkv recover`
 * (docs/operations.md, "Back up and restore" and "Losing a majority"). Pure, as args.ts: a bad
 * argument throws a UsageError naming it.
 */
import type { NodeId } from '@raftkv/raft';
import { httpUrl, nodeId, nonEmpty, optional, parseStrict, positiveInt, required, UsageError } from './args.js';

export interface BackupTakeConfig {
  readonly kind: 'take';
  /** Base URL of the node's HTTP API, without a trailing slash. */
  readonly url: string;
  readonly file: string;
  readonly json: boolean;
  /** Give up when no byte has arrived for this long. */
  readonly idleTimeoutMs: number;
}

export interface BackupInspectConfig {
  readonly kind: 'inspect';
  readonly file: string;
  readonly json: boolean;
}

export type BackupConfig = BackupTakeConfig | BackupInspectConfig;

export interface RestoreConfig {
  readonly file: string;
  readonly dataDir: string;
  readonly id: NodeId;
  readonly members: readonly NodeId[];
  readonly clusterId?: string;
}

export interface RecoverConfig {
  readonly dataDir: string;
  readonly clusterId?: string;
}

export const BACKUP_IDLE_TIMEOUT_MS_DEFAULT = 60_000;

export const BACKUP_USAGE = `usage: raftkv backup --from URL FILE [--json] [--idle-timeout-ms N]
       raftkv backup inspect FILE [--json]

Takes a backup of a running cluster. The node at URL first confirms with the leader that it has
applied every write acknowledged so far (a linearizable read), then streams its state machine
(GET URL/v1/backup). The file is written under a temporary name next to FILE, synced, verified
from end to end, and only then renamed to FILE. An existing FILE is never overwritten. Prints
the backup's metadata.

\`backup inspect\` verifies a backup file (its SHA-256, its image, its metadata) and prints the
metadata. Exit status 1 when the file does not verify.

  --from URL             HTTP base URL of any node, e.g. http://10.0.0.2:8001 (a follower spares the leader)
  --json                 print the metadata as one JSON object
  --idle-timeout-ms N    give up when no byte arrives for N ms (default ${BACKUP_IDLE_TIMEOUT_MS_DEFAULT})
`;

export const RESTORE_USAGE = `usage: raftkv restore FILE --data-dir DIR --id ID --members ID,ID,... [--cluster-id ID]

Builds the data directory of one member of a NEW cluster from a backup file. Run it once per
member, each with its own --id and the same FILE and --members, then start every node with
\`raftkv start\` as usual. The whole file is verified first: a damaged file is refused before
anything is written. DIR must be empty or absent.

  --data-dir DIR         the new member's data directory (empty or absent)
  --id ID                this member's id, one of --members
  --members ID,ID,...    the voters of the new cluster
  --cluster-id ID        the new cluster's id (default: derived from the file's SHA-256 and the
                         member list, the same for every member; never the source cluster's id)
`;

export const RECOVER_USAGE = `usage: raftkv recover --force-new-cluster --data-dir DIR [--cluster-id ID]

Only when a majority of the cluster's members is gone for good. Rewrites the data directory of
a stopped survivor so that it starts as a one-member cluster, from its own state machine, under
a new cluster id that the old members can never join. Writes this node did not know to be
committed are lost: read docs/operations.md, "Losing a majority", first. Then start the node with
\`raftkv start\`, its own entry only in --peers, and add new machines as learners.

  --force-new-cluster    required: confirms that the other members are gone for good
  --data-dir DIR         the survivor's data directory (its node stopped)
  --cluster-id ID        the new cluster's id (default: the old id, "-recovered-" and a random suffix)
`;

export function parseBackupArgs(argv: readonly string[]): BackupConfig {
  if (argv[0] === 'inspect') {
    const { values, positionals } = parseStrict(argv.slice(1), { json: { type: 'boolean' } }, true);
    if (positionals.length !== 1) throw new UsageError(`backup inspect takes one FILE, got ${positionals.length} arguments`);
    return { kind: 'inspect', file: nonEmpty('FILE', positionals[0]), json: values['json'] === true };
  }
  const { values, positionals } = parseStrict(argv, { from: { type: 'string' }, json: { type: 'boolean' }, 'idle-timeout-ms': { type: 'string' } }, true);
  if (positionals.length !== 1) throw new UsageError(`expected one FILE to write, got ${positionals.length} arguments`);
  const given = required('from', values['from'], nonEmpty);
  // As for `raftkv status`: http:// may be left out.
  const url = httpUrl('from', /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `http://${given}`);
  return {
    kind: 'take',
    url,
    file: nonEmpty('FILE', positionals[0]),
    json: values['json'] === true,
    idleTimeoutMs: optional('idle-timeout-ms', values['idle-timeout-ms'], positiveInt) ?? BACKUP_IDLE_TIMEOUT_MS_DEFAULT,
  };
}

export function parseRestoreArgs(argv: readonly string[]): RestoreConfig {
  const flags = { 'data-dir': { type: 'string' }, id: { type: 'string' }, members: { type: 'string' }, 'cluster-id': { type: 'string' } } as const;
  const { values, positionals } = parseStrict(argv, flags, true);
  if (positionals.length !== 1) throw new UsageError(`expected one backup FILE, got ${positionals.length} arguments`);
  const id = required('id', values['id'], nodeId);
  const members = required('members', values['members'], nonEmpty)
    .split(',')
    .map((m) => nodeId('members', m.trim()));
  if (new Set(members).size !== members.length) throw new UsageError(`--members names a node twice: ${members.join(',')}`);
  if (!members.includes(id)) throw new UsageError(`--id ${id} is not one of --members ${members.join(',')}`);
  const clusterId = optional('cluster-id', values['cluster-id'], nonEmpty);
  return { file: nonEmpty('FILE', positionals[0]), dataDir: required('data-dir', values['data-dir'], nonEmpty), id, members, ...(clusterId === undefined ? {} : { clusterId }) };
}

export function parseRecoverArgs(argv: readonly string[]): RecoverConfig {
  const flags = { 'force-new-cluster': { type: 'boolean' }, 'data-dir': { type: 'string' }, 'cluster-id': { type: 'string' } } as const;
  const { values } = parseStrict(argv, flags, false);
  if (values['force-new-cluster'] !== true) {
    throw new UsageError('--force-new-cluster is required: recovering discards every write this node did not know to be committed, and is only for a majority lost for good');
  }
  const clusterId = optional('cluster-id', values['cluster-id'], nonEmpty);
  return { dataDir: required('data-dir', values['data-dir'], nonEmpty), ...(clusterId === undefined ? {} : { clusterId }) };
}
