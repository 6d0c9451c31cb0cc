import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isRaftKvError, MemoryStorage, type RaftKvError, RawNode, SeededRandom, type RaftConfig } from '../src/index.js';

const base = (): RaftConfig => ({ id: 'n1', storage: new MemoryStorage({ voters: ['n1', 'n2', 'n3'], learners: [] }), random: new SeededRandom(1) });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isRaftKvError(error) ? error.code : `not a RaftKvError: ${String(error)}`;
  }
  return undefined;
}

describe('configuration is validated with a typed error', () => {
  it.each([
    ['an empty id', { id: '' }],
    ['a heartbeat interval of 0', { heartbeatIntervalTicks: 0 }],
    ['an election timeout not above the heartbeat interval', { electionTimeoutTicks: 3, heartbeatIntervalTicks: 3 }],
    ['a fractional election timeout', { electionTimeoutTicks: 10.5 }],
    ['an inflight window of 0', { inflightCountMax: 0 }],
    ['a message byte limit of 0', { msgBytesMax: 0 }],
    ['a negative applied index', { applied: -1 }],
    ['a negative clock drift', { clockDriftMax: -0.1 }],
    ['a clock drift of 1 (a clock may stop)', { clockDriftMax: 1 }],
    ['a clock drift that is not a number', { clockDriftMax: Number.NaN }],
  ])('rejects %s', (_what, override) => {
    expect(codeOf(() => new RawNode({ ...base(), ...override }))).toBe(ErrorCode.INVALID_CONFIG);
  });

  it('accepts the defaults', () => {
    expect(codeOf(() => new RawNode(base()))).toBeUndefined();
  });
});

describe('errors callers can act on', () => {
  it('a proposal larger than entryBytesMax is refused with ENTRY_TOO_LARGE', () => {
    const node = new RawNode({ ...base(), storage: new MemoryStorage({ voters: ['n1'], learners: [] }), entryBytesMax: 8 });
    node.campaign();
    expect(node.status().role).toBe('leader');
    expect(codeOf(() => node.propose(new Uint8Array(9)))).toBe(ErrorCode.ENTRY_TOO_LARGE);
    expect(codeOf(() => node.propose(new Uint8Array(8)))).toBeUndefined();
  });

  it('a transfer to a non-member is refused with TRANSFER_REJECTED', () => {
    const node = new RawNode(base());
    expect(codeOf(() => node.transferLeadership('n9'))).toBe(ErrorCode.TRANSFER_REJECTED);
  });

  it('a read on a node that knows no leader fails with NOT_LEADER and no hint', () => {
    const node = new RawNode(base());
    let error: unknown;
    try {
      node.readIndex('r1');
    } catch (e) {
      error = e;
    }
    expect(isRaftKvError(error, ErrorCode.NOT_LEADER)).toBe(true);
    expect((error as RaftKvError).leaderHint).toBeNull();
  });

  it('snapshotMeta beyond the applied index fails with LOG_UNAVAILABLE', () => {
    const node = new RawNode(base());
    expect(codeOf(() => node.snapshotMeta(1))).toBe(ErrorCode.LOG_UNAVAILABLE);
  });

  it('every code is a distinct RAFTKV_ string', () => {
    const codes = Object.values(ErrorCode);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^RAFTKV_[A-Z_]+$/);
  });

  it('docs/errors.md lists every code, and no code that does not exist', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Set(doc.match(/RAFTKV_[A-Z_]+/g));
    expect([...documented].sort()).toEqual(Object.values(ErrorCode).sort());
  });
});
