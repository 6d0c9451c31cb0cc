/**
 * Client workloads for partition tests, over the HTTP API of every node (a follower forwards
 * writes to the leader and serves linearizable reads itself), recording what each operation
 * returned and when.
 *
 * - RegisterWorkload: clients read, write and compare-and-set a handful of keys, each read,
 *   write and CAS an Operation for the linearizability checker. Every written value is unique,
 *   so a value names the write that stored it; the HTTP CAS compares modIndex, and a client
 *   compares against the modIndex it last read together with that value, which makes it a CAS
 *   on the value. Keys rotate every `opsPerKey` operations, keeping each key's history short
 *   enough to check.
 * - UniqueWriteWorkload: clients write keys no one else writes; afterwards every acknowledged
 *   key must be readable with its value (no acknowledged write lost).
 *
 * How an answer is classified (docs/testing.md): 2xx is success; 404 on a read is "absent";
 * 409 on a CAS is a failed comparison; 503 RAFTKV_NOT_LEADER / RAFTKV_PROPOSAL_DROPPED mean the
 * write was certainly not applied, and a refused connection means it was never sent: either way it is
 * left out of the history; every other failure of a write (504, a reset connection, a
 * client-side timeout) is indeterminate: it may or may not take
 * effect, at any time. A read that fails constrains nothing and is left out.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { SeededRandom, type NodeId } from '@raftkv/raft';
import type { Operation } from '../linearizability/index.js';

/** A node's HTTP API as the clients reach it. */
export interface HttpEndpoint {
  readonly id: NodeId;
  /** "host:port" */
  readonly address: string;
}

export type ReadConsistency = 'linearizable' | 'lease' | 'stale';

/** What became of one operation. */
export type Outcome = 'ok' | 'fail' | 'unknown';

/** An operation as recorded, with what the checker does not need (node, outcome, error). */
export interface RecordedOperation extends Operation {
  readonly node: NodeId;
  readonly outcome: Outcome;
  /** For fail/unknown: the status and error code, or the network error. */
  readonly error?: string;
}

export interface OperationCounts {
  ok: number;
  fail: number;
  unknown: number;
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly modIndex: number | null;
  readonly code: string | null;
}

/** Error codes after which a write certainly did not take effect (refused before the log, or its entry lost to another). */
const NEVER_PROPOSED: ReadonlySet<string> = new Set(['RAFTKV_NOT_LEADER', 'RAFTKV_PROPOSAL_DROPPED']);

/**
 * One HTTP request with a deadline. Resolves with the answer, or rejects with the network error
 * or the timeout (both mean "no answer").
 */
async function call(endpoint: HttpEndpoint, method: 'GET' | 'PUT', path: string, timeoutMs: number, body?: string): Promise<HttpAnswer> {
  const response = await fetch(`http://${endpoint.address}${path}`, {
    method,
    signal: AbortSignal.timeout(timeoutMs),
    ...(body === undefined ? {} : { body, headers: { 'content-type': 'text/plain' } }),
  });
  const text = await response.text();
  const modIndexHeader = response.headers.get('x-raftkv-mod-index');
  let code: string | null = null;
  if (response.status >= 400 && response.headers.get('content-type')?.includes('json') === true) {
    try {
      const parsed = JSON.parse(text) as { code?: unknown };
      code = typeof parsed.code === 'string' ? parsed.code : null;
    } catch {
      code = null;
    }
  }
  return { status: response.status, body: text, modIndex: modIndexHeader === null ? null : Number(modIndexHeader), code };
}

/** Socket errors of a connection that never opened: the request was certainly not sent. */
const CONNECT_ERRORS: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** A write that got no answer: never sent (fail) if the connection was refused, else unknown. */
function noAnswer(error: unknown): { outcome: Outcome; error: string } {
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  const refused = typeof cause?.code === 'string' && CONNECT_ERRORS.has(cause.code);
  return { outcome: refused ? 'fail' : 'unknown', error: describeError(error) };
}

/** A linearizable prefix scan: the items (values decoded), or a rejection on any failure. */
async function scan(endpoint: HttpEndpoint, prefix: string, timeoutMs: number): Promise<{ key: string; value: string }[]> {
  const answer = await call(endpoint, 'GET', `/v1/kv?prefix=${encodeURIComponent(prefix)}&consistency=linearizable`, timeoutMs);
  if (answer.status !== 200) throw new Error(`scan ${prefix} at ${endpoint.id}: ${answer.status} ${answer.code ?? ''}`);
  const body = JSON.parse(answer.body) as { items: { key: string; value: string; encoding: 'utf8' | 'base64' }[] };
  return body.items.map((item) => ({ key: item.key, value: item.encoding === 'utf8' ? item.value : Buffer.from(item.value, 'base64').toString('utf8') }));
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error.cause as { code?: unknown; message?: unknown } | undefined) ?? undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
  return `${error.name}: ${error.message}${detail === '' ? '' : ` (${detail})`}`;
}

function keyPath(key: string): string {
  return `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
}

interface WorkloadCommon {
  /** The nodes to talk to; read at every operation (a client sends each operation to the next node in turn). */
  readonly endpoints: () => readonly HttpEndpoint[];
  /** Concurrent clients (default 10). */
  readonly clients?: number;
  /** Client-side deadline of one request (default 3 s); no answer by then is an indeterminate outcome. */
  readonly requestTimeoutMs?: number;
  /** Pause between a client's operations, drawn from [0, thinkMs] (default 5). */
  readonly thinkMs?: number;
  readonly seed?: number;
  /** Prefix of every key the workload touches (default 'nemesis'). */
  readonly keyPrefix?: string;
}

export interface RegisterWorkloadOptions extends WorkloadCommon {
  /** Keys in use at a time (default 5). */
  readonly keys?: number;
  /** Operations per key before the clients move on to fresh keys (default 200). */
  readonly opsPerKey?: number;
  /** Consistency of the reads (default linearizable; 'stale' is expected to fail the checker under partitions). */
  readonly consistency?: ReadConsistency;
  /** Shares of reads, writes and CAS (default 0.5 / 0.3 / 0.2). */
  readonly mix?: { readonly read: number; readonly write: number; readonly cas: number };
}

type CommonSettings = Required<Omit<WorkloadCommon, 'seed'>>;

/** A running set of clients; `stop()` waits for each client's operation in flight. */
abstract class Workload {
  protected readonly common: CommonSettings;
  protected readonly random: SeededRandom;
  readonly #startedAt = performance.now();
  #stopping = false;
  #running: Promise<void>[] = [];

  constructor(options: WorkloadCommon) {
    this.common = {
      endpoints: options.endpoints,
      clients: options.clients ?? 10,
      requestTimeoutMs: options.requestTimeoutMs ?? 3_000,
      thinkMs: options.thinkMs ?? 5,
      keyPrefix: options.keyPrefix ?? 'nemesis',
    };
    this.random = new SeededRandom(options.seed ?? 1);
  }

  protected get stopping(): boolean {
    return this.#stopping;
  }

  /** Milliseconds since the workload was made: the time base of every recorded operation. */
  now(): number {
    return Math.round((performance.now() - this.#startedAt) * 1000) / 1000;
  }

  /** Starts the clients. */
  start(): this {
    this.#running = Array.from({ length: this.common.clients }, (_, client) => this.client(client));
    return this;
  }

  /** Stops issuing operations and waits for those in flight (each ends by its deadline). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
  }

  /** One client's loop, until `stopping`. */
  protected abstract client(client: number): Promise<void>;

  /** The node for a client's `turn`-th operation (the nodes in turn); null once stopping. */
  protected async endpointFor(turn: number): Promise<HttpEndpoint | null> {
    for (;;) {
      if (this.#stopping) return null;
      const endpoints = this.common.endpoints();
      if (endpoints.length > 0) return endpoints[turn % endpoints.length]!;
      await sleep(20);
    }
  }

  /** The pause between two operations of a client. */
  protected async think(): Promise<void> {
    if (this.common.thinkMs > 0) await sleep(this.random.nextInt(this.common.thinkMs + 1));
  }
}

export class RegisterWorkload extends Workload {
  readonly history: RecordedOperation[] = [];
  readonly counts = { read: { ok: 0, fail: 0, unknown: 0 }, write: { ok: 0, fail: 0, unknown: 0 }, cas: { ok: 0, fail: 0, unknown: 0 } };
  readonly #options: CommonSettings & Required<Pick<RegisterWorkloadOptions, 'keys' | 'opsPerKey' | 'consistency' | 'mix'>>;
  #nextId = 0;
  /** Operations issued in the current generation of keys. */
  #generationOps = 0;
  #generation = 0;

  constructor(options: RegisterWorkloadOptions) {
    super(options);
    this.#options = {
      ...this.common,
      keys: options.keys ?? 5,
      opsPerKey: options.opsPerKey ?? 200,
      consistency: options.consistency ?? 'linearizable',
      mix: options.mix ?? { read: 0.5, write: 0.3, cas: 0.2 },
    };
  }

  /** The operations the checker needs: failed ones (never proposed, or unanswered reads) left out. */
  checkable(): Operation[] {
    return this.history
      .filter((op) => op.outcome !== 'fail' && !(op.kind === 'read' && op.outcome === 'unknown'))
      .map(({ node: _node, outcome: _outcome, error: _error, ...op }) => op);
  }

  /** The keys the workload has used so far. */
  keysUsed(): string[] {
    const keys: string[] = [];
    for (let g = 0; g <= this.#generation; g++) for (let k = 0; k < this.#options.keys; k++) keys.push(this.#key(g, k));
    return keys;
  }

  #key(generation: number, k: number): string {
    return `${this.#options.keyPrefix}/g${generation}/k${k}`;
  }

  protected async client(client: number): Promise<void> {
    const o = this.#options;
    /** What this client last saw of each key: the value and its modIndex (null: absent). */
    const seen = new Map<string, { value: string | null; modIndex: number | null }>();
    let seq = 0;
    for (let turn = client; ; turn++) {
      const endpoint = await this.endpointFor(turn);
      if (endpoint === null) return;
      if (++this.#generationOps > o.keys * o.opsPerKey) {
        this.#generation++;
        this.#generationOps = 0;
      }
      const key = this.#key(this.#generation, this.random.nextInt(o.keys));
      const draw = this.random.nextInt(1_000) / 1_000;
      const value = `c${client}-${seq++}`;
      if (draw < o.mix.read) await this.#read(client, endpoint, key, seen);
      else if (draw < o.mix.read + o.mix.write) await this.#write(client, endpoint, key, value);
      else await this.#cas(client, endpoint, key, value, seen.get(key) ?? { value: null, modIndex: null });
      await this.think();
    }
  }

  async #read(client: number, endpoint: HttpEndpoint, key: string, seen: Map<string, { value: string | null; modIndex: number | null }>): Promise<void> {
    const id = this.#nextId++;
    const invoke = this.now();
    const base = { id, clientId: client, key, kind: 'read' as const, invoke, node: endpoint.id };
    try {
      const answer = await call(endpoint, 'GET', `${keyPath(key)}?consistency=${this.#options.consistency}`, this.common.requestTimeoutMs);
      const complete = this.now();
      const absent = answer.status === 404 && answer.code === 'RAFTKV_KEY_NOT_FOUND';
      if (answer.status === 200 || absent) {
        const value = answer.status === 200 ? answer.body : null;
        seen.set(key, { value, modIndex: answer.modIndex });
        this.#record('read', { ...base, output: value, complete, outcome: 'ok' });
      } else {
        this.#record('read', { ...base, complete: null, outcome: 'fail', error: `${answer.status} ${answer.code ?? answer.body.slice(0, 80)}` });
      }
    } catch (error) {
      this.#record('read', { ...base, complete: null, outcome: 'fail', error: describeError(error) });
    }
  }

  async #write(client: number, endpoint: HttpEndpoint, key: string, value: string): Promise<void> {
    const id = this.#nextId++;
    const base = { id, clientId: client, key, kind: 'write' as const, value, invoke: this.now(), node: endpoint.id };
    try {
      const answer = await call(endpoint, 'PUT', keyPath(key), this.common.requestTimeoutMs, value);
      const complete = this.now();
      if (answer.status >= 200 && answer.status < 300) this.#record('write', { ...base, complete, outcome: 'ok' });
      else this.#record('write', { ...base, complete: null, ...failure(answer) });
    } catch (error) {
      this.#record('write', { ...base, complete: null, ...noAnswer(error) });
    }
  }

  async #cas(client: number, endpoint: HttpEndpoint, key: string, value: string, expected: { value: string | null; modIndex: number | null }): Promise<void> {
    const id = this.#nextId++;
    const condition = expected.value === null || expected.modIndex === null ? 'absent' : String(expected.modIndex);
    const expectedValue = condition === 'absent' ? null : expected.value;
    const base = { id, clientId: client, key, kind: 'cas' as const, value, expected: expectedValue, invoke: this.now(), node: endpoint.id };
    try {
      const answer = await call(endpoint, 'PUT', `${keyPath(key)}?cas=${condition}`, this.common.requestTimeoutMs, value);
      const complete = this.now();
      if (answer.status >= 200 && answer.status < 300) this.#record('cas', { ...base, output: true, complete, outcome: 'ok' });
      else if (answer.status === 409 && answer.code === 'RAFTKV_COMPARE_FAILED') this.#record('cas', { ...base, output: false, complete, outcome: 'ok' });
      else this.#record('cas', { ...base, complete: null, ...failure(answer) });
    } catch (error) {
      this.#record('cas', { ...base, complete: null, ...noAnswer(error) });
    }
  }

  #record(kind: 'read' | 'write' | 'cas', op: RecordedOperation): void {
    this.history.push(op);
    this.counts[kind][op.outcome]++;
  }
}

/** A write's non-2xx answer: certainly not applied (fail) or unknown. */
function failure(answer: HttpAnswer): { outcome: Outcome; error: string } {
  const error = `${answer.status} ${answer.code ?? answer.body.slice(0, 80)}`;
  return { outcome: answer.code !== null && NEVER_PROPOSED.has(answer.code) ? 'fail' : 'unknown', error };
}

export interface UniqueWriteRecord {
  readonly key: string;
  readonly value: string;
  readonly node: NodeId;
  readonly outcome: Outcome;
  readonly error?: string;
}

export interface LostWriteReport {
  /** Acknowledged writes checked. */
  readonly acknowledged: number;
  /** Acknowledged writes whose key is missing or holds another value. */
  readonly lost: { key: string; expected: string; found: string | null }[];
  /** Indeterminate writes that did take effect, of those that were indeterminate. */
  readonly unknownApplied: number;
  readonly unknown: number;
  /** Writes answered "never proposed" (NOT_LEADER, PROPOSAL_DROPPED, refused) that are there after all. */
  readonly failedButApplied: string[];
  /** Keys that could not be read at all before the deadline (the check is incomplete if any). */
  readonly unreadable: string[];
}

/** Every client writes its own keys once each; see `verify` for the check. */
export class UniqueWriteWorkload extends Workload {
  readonly writes: UniqueWriteRecord[] = [];
  readonly counts: OperationCounts = { ok: 0, fail: 0, unknown: 0 };

  protected async client(client: number): Promise<void> {
    const o = this.common;
    for (let seq = 0; ; seq++) {
      const endpoint = await this.endpointFor(client + seq);
      if (endpoint === null) return;
      const key = `${o.keyPrefix}/unique/c${client}/${String(seq).padStart(6, '0')}`;
      const value = `v-${client}-${seq}`;
      let record: UniqueWriteRecord;
      try {
        const answer = await call(endpoint, 'PUT', keyPath(key), o.requestTimeoutMs, value);
        record = answer.status >= 200 && answer.status < 300 ? { key, value, node: endpoint.id, outcome: 'ok' } : { key, value, node: endpoint.id, ...failure(answer) };
      } catch (error) {
        record = { key, value, node: endpoint.id, ...noAnswer(error) };
      }
      this.writes.push(record);
      this.counts[record.outcome]++;
      await this.think();
    }
  }

  /**
   * Reads back every write with linearizable prefix scans (one per client and thousand keys,
   * through the nodes in turn, each retried until `timeoutMs` has passed, and tried at least
   * once): every acknowledged write must be there with its value, and no write the workload
   * counted as never proposed may be there.
   */
  async verify(timeoutMs = 30_000): Promise<LostWriteReport> {
    const deadline = Date.now() + timeoutMs;
    const buckets = new Map<string, UniqueWriteRecord[]>();
    for (const write of this.writes) {
      const bucket = write.key.slice(0, -3); // keys end in a 6-digit sequence number: 1,000 per bucket
      let list = buckets.get(bucket);
      if (list === undefined) buckets.set(bucket, (list = []));
      list.push(write);
    }
    const found = new Map<string, string>();
    const unreadable: string[] = [];
    let turn = 0;
    const queue = [...buckets.keys()];
    const reader = async (): Promise<void> => {
      for (let bucket = queue.shift(); bucket !== undefined; bucket = queue.shift()) {
        let items: { key: string; value: string }[] | null = null;
        for (let attempt = 0; items === null && (attempt === 0 || Date.now() < deadline); attempt++) {
          const endpoints = this.common.endpoints();
          const endpoint = endpoints[turn++ % Math.max(1, endpoints.length)];
          if (endpoint === undefined) break;
          items = await scan(endpoint, bucket, this.common.requestTimeoutMs).catch(() => null);
          if (items === null) await sleep(50);
        }
        if (items === null) unreadable.push(...(buckets.get(bucket) ?? []).map((w) => w.key));
        else for (const item of items) found.set(item.key, item.value);
      }
    };
    await Promise.all(Array.from({ length: 4 }, reader));
    const unreadableKeys = new Set(unreadable);
    const lost: { key: string; expected: string; found: string | null }[] = [];
    const failedButApplied: string[] = [];
    let unknownApplied = 0;
    for (const write of this.writes) {
      if (unreadableKeys.has(write.key)) continue;
      const value = found.get(write.key) ?? null;
      if (write.outcome === 'ok' && value !== write.value) lost.push({ key: write.key, expected: write.value, found: value });
      else if (write.outcome === 'unknown' && value === write.value) unknownApplied++;
      else if (write.outcome === 'fail' && value === write.value) failedButApplied.push(write.key);
    }
    return {
      acknowledged: this.writes.filter((w) => w.outcome === 'ok').length,
      lost,
      unknownApplied,
      unknown: this.writes.filter((w) => w.outcome === 'unknown').length,
      failedButApplied,
      unreadable,
    };
  }
}
