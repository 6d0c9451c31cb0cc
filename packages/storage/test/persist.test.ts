/**
 * `persist` driven by the real core, and checked against the model: a single-node RawNode on
 * classic-level restarts where it stopped, and random Ready-shaped writes leave LevelLogStorage
 * and MemoryStorage serving the same reads.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryLevel } from 'memory-level';
import { MemoryStorage, RawNode, Role, SeededRandom, type ConfState, type Entry, type HardState, type Message, type NodeId, type Snapshot } from '@raftkv/raft';
import { LevelLogStorage, openLevelLogStorage } from '../src/index.js';
import { makeTempDir, readAll, removeTempDirs } from './helpers.js';

const CONF: ConfState = { voters: ['n1', 'n2', 'n3'], learners: [] };
const CONF2: ConfState = { voters: ['n1', 'n2', 'n4'], learners: ['n5'] };
/** A reopened store must ignore its bootstrap configuration. */
const OTHER_BOOTSTRAP: ConfState = { voters: ['not-a-member'], learners: [] };

afterAll(removeTempDirs);

/** Carries out every Ready as the contract on `Ready` says (no peers: nothing to send). */
async function drain(node: RawNode, storage: LevelLogStorage, applied: Entry[]): Promise<void> {
  for (let k = 0; node.hasReady(); k++) {
    expect(k, 'the node keeps producing Readies').toBeLessThan(100);
    const rd = node.ready();
    await storage.persist(rd);
    applied.push(...rd.committedEntries);
    node.advance();
  }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const plain = (entries: readonly Entry[]): unknown[] => entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Array.from(e.data) }));

describe('a RawNode on LevelLogStorage (classic-level)', () => {
  it('restarts with the same term, vote, commit and log', async () => {
    const dir = await makeTempDir();
    const single: ConfState = { voters: ['n1'], learners: [] };
    let storage = await openLevelLogStorage(dir, single);
    let node = new RawNode({ id: 'n1', storage, random: new SeededRandom(1) });
    const applied: Entry[] = [];
    node.campaign();
    await drain(node, storage, applied);
    expect(node.basicStatus().role).toBe(Role.Leader);
    for (let batch = 0; batch < 4; batch++) {
      for (let k = 0; k < 5; k++) node.propose(bytes(`put k${batch}.${k}`));
      await drain(node, storage, applied);
    }
    // A single-node cluster commits an entry when its own write is durable: all of them by now.
    const before = node.basicStatus();
    expect(before.commit).toBe(before.lastIndex);
    expect(applied.map((e) => e.index)).toEqual(Array.from({ length: before.lastIndex }, (_, k) => k + 1));
    // The state machine snapshots at 12 and the log is compacted (data lives in the state machine).
    await storage.compact(node.snapshotMeta(12), new Uint8Array(0));
    node.propose(bytes('after compaction'));
    await drain(node, storage, applied);
    const status = node.basicStatus();
    const log = plain(storage.entries(storage.firstIndex(), storage.lastIndex() + 1, Number.MAX_SAFE_INTEGER));
    await storage.close();

    storage = await openLevelLogStorage(dir, OTHER_BOOTSTRAP);
    node = new RawNode({ id: 'n1', storage, random: new SeededRandom(2) });
    const restarted = node.basicStatus();
    expect({ term: restarted.term, vote: restarted.vote, commit: restarted.commit, first: restarted.firstIndex, last: restarted.lastIndex }).toEqual({
      term: status.term,
      vote: 'n1',
      commit: status.commit,
      first: 13,
      last: status.lastIndex,
    });
    expect(storage.initialState().confState).toEqual(single);
    expect(plain(storage.entries(13, storage.lastIndex() + 1, Number.MAX_SAFE_INTEGER))).toEqual(log);
    expect(storage.snapshot().meta).toEqual({ index: 12, term: status.term, confState: single });

    // It carries on: a new election at the next term, and a new entry committed after the old ones.
    node.campaign();
    await drain(node, storage, applied);
    expect(node.basicStatus()).toMatchObject({ role: Role.Leader, term: status.term + 1 });
    const { index } = node.propose(bytes('after restart'));
    await drain(node, storage, applied);
    expect(node.basicStatus().commit).toBe(index);
    expect(applied[applied.length - 1]?.index).toBe(index);
    await storage.close();
  });
});

/**
 * Three RawNodes on LevelLogStorage (memory-level) and a lossless in-test network that drops
 * messages to or from isolated nodes. Each Ready is carried out in contract order.
 */
class Cluster {
  readonly members = new Map<NodeId, { node: RawNode; storage: LevelLogStorage; db: MemoryLevel<string, Uint8Array> }>();
  readonly isolated = new Set<NodeId>();
  /** Nodes whose Readies carried a snapshot, or entries overwriting stored ones: the test checks that its path ran. */
  readonly persisted = { snapshot: new Set<NodeId>(), truncation: new Set<NodeId>() };
  #queue: Message[] = [];

  static async start(ids: readonly NodeId[]): Promise<Cluster> {
    const cluster = new Cluster();
    for (const [k, id] of ids.entries()) {
      const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
      const storage = await LevelLogStorage.open(db, { dataDir: `memory-level/${id}`, bootstrap: { voters: [...ids], learners: [] } });
      cluster.members.set(id, { node: new RawNode({ id, storage, random: new SeededRandom(k + 1) }), storage, db });
    }
    return cluster;
  }

  get(id: NodeId): { node: RawNode; storage: LevelLogStorage } {
    const member = this.members.get(id);
    if (member === undefined) throw new Error(`no node ${id}`);
    return member;
  }

  /** Runs Readies and delivers messages until nothing moves. */
  async stabilize(): Promise<void> {
    for (let round = 0; round < 1000; round++) {
      let moved = false;
      for (const [id, { node, storage }] of this.members) {
        while (node.hasReady()) {
          moved = true;
          const rd = node.ready();
          if (rd.snapshot !== null) this.persisted.snapshot.add(id);
          if (rd.entries.length > 0 && rd.entries[0]!.index <= storage.lastIndex()) this.persisted.truncation.add(id);
          this.#queue.push(...rd.messages);
          await storage.persist(rd);
          this.#queue.push(...rd.messagesAfterPersist);
          node.advance();
        }
      }
      const messages = this.#queue.splice(0);
      for (const m of messages) {
        moved = true;
        if (this.isolated.has(m.from) || this.isolated.has(m.to)) continue;
        this.get(m.to).node.step(m);
        // The transport's report: the snapshot reached the follower.
        if (m.type === 'MsgSnap') this.get(m.from).node.reportSnapshot(m.to, true);
      }
      if (!moved) return;
    }
    throw new Error('the cluster did not settle');
  }

  async tickUntil(ids: readonly NodeId[], done: () => boolean): Promise<void> {
    for (let t = 0; t < 200 && !done(); t++) {
      for (const id of ids) this.get(id).node.tick();
      await this.stabilize();
    }
    expect(done(), 'the cluster did not reach the expected state').toBe(true);
  }

  leader(among: readonly NodeId[]): NodeId | null {
    return among.find((id) => this.get(id).node.basicStatus().role === Role.Leader) ?? null;
  }
}

describe('three RawNodes on LevelLogStorage: truncation and snapshots arrive through persist', () => {
  it.each([
    ['an old leader truncates its uncommitted tail on a conflicting append', false],
    ['an old leader installs a snapshot that drops its conflicting tail', true],
  ])('%s', async (_name, compact) => {
    const ids = ['n1', 'n2', 'n3'];
    const cluster = await Cluster.start(ids);
    cluster.get('n1').node.campaign();
    await cluster.stabilize();
    expect(cluster.leader(ids)).toBe('n1');
    for (let k = 0; k < 3; k++) cluster.get('n1').node.propose(bytes(`a${k}`));
    await cluster.stabilize();
    const committed = cluster.get('n1').node.basicStatus().commit;

    // n1 is cut off and appends entries nobody else gets: durable on n1, never committed.
    cluster.isolated.add('n1');
    for (let k = 0; k < 3; k++) cluster.get('n1').node.propose(bytes(`lost${k}`));
    await cluster.stabilize();
    const n1 = cluster.get('n1').storage;
    expect(n1.lastIndex()).toBe(committed + 3);
    const lostTerm = n1.term(n1.lastIndex());

    // The others elect a new leader, which commits more entries (and compacts its log).
    await cluster.tickUntil(['n2', 'n3'], () => cluster.leader(['n2', 'n3']) !== null);
    const leaderId = cluster.leader(['n2', 'n3'])!;
    const leader = cluster.get(leaderId);
    for (let k = 0; k < 8; k++) leader.node.propose(bytes(`b${k}`));
    await cluster.stabilize();
    if (compact) await leader.storage.compact(leader.node.snapshotMeta(leader.node.basicStatus().commit), new Uint8Array(0));

    // n1 comes back: the new leader overwrites its tail (by MsgApp, or by MsgSnap when compacted).
    cluster.isolated.delete('n1');
    const caughtUp = (): boolean => n1.lastIndex() === leader.storage.lastIndex() && n1.term(n1.lastIndex()) === leader.storage.term(leader.storage.lastIndex());
    await cluster.tickUntil(ids, caughtUp);
    const from = Math.max(n1.firstIndex(), leader.storage.firstIndex());
    expect(plain(n1.entries(from, n1.lastIndex() + 1, Number.MAX_SAFE_INTEGER))).toEqual(plain(leader.storage.entries(from, leader.storage.lastIndex() + 1, Number.MAX_SAFE_INTEGER)));
    // The slots of the lost entries now hold the new leader's (those not compacted away).
    for (let i = Math.max(committed + 1, n1.firstIndex()); i <= committed + 3; i++) expect(n1.term(i)).toBeGreaterThan(lostTerm);
    if (compact) expect(n1.snapshot().meta).toEqual(leader.storage.snapshot().meta);
    expect([...(compact ? cluster.persisted.snapshot : cluster.persisted.truncation)]).toEqual(['n1']);

    // Every node restarts from its store where it stopped.
    for (const [id, member] of cluster.members) {
      const before = { reads: readAll(member.storage), status: member.node.basicStatus() };
      await member.storage.close();
      const storage = await LevelLogStorage.open(member.db, { dataDir: `memory-level/${id}`, bootstrap: OTHER_BOOTSTRAP });
      expect(readAll(storage)).toEqual(before.reads);
      const restarted = new RawNode({ id, storage, random: new SeededRandom(9) }).basicStatus();
      expect({ term: restarted.term, vote: restarted.vote, commit: restarted.commit }).toEqual({ term: before.status.term, vote: before.status.vote, commit: before.status.commit });
      await storage.close();
    }
  });
});

describe('persist matches the model (MemoryStorage) under random Ready-shaped writes', () => {
  type ReadyOp = {
    kind: 'ready';
    snapshot: { at: number; match: boolean; conf2: boolean } | null;
    entries: { at: number; count: number; termBump: number; size: number } | null;
    hardState: { termBump: number; vote: number; commitAt: number } | null;
  };
  type Op = ReadyOp | { kind: 'compact'; at: number } | { kind: 'reopen' };

  const readyArb: fc.Arbitrary<ReadyOp> = fc.record({
    kind: fc.constant('ready' as const),
    snapshot: fc.option(fc.record({ at: fc.nat(), match: fc.boolean(), conf2: fc.boolean() }), { freq: 6 }),
    entries: fc.option(fc.record({ at: fc.nat(), count: fc.integer({ min: 1, max: 6 }), termBump: fc.nat({ max: 2 }), size: fc.nat({ max: 40 }) }), { freq: 4 }),
    hardState: fc.option(fc.record({ termBump: fc.nat({ max: 1 }), vote: fc.nat(), commitAt: fc.nat() }), { freq: 3 }),
  });
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: readyArb, weight: 6 },
    { arbitrary: fc.record({ kind: fc.constant('compact' as const), at: fc.nat() }), weight: 1 },
    { arbitrary: fc.record({ kind: fc.constant('reopen' as const) }), weight: 1 },
  );

  function ent(index: number, term: number, size: number): Entry {
    const data = new Uint8Array(size);
    for (let k = 0; k < size; k++) data[k] = (index * 31 + term * 7 + k) & 0xff;
    return { index, term, type: 'normal', data };
  }

  /**
   * Turns an abstract op into a Ready's writes that the core could produce: a snapshot newer than
   * the commit index, entries that truncate only above it, terms that never go back.
   */
  function toReady(op: ReadyOp, model: MemoryStorage, termNow: number): { write: { snapshot: Snapshot | null; entries: Entry[]; hardState: HardState | null }; term: number } {
    let term = termNow;
    const hs = model.hardState();
    let floor = Math.max(model.firstIndex() - 1, hs.commit);
    let last = model.lastIndex();
    let snapshot: Snapshot | null = null;
    if (op.snapshot !== null) {
      const at = floor + 1 + (op.snapshot.at % (last - floor + 3));
      const keep = op.snapshot.match && at <= last;
      const snapTerm = keep ? model.term(at) : ++term;
      snapshot = { meta: { index: at, term: snapTerm, confState: op.snapshot.conf2 ? CONF2 : CONF }, data: new Uint8Array([1, 2, 3]) };
      if (!keep) last = at;
      floor = at;
    }
    const entries: Entry[] = [];
    if (op.entries !== null) {
      term += op.entries.termBump;
      const from = floor + 1 + (op.entries.at % (last - floor + 1));
      for (let i = from; i < from + op.entries.count; i++) entries.push(ent(i, term, op.entries.size));
      last = from + op.entries.count - 1;
    }
    let hardState: HardState | null = null;
    if (op.hardState !== null) {
      term = Math.max(term, hs.term) + op.hardState.termBump;
      const vote = term === hs.term && hs.vote !== null ? hs.vote : [null, 'n1', 'n2', 'n3'][op.hardState.vote % 4]!;
      hardState = { term, vote, commit: hs.commit + (op.hardState.commitAt % (last - hs.commit + 1)) };
    }
    return { write: { snapshot, entries, hardState }, term };
  }

  it('reads agree after every step, and after every reopen', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
        const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
        const open = (): Promise<LevelLogStorage> => LevelLogStorage.open(db, { dataDir: 'memory-level', bootstrap: OTHER_BOOTSTRAP });
        let store = await LevelLogStorage.open(db, { dataDir: 'memory-level', bootstrap: CONF });
        const model = new MemoryStorage(CONF);
        let term = 1;
        try {
          for (const op of ops) {
            switch (op.kind) {
              case 'ready': {
                const next = toReady(op, model, term);
                term = next.term;
                const { snapshot, entries, hardState } = next.write;
                await store.persist(next.write);
                // The model, written the way the Ready contract orders it. persist keeps only
                // the snapshot's metadata: the state machine holds its data.
                if (snapshot !== null) model.applySnapshot({ meta: snapshot.meta, data: new Uint8Array(0) });
                model.append(entries);
                if (hardState !== null) model.setHardState(hardState);
                break;
              }
              case 'compact': {
                const at = model.firstIndex() - 1 + (op.at % (model.lastIndex() - model.firstIndex() + 2));
                const meta = { index: at, term: model.term(at), confState: model.snapshot().meta.confState };
                await store.compact(meta, new Uint8Array(0));
                model.compact(meta, new Uint8Array(0));
                break;
              }
              case 'reopen':
                await store.close();
                store = await open();
                break;
            }
            expect(readAll(store)).toEqual(readAll(model));
          }
          await store.close();
          store = await open();
          expect(readAll(store)).toEqual(readAll(model));
        } finally {
          await store.close();
        }
      }),
      { numRuns: 300 },
    );
  });
});
