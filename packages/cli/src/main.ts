#!/usr/bin/env node
/**
 * The `raftkv` command: `raftkv start | cluster | status | member | leader | backup | restore |
 * recover`. Exit status 0 on success, 1 when the command failed, 2 on a bad command line (after
 * a message naming the problem).
 */
import { CLUSTER_USAGE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseClusterArgs, parseStartArgs, parseStatusArgs, START_USAGE, STATUS_USAGE, UsageError } from './args.js';
import { BACKUP_USAGE, parseBackupArgs, parseRecoverArgs, parseRestoreArgs, RECOVER_USAGE, RESTORE_USAGE } from './backup-args.js';
import { runBackup, runRecover, runRestore } from './backup.js';
import { runCluster } from './cluster.js';
import { LEADER_USAGE, MEMBER_USAGE, parseLeaderArgs, parseMemberArgs, runLeader, runMember } from './member.js';
import { processOutput, type Output } from './output.js';
import { describeError, runStart } from './start.js';
import { runStatus } from './status.js';

export const USAGE = `usage: raftkv <command> [options]

commands:
  start     run one node and its HTTP API in this process
  cluster   run a local cluster, one process per node, supervised
  status    print a node's view of the cluster
  backup    take a backup of a running cluster; \`backup inspect FILE\` verifies one
  restore   build the data directory of a member of a new cluster from a backup
  recover   make the survivor of a majority lost for good a one-member cluster
  member    list, add, promote and remove the members of a running cluster
  leader    hand leadership over to another member (leader transfer)

raftkv <command> --help describes each.
`;

interface Command {
  readonly usage: string;
  readonly run: (argv: readonly string[], out: Output) => Promise<number>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  start: { usage: START_USAGE, run: (argv, out) => runStart(parseStartArgs(argv), out) },
  cluster: { usage: CLUSTER_USAGE, run: (argv, out) => runCluster(parseClusterArgs(argv), out) },
  status: { usage: STATUS_USAGE, run: (argv, out) => runStatus(parseStatusArgs(argv), out) },
  backup: { usage: BACKUP_USAGE, run: (argv, out) => runBackup(parseBackupArgs(argv), out) },
  restore: { usage: RESTORE_USAGE, run: (argv, out) => runRestore(parseRestoreArgs(argv), out) },
  recover: { usage: RECOVER_USAGE, run: (argv, out) => runRecover(parseRecoverArgs(argv), out) },
  member: { usage: MEMBER_USAGE, run: (argv, out) => runMember(parseMemberArgs(argv), out) },
  leader: { usage: LEADER_USAGE, run: (argv, out) => runLeader(parseLeaderArgs(argv), out) },
};

export async function main(argv: readonly string[], out: Output): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? out.err : out.out)(USAGE.trimEnd());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    out.err(`raftkv: unknown command ${JSON.stringify(name)}\n${USAGE.trimEnd()}`);
    return EXIT_USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out.out(command.usage.trimEnd());
    return EXIT_OK;
  }
  try {
    return await command.run(rest, out);
  } catch (error) {
    if (error instanceof UsageError) {
      out.err(`raftkv ${name}: ${error.message}\nrun 'raftkv ${name} --help' for usage`);
      return EXIT_USAGE;
    }
    out.err(`raftkv: ${describeError(error)}`);
    return EXIT_FAILURE;
  }
}

// Exit explicitly: a command that has finished leaves nothing that should keep the process up.
process.exit(await main(process.argv.slice(2), processOutput));
