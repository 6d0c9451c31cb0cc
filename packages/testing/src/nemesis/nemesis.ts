/**
 * The nemesis: named faults against a running cluster, and a seeded schedule of them. A fault is
 * an *episode*: `start` injects it and returns what `stop` must undo (heal the links it cut,
 * restart the nodes it killed, resume the ones it paused). Network faults need only a
 * LinkControl; process faults (kill -9, SIGSTOP, rolling restart) need a ProcessControl, which a
 * multi-process cluster gives and an in-process one does not.
 *
 * Every random choice comes from one SeededRandom, so a seed names a schedule. The timing of a
 * real cluster is not replayed by a seed: the same seed injects the same kinds of fault in the
 * same order, against whichever node is leader at that moment.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SeededRandom, type NodeId } from '@raftkv/raft';
import type { LinkControl, LinkFaultMode } from './links.js';

/** Kill, restart, pause and resume node processes (a ProcessCluster can). */
export interface ProcessControl {
  /** SIGKILL; resolves once the process has ended. */
  kill(id: NodeId): Promise<void>;
  /** Starts a killed node again with its data; resolves once it listens. */
  restart(id: NodeId): Promise<void>;
  /** SIGSTOP. */
  pause(id: NodeId): void;
  /** SIGCONT. */
  resume(id: NodeId): void;
  /** SIGTERM: the node stops as asked (a leader hands leadership over first); resolves once the process has ended. */
  stop(id: NodeId): Promise<void>;
}

/** Change the membership of a running cluster (a ProcessCluster can, except in 'netns' mode). */
export interface MembershipControl {
  /** A new machine under a new id joins as a learner; with `autoPromote` the leader promotes it once caught up. Resolves once it is added. */
  add(options: { autoPromote: boolean }): Promise<NodeId>;
  /** Promotes a learner, retrying until it is caught up. */
  promote(id: NodeId): Promise<void>;
  /** Removes a member through the leader, and stops its process if it runs. */
  remove(id: NodeId): Promise<void>;
  /** The voters and learners the leader knows now. */
  members(): Promise<readonly { id: NodeId; role: 'voter' | 'learner' }[]>;
}

export interface NemesisTarget {
  /** The members now (membership faults change them). */
  readonly ids: readonly NodeId[];
  readonly network: LinkControl;
  /** Absent: only network faults can run. */
  readonly processes?: ProcessControl | undefined;
  /** Absent: no membership faults. */
  readonly membership?: MembershipControl | undefined;
  /** The node the others follow right now, or null when there is none (answer within about a second). */
  leader(): Promise<NodeId | null>;
}

export const NETWORK_FAULTS = ['isolate-leader', 'isolate-node', 'split', 'bridge', 'one-way', 'flapping', 'slow-network'] as const;
export const PROCESS_FAULTS = ['kill-leader', 'kill-node', 'kill-minority', 'pause-leader', 'pause-node', 'rolling-restart', 'stop-leader', 'graceful-rolling-restart'] as const;
export const MEMBERSHIP_FAULTS = ['replace-node', 'grow-shrink'] as const;
export const FAULT_KINDS = [...NETWORK_FAULTS, ...PROCESS_FAULTS, ...MEMBERSHIP_FAULTS] as const;

/**
 * - isolate-leader / isolate-node: every link to and from one node cut (blackhole or reset).
 * - split: a random minority cut off from the majority, both ways.
 * - bridge: two halves that cannot talk, and one node that talks to both.
 * - one-way: the leader's outgoing links cut, its incoming ones intact (it hears, nobody hears it).
 * - flapping: a random partition put up and torn down every 0.2-1 s.
 * - slow-network: 20-150 ms delay with jitter on every link (needs LinkControl.supportsDelay).
 * - kill-leader / kill-node / kill-minority: kill -9, restarted when the episode ends.
 * - pause-leader / pause-node: SIGSTOP, SIGCONT when the episode ends.
 * - rolling-restart: each node in turn killed and restarted, the leader last.
 * - stop-leader: SIGTERM to the leader (it hands leadership over, then exits), restarted when
 *   the episode ends.
 * - graceful-rolling-restart: each node in turn stopped with SIGTERM and restarted, the leader
 *   last: the way an operator upgrades a cluster.
 * - replace-node: a member (the leader, one time in three) dies for good (kill -9), is removed,
 *   and a new machine under a new id joins as a learner and is promoted once caught up.
 * - grow-shrink: a new machine joins as a learner and is promoted, then another member (perhaps
 *   the leader) is removed and stopped; the cluster keeps its size.
 */
export type FaultKind = (typeof FAULT_KINDS)[number];

export function isFaultKind(value: string): value is FaultKind {
  return (FAULT_KINDS as readonly string[]).includes(value);
}

/** Whether a fault acts on processes (membership faults too): it needs a ProcessControl, and is combined only with network faults. */
export function isProcessFault(kind: FaultKind): boolean {
  return (PROCESS_FAULTS as readonly string[]).includes(kind) || isMembershipFault(kind);
}

export function isMembershipFault(kind: FaultKind): boolean {
  return (MEMBERSHIP_FAULTS as readonly string[]).includes(kind);
}

/** Faults that run a whole sequence of their own and are never the second half of a combination. */
const SEQUENCES: readonly FaultKind[] = ['rolling-restart', 'graceful-rolling-restart', 'flapping', ...MEMBERSHIP_FAULTS];

/** One line of the nemesis's record: what it did, when (ms since the nemesis was made). */
export interface NemesisEvent {
  readonly at: number;
  readonly kind: FaultKind | 'heal';
  readonly phase: 'start' | 'stop' | 'info';
  readonly detail: string;
}

export interface NemesisOptions {
  /** Seeds every random choice (default 1). */
  readonly seed?: number;
  /** Called with every event as it happens (also kept in `events`). */
  readonly onEvent?: (event: NemesisEvent) => void;
  /** How long a rolling restart waits for a leader after each restart (default 10 s). */
  readonly settleTimeoutMs?: number;
}

export interface ScheduleOptions {
  /** Which faults to draw from (default: every kind the target supports). */
  readonly faults?: readonly FaultKind[];
  /** Total time of the schedule in ms. */
  readonly durationMs: number;
  /** Each episode holds its fault for a time drawn from this range (ms; default [1000, 4000]). */
  readonly faultMs?: readonly [number, number];
  /** Quiet time between episodes (ms; default [500, 2000]). */
  readonly quietMs?: readonly [number, number];
  /** Chance (0..1) that an episode combines a network fault with a process fault (default 0.3). */
  readonly combineChance?: number;
  /** Stops the schedule early (the current episode is undone first). */
  readonly signal?: AbortSignal;
}

/** An injected fault: `stop` undoes it. */
interface Episode {
  readonly kind: FaultKind;
  readonly detail: string;
  stop(): Promise<void>;
}

const FLAP_MS: readonly [number, number] = [200, 1000];
const DELAY_MS: readonly [number, number] = [20, 150];
const SETTLE_TIMEOUT_MS = 10_000;
const LEADER_POLL_MS = 50;

export class Nemesis {
  readonly target: NemesisTarget;
  readonly events: NemesisEvent[] = [];
  readonly #random: SeededRandom;
  readonly #options: NemesisOptions;
  readonly #started = Date.now();
  /** Episodes in progress, undone by healAll(). */
  readonly #active = new Set<Episode>();

  constructor(target: NemesisTarget, options: NemesisOptions = {}) {
    this.target = target;
    this.#options = options;
    this.#random = new SeededRandom(options.seed ?? 1);
  }

  /** The fault kinds this target supports. */
  get supportedFaults(): FaultKind[] {
    return FAULT_KINDS.filter((kind) => this.supports(kind));
  }

  supports(kind: FaultKind): boolean {
    if (isMembershipFault(kind)) return this.target.processes !== undefined && this.target.membership !== undefined;
    if (isProcessFault(kind)) return this.target.processes !== undefined;
    if (kind === 'slow-network') return this.target.network.supportsDelay;
    if (kind === 'bridge') return this.target.ids.length >= 3;
    return this.target.ids.length >= 2;
  }

  // ---- the building blocks, for tests that script their own faults ----

  /** Cuts every link between the two groups, both ways. */
  async partition(a: readonly NodeId[], b: readonly NodeId[], mode: LinkFaultMode = 'drop'): Promise<void> {
    const cuts: Promise<void>[] = [];
    for (const x of a) for (const y of b) cuts.push(this.target.network.cut(x, y, mode), this.target.network.cut(y, x, mode));
    await Promise.all(cuts);
  }

  /** Cuts every link to and from `id`. */
  isolate(id: NodeId, mode: LinkFaultMode = 'drop'): Promise<void> {
    return this.partition([id], this.#others(id), mode);
  }

  /**
   * Undoes every episode in progress (restarts, resumes) and lifts every network fault. Goes on
   * past a failure (a node that does not restart), heals the links anyway, then throws.
   */
  async healAll(): Promise<void> {
    const failures: unknown[] = [];
    for (const episode of [...this.#active]) await this.#stop(episode).catch((error: unknown) => failures.push(error));
    await this.target.network.healAll().catch((error: unknown) => failures.push(error));
    this.#record('heal', 'info', failures.length === 0 ? 'every link healed' : `healed with ${failures.length} failure(s)`);
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `nemesis: ${failures.length} failures while healing`);
  }

  /** The current leader, polling up to `timeoutMs`; null if none. */
  async waitForLeader(timeoutMs: number): Promise<NodeId | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leader = await this.target.leader().catch(() => null);
      if (leader !== null || Date.now() > deadline) return leader;
      await sleep(LEADER_POLL_MS);
    }
  }

  // ---- named faults ----

  /** Injects one fault, holds it for `holdMs`, and undoes it. */
  async run(kind: FaultKind, holdMs: number, signal?: AbortSignal): Promise<void> {
    const episode = await this.#begin(kind, holdMs);
    try {
      await sleep(holdMs, undefined, signal === undefined ? {} : { signal }).catch(() => {});
    } finally {
      await this.#stop(episode);
    }
  }

  /**
   * Injects one fault and leaves it in place; `healAll()` (or the returned stop) undoes it.
   * `holdMs` matters only to flapping, which keeps flapping that long at most. Network faults
   * are not layered: stopping one heals every link, including cuts made by `isolate` or
   * `partition` or another episode.
   */
  async start(kind: FaultKind, holdMs = 3_000): Promise<{ stop: () => Promise<void> }> {
    const episode = await this.#begin(kind, holdMs);
    return { stop: () => this.#stop(episode) };
  }

  async #begin(kind: FaultKind, holdMs: number): Promise<Episode> {
    if (!this.supports(kind)) throw new Error(`nemesis: fault ${kind} is not supported by this target`);
    const episode = await this.#inject(kind, holdMs);
    this.#active.add(episode);
    this.#record(kind, 'start', episode.detail);
    return episode;
  }

  /**
   * Runs random episodes from `faults` until `durationMs` has passed, then undoes whatever is in
   * place. Returns the number of episodes run.
   */
  async schedule(options: ScheduleOptions): Promise<number> {
    const faults = (options.faults ?? this.supportedFaults).filter((kind) => this.supports(kind));
    if (faults.length === 0) throw new Error('nemesis: no supported fault to schedule');
    const [faultMin, faultMax] = options.faultMs ?? [1_000, 4_000];
    const [quietMin, quietMax] = options.quietMs ?? [500, 2_000];
    const combineChance = options.combineChance ?? 0.3;
    const networkKinds = faults.filter((k) => !isProcessFault(k));
    const processKinds = faults.filter((k) => isProcessFault(k));
    const deadline = Date.now() + options.durationMs;
    const sleepOptions = options.signal === undefined ? {} : { signal: options.signal };
    let episodes = 0;
    try {
      while (Date.now() < deadline && options.signal?.aborted !== true) {
        const holdMs = Math.min(this.#between(faultMin, faultMax), Math.max(0, deadline - Date.now()));
        const first = this.#pick(faults);
        const kinds: FaultKind[] = [first];
        // A combination: a partition and a crash or pause at once.
        if (this.#random.nextInt(1_000) < combineChance * 1_000) {
          const others = isProcessFault(first) ? networkKinds : processKinds;
          const second = others.filter((k) => !SEQUENCES.includes(k));
          if (second.length > 0 && !(first === 'rolling-restart' || first === 'graceful-rolling-restart')) kinds.push(this.#pick(second));
        }
        const running: Episode[] = [];
        try {
          for (const kind of kinds) running.push(await this.#begin(kind, holdMs));
          episodes += kinds.length;
          await sleep(holdMs, undefined, sleepOptions).catch(() => {});
        } finally {
          // Undone in reverse order; a failed undo stays active for the healAll below.
          for (const episode of running.reverse()) await this.#stop(episode).catch(() => {});
        }
        const quiet = Math.min(this.#between(quietMin, quietMax), Math.max(0, deadline - Date.now()));
        await sleep(quiet, undefined, sleepOptions).catch(() => {});
      }
    } catch (error) {
      await this.healAll().catch(() => {}); // the first error is the one to report
      throw error;
    }
    await this.healAll();
    return episodes;
  }

  // ---- internals ----

  async #inject(kind: FaultKind, holdMs: number): Promise<Episode> {
    const ids = this.target.ids;
    const net = this.target.network;
    const mode: LinkFaultMode = this.#random.nextInt(4) === 0 ? 'reset' : 'drop';
    const heal = async (): Promise<void> => net.healAll();
    switch (kind) {
      case 'isolate-leader':
      case 'isolate-node': {
        const victim = kind === 'isolate-leader' ? await this.#leaderOrRandom() : this.#pick(ids);
        await this.isolate(victim, mode);
        return { kind, detail: `${victim} isolated (${mode})`, stop: heal };
      }
      case 'split': {
        const [minority, majority] = this.#split();
        await this.partition(minority, majority, mode);
        return { kind, detail: `[${minority.join(' ')}] | [${majority.join(' ')}] (${mode})`, stop: heal };
      }
      case 'bridge': {
        const shuffled = this.#shuffle(ids);
        const bridge = shuffled[0]!;
        const rest = shuffled.slice(1);
        const left = rest.slice(0, Math.floor(rest.length / 2));
        const right = rest.slice(left.length);
        await this.partition(left, right, mode);
        return { kind, detail: `[${left.join(' ')}] | [${right.join(' ')}], ${bridge} sees both (${mode})`, stop: heal };
      }
      case 'one-way': {
        const victim = await this.#leaderOrRandom();
        await Promise.all(this.#others(victim).map((to) => net.cut(victim, to, mode)));
        return { kind, detail: `${victim} -> everyone cut (${mode}); ${victim} still hears the others`, stop: heal };
      }
      case 'flapping': {
        const stopFlapping = this.#flap(holdMs);
        return {
          kind,
          detail: `a random partition up and down every ${FLAP_MS[0]}-${FLAP_MS[1]} ms`,
          stop: async () => {
            await stopFlapping();
            await net.healAll();
          },
        };
      }
      case 'slow-network': {
        const delayMs = this.#between(DELAY_MS[0], DELAY_MS[1]);
        const jitterMs = Math.round(delayMs / 2);
        const all: Promise<void>[] = [];
        for (const from of ids) for (const to of this.#others(from)) all.push(net.delay(from, to, { delayMs, jitterMs }));
        await Promise.all(all);
        return { kind, detail: `every link delayed ${delayMs} ms + up to ${jitterMs} ms jitter`, stop: heal };
      }
      case 'kill-leader':
      case 'kill-node':
      case 'kill-minority': {
        const processes = this.#processes(kind);
        const victims =
          kind === 'kill-minority' ? this.#split()[0] : [kind === 'kill-leader' ? await this.#leaderOrRandom() : this.#pick(ids)];
        await Promise.all(victims.map((id) => processes.kill(id)));
        return {
          kind,
          detail: `kill -9 ${victims.join(' ')}`,
          stop: async () => {
            // Every victim gets its restart, even after one fails.
            const results = await Promise.allSettled(victims.map((id) => processes.restart(id)));
            const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
            if (failed.length > 0) throw failed.length === 1 ? failed[0] : new AggregateError(failed, `nemesis: ${failed.length} restarts failed`);
          },
        };
      }
      case 'pause-leader':
      case 'pause-node': {
        const processes = this.#processes(kind);
        const victim = kind === 'pause-leader' ? await this.#leaderOrRandom() : this.#pick(ids);
        processes.pause(victim);
        return { kind, detail: `SIGSTOP ${victim}`, stop: async () => processes.resume(victim) };
      }
      case 'stop-leader': {
        const processes = this.#processes(kind);
        const victim = await this.#leaderOrRandom();
        await processes.stop(victim);
        return { kind, detail: `SIGTERM ${victim}`, stop: () => processes.restart(victim) };
      }
      case 'rolling-restart':
      case 'graceful-rolling-restart': {
        const processes = this.#processes(kind);
        const graceful = kind === 'graceful-rolling-restart';
        const leader = await this.target.leader().catch(() => null);
        const order = [...this.#shuffle(ids.filter((id) => id !== leader)), ...(leader === null ? [] : [leader])];
        return this.#background(kind, `${graceful ? 'SIGTERM' : 'kill -9'} and restart ${order.join(', ')} in turn`, async () => {
          for (const id of order) {
            if (graceful) await processes.stop(id);
            else await processes.kill(id);
            this.#record(kind, 'info', `${graceful ? 'SIGTERM' : 'kill -9'} ${id}`);
            await processes.restart(id);
            this.#record(kind, 'info', `restarted ${id}`);
            await this.waitForLeader(this.#options.settleTimeoutMs ?? SETTLE_TIMEOUT_MS);
          }
        });
      }
      case 'replace-node': {
        const processes = this.#processes(kind);
        const membership = this.#membership(kind);
        const leader = await this.target.leader().catch(() => null);
        const followers = ids.filter((id) => id !== leader);
        const victim = leader !== null && (this.#random.nextInt(3) === 0 || followers.length === 0) ? leader : this.#pick(followers);
        return this.#background(kind, `${victim} dies for good and is replaced by a new machine`, async () => {
          await processes.kill(victim);
          this.#record(kind, 'info', `kill -9 ${victim}; its disk is lost`);
          await membership.remove(victim);
          this.#record(kind, 'info', `removed ${victim}`);
          const fresh = await membership.add({ autoPromote: true });
          this.#record(kind, 'info', `${fresh} joined as a learner, to be promoted once caught up`);
          await this.#untilVoter(membership, fresh);
          this.#record(kind, 'info', `${fresh} promoted`);
        });
      }
      case 'grow-shrink': {
        this.#processes(kind);
        const membership = this.#membership(kind);
        return this.#background(kind, 'a new machine joins and is promoted, then another member leaves', async () => {
          const fresh = await membership.add({ autoPromote: false });
          this.#record(kind, 'info', `${fresh} joined as a learner`);
          await membership.promote(fresh);
          this.#record(kind, 'info', `${fresh} promoted`);
          const leaving = this.#pick(this.target.ids.filter((id) => id !== fresh));
          await membership.remove(leaving);
          this.#record(kind, 'info', `removed ${leaving} and stopped it`);
        });
      }
    }
  }

  /**
   * An episode whose work runs on while it holds (a restart sequence, a membership change that
   * may wait out a partition); `stop` waits for the work to end and rethrows its failure.
   */
  #background(kind: FaultKind, detail: string, work: () => Promise<void>): Episode {
    const running = work();
    running.catch(() => {}); // awaited by stop
    return { kind, detail, stop: () => running };
  }

  /** Waits (up to the settle timeout, a few times over) for a learner promoted by the leader on its own. */
  async #untilVoter(membership: MembershipControl, id: NodeId): Promise<void> {
    const waitMs = 3 * (this.#options.settleTimeoutMs ?? SETTLE_TIMEOUT_MS);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const members = await membership.members().catch(() => null);
      if (members?.some((m) => m.id === id && m.role === 'voter') === true) return;
      if (Date.now() > deadline) throw new Error(`nemesis: ${id} was not promoted within ${waitMs} ms of joining`);
      await sleep(LEADER_POLL_MS * 4);
    }
  }

  /** Puts a random partition up and down until the returned function is called. */
  #flap(holdMs: number): () => Promise<void> {
    const controller = new AbortController();
    const net = this.target.network;
    const loop = (async () => {
      const until = Date.now() + holdMs;
      let flips = 0;
      while (!controller.signal.aborted && Date.now() < until) {
        const [minority, majority] = this.#split();
        await this.partition(minority, majority, 'drop');
        flips++;
        await sleep(this.#between(FLAP_MS[0], FLAP_MS[1]), undefined, { signal: controller.signal }).catch(() => {});
        await net.healAll();
        await sleep(this.#between(FLAP_MS[0], FLAP_MS[1]), undefined, { signal: controller.signal }).catch(() => {});
      }
      return flips;
    })();
    loop.catch(() => {}); // awaited (and its failure rethrown) by the returned function
    return async () => {
      controller.abort();
      const flips = await loop;
      this.#record('flapping', 'info', `${flips} partitions put up`);
    };
  }

  /** Undoes an episode; one whose undo fails stays active, so that healAll tries again. */
  async #stop(episode: Episode): Promise<void> {
    if (!this.#active.has(episode)) return;
    await episode.stop();
    this.#active.delete(episode);
    this.#record(episode.kind, 'stop', episode.detail);
  }

  #membership(kind: FaultKind): MembershipControl {
    const membership = this.target.membership;
    if (membership === undefined) throw new Error(`nemesis: ${kind} needs membership control (a ProcessCluster with a proxy network)`);
    return membership;
  }

  #processes(kind: FaultKind): ProcessControl {
    const processes = this.target.processes;
    if (processes === undefined) throw new Error(`nemesis: ${kind} needs process control (a ProcessCluster)`);
    return processes;
  }

  async #leaderOrRandom(): Promise<NodeId> {
    return (await this.waitForLeader(1_000)) ?? this.#pick(this.target.ids);
  }

  /** A random minority and the majority that remains. */
  #split(): [NodeId[], NodeId[]] {
    const shuffled = this.#shuffle(this.target.ids);
    const size = 1 + this.#random.nextInt(Math.max(1, Math.floor((shuffled.length - 1) / 2)));
    return [shuffled.slice(0, size), shuffled.slice(size)];
  }

  #others(id: NodeId): NodeId[] {
    return this.target.ids.filter((other) => other !== id);
  }

  #pick<T>(items: readonly T[]): T {
    return items[this.#random.nextInt(items.length)]!;
  }

  #between(min: number, max: number): number {
    return min + this.#random.nextInt(Math.max(1, max - min + 1));
  }

  #shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.#random.nextInt(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  #record(kind: NemesisEvent['kind'], phase: NemesisEvent['phase'], detail: string): void {
    const event: NemesisEvent = { at: Date.now() - this.#started, kind, phase, detail };
    this.events.push(event);
    this.#options.onEvent?.(event);
  }
}
