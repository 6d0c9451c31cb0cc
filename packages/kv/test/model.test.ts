/**
 * The state machine checked against a deliberately simple model: a Map of keys and a Map of
 * sessions with eviction by linear search. Random command sequences, split into random apply
 * batches with restarts and log replays in between, must give the same results and the same
 * get/scan answers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encode } from '@raftkv/codec';
import { EntryType, ErrorCode } from '@raftkv/raft';
import type { Entry } from '@raftkv/raft';
import { encodeCommand, InvalidReason } from '../src/index.js';
import { MemoryKvStateMachine } from '../src/index.js';
import type { ApplyResult, ClientSession, Command, CommandResult, KvPair, KvValue } from '../src/index.js';
import { memoryDb, openMemory } from './helpers.js';

const KEYS = ['a', 'a/b', 'a/b/c', 'ab', 'b', 'é', '\uFFFD', '😀', 'z\u0000'];
const PREFIXES = ['', 'a', 'a/', 'a/b', 'b', 'é', '\uFFFD', '😀', 'q'];
const CLIENTS = ['c1', 'c2', 'c3'];
const SESSION_COUNT_MAX = 2;

/** A generated step; cas expectations are resolved against the model when the entry is built. */
type Step =
  | { readonly kind: 'noop' }
  | { readonly kind: 'garbage'; readonly data: Uint8Array }
  | { readonly kind: 'put'; readonly key: string; readonly value: Uint8Array; readonly session: ClientSession | null }
  | { readonly kind: 'delete'; readonly key: string; readonly session: ClientSession | null }
  | { readonly kind: 'cas'; readonly key: string; readonly value: Uint8Array; readonly expect: 'absent' | 'current' | 'stale' | number; readonly session: ClientSession | null };

const sessionArb = fc.option(fc.record({ clientId: fc.constantFrom(...CLIENTS), seq: fc.integer({ min: 0, max: 4 }) }), { nil: null });
const keyArb = fc.constantFrom(...KEYS);
const valueArb = fc.uint8Array({ maxLength: 6 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: fc.constant({ kind: 'noop' as const }) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 8 }),
      fc.constantFrom(encode({ type: 'put', key: '' }), encode({ type: 'cas', key: 'a', value: new Uint8Array(1), expect: {} }), encode([1, 2])),
    ).map((data) => ({ kind: 'garbage' as const, data })),
  },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('put' as const), key: keyArb, value: valueArb, session: sessionArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb, session: sessionArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('cas' as const),
      key: keyArb,
      value: valueArb,
      expect: fc.oneof(fc.constantFrom('absent' as const, 'current' as const, 'stale' as const), fc.integer({ min: 0, max: 3 })),
      session: sessionArb,
    }),
  },
);

/** Between batches: nothing, a restart (close and reopen on the same database), or a replay of the last batch. */
const between = fc.constantFrom('none', 'none', 'restart', 'replay');
const scenarioArb = fc.array(fc.record({ steps: fc.array(stepArb, { maxLength: 8 }), then: between, termBump: fc.boolean() }), { maxLength: 12 });

interface ModelValue {
  readonly value: Uint8Array;
  readonly modIndex: number;
}

class Model {
  readonly data = new Map<string, ModelValue>();
  readonly sessions = new Map<string, { seq: number; index: number; result: CommandResult }>();

  apply(index: number, step: Step): CommandResult | null {
    if (step.kind === 'noop') return null;
    if (step.kind === 'garbage') return { type: 'invalid', ok: false, error: ErrorCode.COMMAND_INVALID, reason: InvalidReason.Undecodable };
    const session = step.session;
    if (session === null) return this.#execute(index, step);
    const prior = this.sessions.get(session.clientId);
    if (prior !== undefined && session.seq < prior.seq) return { type: 'invalid', ok: false, error: ErrorCode.COMMAND_INVALID, reason: InvalidReason.SessionSeqStale };
    const result = prior !== undefined && session.seq === prior.seq ? prior.result : this.#execute(index, step);
    this.sessions.set(session.clientId, { seq: session.seq, index, result });
    while (this.sessions.size > SESSION_COUNT_MAX) {
      const oldest = [...this.sessions.entries()].reduce((a, b) => (b[1].index < a[1].index ? b : a));
      this.sessions.delete(oldest[0]);
    }
    return result;
  }

  #execute(index: number, step: Exclude<Step, { kind: 'noop' | 'garbage' }>): CommandResult {
    const current = this.data.get(step.key);
    switch (step.kind) {
      case 'put':
        this.data.set(step.key, { value: step.value, modIndex: index });
        return { type: 'put', ok: true, modIndex: index };
      case 'delete':
        this.data.delete(step.key);
        return { type: 'delete', ok: true, modIndex: index, existed: current !== undefined };
      case 'cas': {
        const expect = this.expectation(step);
        const holds = 'absent' in expect ? current === undefined : current?.modIndex === expect.modIndex;
        if (!holds) return { type: 'cas', ok: false, current: current === undefined ? null : { modIndex: current.modIndex } };
        this.data.set(step.key, { value: step.value, modIndex: index });
        return { type: 'cas', ok: true, modIndex: index };
      }
    }
  }

  /** Resolves 'current'/'stale' against the state the command will meet (computed before applying). */
  expectation(step: Extract<Step, { kind: 'cas' }>): { absent: true } | { modIndex: number } {
    const modIndex = this.data.get(step.key)?.modIndex;
    if (step.expect === 'absent') return { absent: true };
    if (step.expect === 'current') return modIndex === undefined ? { absent: true } : { modIndex };
    if (step.expect === 'stale') return { modIndex: Math.max(0, (modIndex ?? 1) - 1) };
    return { modIndex: step.expect };
  }

  scan(prefix: string, limit: number): Array<[string, string, number]> {
    return [...this.data.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')))
      .slice(0, limit)
      .map(([key, v]) => [key, Buffer.from(v.value).toString('hex'), v.modIndex]);
  }
}

function toCommand(step: Exclude<Step, { kind: 'noop' | 'garbage' }>, model: Model): Command {
  const session = step.session === null ? {} : { session: step.session };
  switch (step.kind) {
    case 'put':
      return { type: 'put', key: step.key, value: step.value, ...session };
    case 'delete':
      return { type: 'delete', key: step.key, ...session };
    case 'cas':
      return { type: 'cas', key: step.key, value: step.value, expect: model.expectation(step), ...session };
  }
}

/** What the model test needs of a machine: the LevelDB one and its in-memory twin both have it. */
interface Machine {
  apply(entries: Entry[]): Promise<ApplyResult[]>;
  get(key: string): Promise<KvValue | null>;
  scan(prefix: string, limit: number): Promise<KvPair[]>;
  readonly appliedIndex: number;
  /** A process crash: everything written survives. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function levelMachine(): Promise<Machine> {
  const db = memoryDb();
  const options = { sessionCountMax: SESSION_COUNT_MAX };
  let kv = await openMemory(options, db);
  return {
    apply: (entries) => kv.apply(entries),
    get: (key) => kv.get(key),
    scan: (prefix, limit) => kv.scan(prefix, limit),
    get appliedIndex() {
      return kv.appliedIndex;
    },
    restart: async () => {
      await kv.close();
      kv = await openMemory(options, db);
    },
    close: () => kv.close(),
  };
}

function memoryMachine(): Machine {
  const kv = new MemoryKvStateMachine({ sessionCountMax: SESSION_COUNT_MAX });
  return {
    apply: async (entries) => kv.apply(entries),
    get: async (key) => kv.get(key),
    scan: async (prefix, limit) => kv.scan(prefix, limit),
    get appliedIndex() {
      return kv.appliedIndex;
    },
    restart: async () => kv.crash(kv.unsyncedBatchCount),
    close: async () => undefined,
  };
}

async function compareReads(kv: Machine, model: Model): Promise<void> {
  for (const key of KEYS) {
    const got = await kv.get(key);
    const want = model.data.get(key);
    expect(got && [Buffer.from(got.value).toString('hex'), got.modIndex]).toEqual(want ? [Buffer.from(want.value).toString('hex'), want.modIndex] : null);
  }
  for (const prefix of PREFIXES) {
    for (const limit of [2, 100]) {
      const rows = (await kv.scan(prefix, limit)).map((r) => [r.key, Buffer.from(r.value).toString('hex'), r.modIndex]);
      expect(rows).toEqual(model.scan(prefix, limit));
    }
  }
}

describe.each([
  ['KvStateMachine (memory-level)', levelMachine],
  ['MemoryKvStateMachine', async () => memoryMachine()],
])('%s against a Map model', (_name, open) => {
  it('gives the same results and the same reads for random command sequences', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (scenario) => {
        const kv = await open();
        const model = new Model();
        let index = 0;
        let term = 1;
        let lastBatch: Entry[] = [];
        try {
          for (const { steps, then, termBump } of scenario) {
            if (termBump) term += 1;
            const batch: Entry[] = [];
            const expected: Array<CommandResult | null> = [];
            for (const step of steps) {
              index += 1;
              const data = step.kind === 'noop' ? new Uint8Array(0) : step.kind === 'garbage' ? step.data : encodeCommand(toCommand(step, model));
              batch.push({ index, term, type: EntryType.Normal, data });
              expected.push(model.apply(index, step));
            }
            const applied = await kv.apply(batch);
            expect(applied.map((a) => a.result)).toEqual(expected);
            expect(kv.appliedIndex).toBe(index);
            if (then === 'restart') {
              await kv.restart();
            } else if (then === 'replay') {
              const replay = await kv.apply([...lastBatch, ...batch]);
              expect(replay.every((a) => a.result === null)).toBe(true);
            }
            lastBatch = batch;
          }
          await compareReads(kv, model);
          expect(kv.appliedIndex).toBe(index);
        } finally {
          await kv.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('MemoryKvStateMachine durability', () => {
  it('a power loss keeps the durable state and a prefix of the later batches; replaying the log rebuilds the rest', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 10 }), fc.nat(), fc.nat(), (batches, syncAfter, keepSeed) => {
        const kv = new MemoryKvStateMachine();
        const reference = new MemoryKvStateMachine();
        const entries: Entry[][] = [];
        let index = 0;
        batches.forEach((keys, b) => {
          const batch = keys.map((key) => ({ index: ++index, term: 1, type: EntryType.Normal, data: encodeCommand({ type: 'put', key, value: new Uint8Array([index]) }) }));
          entries.push(batch);
          kv.apply(batch);
          reference.apply(batch);
          if (b === syncAfter % batches.length) kv.sync();
        });
        const kept = keepSeed % (kv.unsyncedBatchCount + 1);
        const lost = kv.unsyncedBatchCount - kept;
        kv.crash(kept);
        // Exactly the last `lost` batches are gone: the applied index says where to resume.
        const resumeBatch = batches.length - lost;
        expect(kv.appliedIndex).toBe(entries.slice(0, resumeBatch).flat().length);
        for (const batch of entries.slice(resumeBatch)) kv.apply(batch);
        for (const key of KEYS) expect(kv.get(key)).toEqual(reference.get(key));
      }),
      { numRuns: 300 },
    );
  });
});
