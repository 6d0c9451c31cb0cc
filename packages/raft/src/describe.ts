import { assertNever } from './assert.js';
import type { Entry, Message, Ready } from './types.js';

/**
 * One-line renderings for traces and golden tests, in the style of etcd-io/raft's scripted
 * tests: `1->2 MsgApp Term:3 Log:3/11 Commit:10 Entries:[3/12 3/13]`.
 */
export function describeEntry(e: Entry): string {
  const kind = e.type === 'normal' ? '' : ` ${e.type}`;
  return e.data.byteLength === 0 ? `${e.term}/${e.index}${kind} noop` : `${e.term}/${e.index}${kind}`;
}

export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} Term:${m.term}`;
  switch (m.type) {
    case 'MsgApp': {
      const entries = m.entries.length === 0 ? '' : ` Entries:[${m.entries.map(describeEntry).join(' ')}]`;
      return `${head} Log:${m.logTerm}/${m.index} Commit:${m.commit}${entries}`;
    }
    case 'MsgAppResp':
      return m.reject ? `${head} Rejected:${m.index} Hint:${m.logTerm}/${m.rejectHint}` : `${head} Index:${m.index}`;
    case 'MsgVote':
    case 'MsgPreVote':
      return `${head} Last:${m.logTerm}/${m.index}${m.transfer ? ' Transfer' : ''}`;
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      return `${head}${m.reject ? ' Rejected' : ' Granted'}`;
    case 'MsgHeartbeat':
      return `${head} Commit:${m.commitTerm}/${m.commit} Round:${m.readRound} LeaseTick:${m.leaseTick}`;
    case 'MsgHeartbeatResp':
      return `${head} Round:${m.readRound} LeaseTick:${m.leaseTick}`;
    case 'MsgSnap':
      return `${head} Snapshot:${m.snapshot.meta.term}/${m.snapshot.meta.index} Voters:${m.snapshot.meta.confState.voters.join(',')}`;
    case 'MsgTimeoutNow':
      return head;
    case 'MsgReadIndex':
      return `${head} Ctx:${m.context}`;
    case 'MsgReadIndexResp':
      return `${head} Index:${m.index} Ctx:${m.context}`;
    case 'MsgTransferLeader':
      return `${head} To:${m.transferee}`;
    case 'MsgLogLost':
      return `${head} LastIndex:${m.lastIndex}`;
    default:
      return assertNever(m, 'message');
  }
}

export function describeReady(rd: Ready): string {
  const lines: string[] = [];
  if (rd.softState !== null) lines.push(`Lead:${rd.softState.lead ?? '-'} Role:${rd.softState.role}`);
  if (rd.hardState !== null) lines.push(`HardState Term:${rd.hardState.term} Vote:${rd.hardState.vote ?? '-'} Commit:${rd.hardState.commit}`);
  if (rd.snapshot !== null) lines.push(`Snapshot ${rd.snapshot.meta.term}/${rd.snapshot.meta.index}`);
  if (rd.entries.length > 0) lines.push(`Entries: ${rd.entries.map(describeEntry).join(' ')}`);
  if (rd.committedEntries.length > 0) lines.push(`Committed: ${rd.committedEntries.map(describeEntry).join(' ')}`);
  for (const m of rd.messages) lines.push(`Send: ${describeMessage(m)}`);
  for (const m of rd.messagesAfterPersist) lines.push(`SendAfterPersist: ${describeMessage(m)}`);
  for (const s of rd.readStates) lines.push(`ReadState Index:${s.index} Ctx:${s.context}`);
  return lines.join('\n');
}
