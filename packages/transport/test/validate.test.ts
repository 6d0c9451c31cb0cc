import fc from 'fast-check';
import { decode, encode } from '@raftkv/codec';
import { ErrorCode, isRaftKvError, type Entry, type Message, type MessageType } from '@raftkv/raft';
import { describe, expect, it } from 'vitest';
import { validateMessage } from '../src/index.js';

const count = fc.nat({ max: 2 ** 40 });
const nodeId = fc.string({ minLength: 1, maxLength: 12 });
const bytes = fc.uint8Array({ maxLength: 64 });

/** A MsgApp whose entries follow `index` contiguously with non-decreasing terms in [logTerm, term]. */
const msgApp = fc
  .record({ term: fc.nat({ max: 1000 }), index: count, commit: count, termSteps: fc.array(fc.tuple(fc.nat({ max: 3 }), bytes, fc.boolean()), { maxLength: 6 }) })
  .chain(({ term, index, commit, termSteps }) =>
    fc.nat({ max: term }).map((logTerm) => {
      let t = logTerm;
      const entries: Entry[] = termSteps.map(([step, data, conf], k) => {
        t = Math.min(term, t + step);
        return { index: index + 1 + k, term: t, type: conf ? 'conf-change' : 'normal', data };
      });
      return { type: 'MsgApp' as const, term, index, logTerm, entries, commit };
    }),
  );

const body: fc.Arbitrary<Omit<Message, 'from' | 'to'>> = fc.oneof(
  msgApp,
  fc.record({ type: fc.constant('MsgAppResp' as const), term: count, index: count, reject: fc.boolean(), rejectHint: count, logTerm: count }),
  fc.record({ type: fc.constantFrom('MsgVote' as const, 'MsgPreVote' as const), term: count, index: count, logTerm: count, transfer: fc.boolean() }),
  fc.record({ type: fc.constantFrom('MsgVoteResp' as const, 'MsgPreVoteResp' as const), term: count, reject: fc.boolean() }),
  fc.record({ type: fc.constant('MsgHeartbeat' as const), term: count, commit: count, commitTerm: count, readRound: count, leaseTick: count }),
  fc.record({ type: fc.constant('MsgHeartbeatResp' as const), term: count, readRound: count, leaseTick: count }),
  fc.record({
    type: fc.constant('MsgSnap' as const),
    term: count,
    snapshot: fc.record({ meta: fc.record({ index: count, term: count, confState: fc.record({ voters: fc.array(nodeId, { maxLength: 5 }), learners: fc.array(nodeId, { maxLength: 3 }) }) }), data: bytes }),
  }),
  fc.record({ type: fc.constant('MsgTimeoutNow' as const), term: count }),
  fc.record({ type: fc.constant('MsgReadIndex' as const), term: count, context: fc.string() }),
  fc.record({ type: fc.constant('MsgReadIndexResp' as const), term: count, index: count, context: fc.string() }),
  fc.record({ type: fc.constant('MsgTransferLeader' as const), term: count, transferee: nodeId }),
  fc.record({ type: fc.constant('MsgLogLost' as const), term: count, lastIndex: count }),
);

export const arbMessage: fc.Arbitrary<Message> = fc.record({ from: nodeId, to: nodeId, body }).map(({ from, to, body: b }) => ({ ...b, from, to }) as Message);

/** Every Uint8Array as a plain array, so that Buffer and Uint8Array compare equal. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/** Asserts `fn` throws a FRAME_INVALID RaftKvError and nothing else. */
function expectFrameInvalid(fn: () => unknown): void {
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(isRaftKvError(error, ErrorCode.FRAME_INVALID), `expected FRAME_INVALID, got ${String(error)}`).toBe(true);
}

/** Every path inside a message (Uint8Array counts as a leaf), as lists of keys. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value instanceof Uint8Array || typeof value !== 'object' || value === null) return [];
  const keys: (string | number)[] = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  return keys.flatMap((k) => [[...prefix, k], ...paths((value as Record<string | number, unknown>)[k], [...prefix, k])]);
}

/** A deep copy of `message` with the value at `path` replaced (or deleted, for `undefined`). */
function mutate(message: Message, path: (string | number)[], replacement: unknown): unknown {
  const copy = structuredClone(plain(message)) as Record<string | number, unknown>;
  let node = copy;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (replacement === undefined && !Array.isArray(node)) delete node[last];
  else node[last] = replacement;
  // Restore the bytes fields that plain() turned into arrays (unless the mutation hit them).
  return revive(copy, message);
}

function revive(copy: unknown, original: unknown): unknown {
  if (original instanceof Uint8Array) return Array.isArray(copy) && copy.length === original.length && copy.every((v, i) => v === original[i]) ? original : copy;
  if (typeof copy !== 'object' || copy === null || typeof original !== 'object' || original === null) return copy;
  for (const k of Object.keys(copy)) (copy as Record<string, unknown>)[k] = revive((copy as Record<string, unknown>)[k], (original as Record<string, unknown>)[k]);
  return copy;
}

/** Values no field of any message accepts. */
const wrong = fc.constantFrom<unknown>(null, undefined, -1, 0.5, Number.NaN, 2 ** 53, {}, Symbol('wrong'), 'x'.repeat(300));

describe('validateMessage', () => {
  it('accepts every valid message, and it round-trips through encode, decode and validation', () => {
    fc.assert(
      fc.property(arbMessage, (m) => {
        const decoded = validateMessage(decode(encode(m)));
        expect(plain(decoded)).toEqual(plain(m));
        const data = decoded.type === 'MsgApp' ? decoded.entries.map((e) => e.data) : decoded.type === 'MsgSnap' ? [decoded.snapshot.data] : [];
        for (const d of data) expect(d).toBeInstanceOf(Uint8Array);
      }),
      { numRuns: 2000 },
    );
  });

  it('drops unknown fields', () => {
    const m = validateMessage({ type: 'MsgTimeoutNow', from: 'a', to: 'b', term: 1, extra: 'x' });
    expect(m).toEqual({ type: 'MsgTimeoutNow', from: 'a', to: 'b', term: 1 });
  });

  it('random values never pass as a message and only ever throw FRAME_INVALID', () => {
    fc.assert(
      fc.property(fc.anything({ withTypedArray: true, withMap: true, withSet: true, withBigInt: true, withDate: true, withNullPrototype: true }), (value) => {
        expectFrameInvalid(() => validateMessage(value));
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes never decode into a message and only ever fail with FRAME_INVALID (or a decode error)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
        let value: unknown;
        try {
          value = decode(raw);
        } catch {
          return; // the transport turns decode errors into FRAME_INVALID (see wire.test.ts)
        }
        expectFrameInvalid(() => validateMessage(value));
      }),
      { numRuns: 3000 },
    );
  });

  it('a valid message with any one field replaced by a wrong value is rejected', () => {
    fc.assert(
      fc.property(
        arbMessage.chain((m) => fc.tuple(fc.constant(m), fc.constantFrom(...paths(m)), wrong)),
        ([m, path, replacement]) => {
          // A string field given a long string is wrong only for node ids; skip the others.
          const field = String(path[path.length - 1]);
          if (typeof replacement === 'string' && field === 'context') return;
          // Deleting from an array just shortens it (still a valid message in some cases): use null instead.
          expectFrameInvalid(() => validateMessage(mutate(m, path, replacement)));
        },
      ),
      { numRuns: 3000 },
    );
  });

  const broken: [string, unknown][] = [
    ['an unknown type', { type: 'MsgNope', from: 'a', to: 'b', term: 1 }],
    ['an empty node id', { type: 'MsgTimeoutNow', from: '', to: 'b', term: 1 }],
    ['a negative term', { type: 'MsgTimeoutNow', from: 'a', to: 'b', term: -1 }],
    ['a fractional index', { type: 'MsgReadIndexResp', from: 'a', to: 'b', term: 1, index: 1.5, context: '' }],
    ['entries that are not contiguous', { type: 'MsgApp', from: 'a', to: 'b', term: 2, index: 3, logTerm: 1, commit: 0, entries: [{ index: 5, term: 1, type: 'normal', data: new Uint8Array() }] }],
    ['entry terms that decrease', { type: 'MsgApp', from: 'a', to: 'b', term: 3, index: 3, logTerm: 1, commit: 0, entries: [{ index: 4, term: 2, type: 'normal', data: new Uint8Array() }, { index: 5, term: 1, type: 'normal', data: new Uint8Array() }] }],
    ['an entry term above the message term', { type: 'MsgApp', from: 'a', to: 'b', term: 1, index: 3, logTerm: 1, commit: 0, entries: [{ index: 4, term: 2, type: 'normal', data: new Uint8Array() }] }],
    ['an entry term below logTerm', { type: 'MsgApp', from: 'a', to: 'b', term: 3, index: 3, logTerm: 2, commit: 0, entries: [{ index: 4, term: 1, type: 'normal', data: new Uint8Array() }] }],
    ['entry data that is a string', { type: 'MsgApp', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, entries: [{ index: 1, term: 1, type: 'normal', data: 'abc' }] }],
    ['an unknown entry type', { type: 'MsgApp', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, entries: [{ index: 1, term: 1, type: 'weird', data: new Uint8Array() }] }],
    ['a heartbeat without commitTerm (a peer of an older version)', { type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, commit: 0, readRound: 0, leaseTick: 0 }],
    ['a heartbeat without leaseTick (a peer of an older version)', { type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, commit: 0, commitTerm: 0, readRound: 0 }],
    ['a heartbeat response with a negative leaseTick', { type: 'MsgHeartbeatResp', from: 'a', to: 'b', term: 1, readRound: 0, leaseTick: -1 }],
    ['a snapshot without a configuration', { type: 'MsgSnap', from: 'a', to: 'b', term: 1, snapshot: { meta: { index: 1, term: 1 }, data: new Uint8Array() } }],
    ['an array', [1, 2, 3]],
    ['bytes', new Uint8Array([1, 2])],
  ];
  for (const [name, value] of broken) {
    it(`rejects ${name}`, () => expectFrameInvalid(() => validateMessage(value)));
  }

  it('covers every message type of the core', () => {
    const seen = new Set<MessageType>();
    fc.assert(
      fc.property(arbMessage, (m) => {
        seen.add(m.type);
      }),
      { numRuns: 500 },
    );
    expect(seen.size).toBe(14);
  });
});
