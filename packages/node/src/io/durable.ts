/**
 * The real edges of the Ready loop: the log on LevelDB, the state machine on LevelDB, the wall
 * clock, and the wiring of a `Transport` (TCP, or the in-memory one of embedded clusters) to a
 * replica. Promises end here: each operation's callback runs when its promise settles.
 */
import type { ApplyResult, KvStateMachine, StagedSnapshot } from '@raftkv/kv';
import type { ConfState, Entry, LogIndex, LogStorage, SnapshotMeta, Term } from '@raftkv/raft';
import type { LevelLogStorage } from '@raftkv/storage';
import type { SnapshotStreams, TransportHandlers } from '@raftkv/transport';
import type { Clock, Done, LogWrite, ReplicaInbox, ReplicaLog, ReplicaStateMachine } from '../replica/io.js';

const EMPTY = new Uint8Array(0);

function settleInto(promise: Promise<unknown>, done: Done): void {
  promise.then(
    () => done(null),
    (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
  );
}

/** `LevelLogStorage` as the replica's log: reads from its in-memory mirror, writes one batch each. */
export class LevelReplicaLog implements ReplicaLog {
  readonly #storage: LevelLogStorage;

  constructor(storage: LevelLogStorage) {
    this.#storage = storage;
  }

  initialState(): ReturnType<LogStorage['initialState']> {
    return this.#storage.initialState();
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
    return this.#storage.entries(lo, hi, bytesMax);
  }

  term(i: LogIndex): Term {
    return this.#storage.term(i);
  }

  firstIndex(): LogIndex {
    return this.#storage.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.#storage.lastIndex();
  }

  snapshot(): ReturnType<LogStorage['snapshot']> {
    return this.#storage.snapshot();
  }

  persist(write: LogWrite, done: Done): void {
    settleInto(this.#storage.persist({ snapshot: write.snapshot, entries: write.entries, hardState: write.hardState, mustSync: write.sync }), done);
  }

  compact(meta: SnapshotMeta, done: Done): void {
    // The state machine is the snapshot's data (streamed on demand): the log keeps only the metadata.
    settleInto(this.#storage.compact(meta, EMPTY), done);
  }
}

/** A snapshot image over TCP: the state machine's stream of chunks. */
export type ChunkImage = AsyncIterable<Uint8Array>;

/** `KvStateMachine` as the replica's state machine. */
export class LevelReplicaStateMachine implements ReplicaStateMachine<ChunkImage> {
  readonly #kv: KvStateMachine;

  constructor(kv: KvStateMachine) {
    this.#kv = kv;
  }

  get appliedIndex(): LogIndex {
    return this.#kv.appliedIndex;
  }

  get appliedTerm(): Term {
    return this.#kv.appliedTerm;
  }

  get confState(): ConfState {
    return this.#kv.confState;
  }

  apply(entries: readonly Entry[], done: (error: Error | null, results: readonly ApplyResult[]) => void): void {
    this.#kv.apply(entries).then(
      (results) => done(null, results),
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error)), []),
    );
  }

  sync(done: Done): void {
    settleInto(this.#kv.sync(), done);
  }

  stage(meta: SnapshotMeta, image: ChunkImage, done: (error: Error | null, staged: StagedSnapshot | null) => void): void {
    this.#kv.importSnapshot({ index: meta.index, term: meta.term }, image).then(
      (staged) => done(null, staged),
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error)), null),
    );
  }

  install(staged: StagedSnapshot, done: Done): void {
    settleInto(this.#kv.install(staged), done);
  }

  discard(staged: StagedSnapshot, done: Done): void {
    settleInto(this.#kv.discard(staged), done);
  }

  /** The state as it is when the consumer starts pulling (an apply in progress finishes first). */
  exportImage(): ChunkImage {
    const kv = this.#kv;
    return {
      async *[Symbol.asyncIterator]() {
        const exported = await kv.exportSnapshot();
        yield* exported.chunks;
      },
    };
  }
}

/** The wall clock, monotonic (`performance.now`): unaffected by changes of the time of day, and running while the process is stopped. */
export const MONOTONIC_CLOCK: Clock = { nowMs: () => performance.now() };

/** The handlers and snapshot streams through which a transport feeds a replica. */
export function transportWiring(inbox: () => ReplicaInbox<ChunkImage> | null): { handlers: TransportHandlers; streams: SnapshotStreams } {
  return {
    handlers: {
      onMessage: (m) => inbox()?.step(m),
      onSnapshotStatus: (to, ok) => inbox()?.snapshotSent(to, ok),
      onUnreachable: (to) => inbox()?.unreachable(to),
    },
    streams: {
      open: () => {
        const replica = inbox();
        if (replica === null) throw new Error('the node is not running');
        return replica.snapshotImage();
      },
      receive: (message, chunks) =>
        new Promise<void>((resolve, reject) => {
          const replica = inbox();
          if (replica === null) return reject(new Error('the node is not running'));
          replica.receiveSnapshot(message, chunks, (error) => (error === null ? resolve() : reject(error)));
        }),
    },
  };
}
