/**
 * Linearizability of per-key registers: Wing & Gong's search with Lowe's improvements, as in
 * Porcupine and Knossos. Keys are independent registers, so each key's sub-history is checked on
 * its own (linearizability is compositional). Per key, the history is a doubly linked list of
 * call/return events in time order; the search repeatedly linearizes a pending operation whose
 * call precedes the first pending return, applies it to the register, and backtracks when stuck.
 * A memo of (set of linearized operations, register value) prunes configurations already
 * explored: both determine the rest of the search, so a repeat cannot succeed where the first
 * visit failed (see cache.ts for how indeterminate ops widen "repeat" to "subsumed").
 *
 * Indeterminate operations (`complete: null`) return at +infinity: they never block anything and
 * may stay unlinearized, since leaving one out is the same as linearizing it after everything else.
 * The search succeeds once every determinate operation is linearized.
 *
 * Indeterminate ops are what makes the search explode (each is a candidate forever), so on top of
 * the memo the search skips moves that cannot matter, each justified where it is made: an
 * indeterminate op that unblocks no candidate, all but one of interchangeable indeterminate ops,
 * a blind write right after an indeterminate op, and overwriting a value that a pending op still
 * needs and nothing can write again. Determinate ops go first at each level, so the search falls
 * back on indeterminate ops only when it must.
 */
import { ConfigurationCache } from './cache.js';
import { describeOperation, formatValue, validateHistory, type Operation, type RegisterValue } from './history.js';
import {
  applyStep,
  compileOps,
  isBlindWrite,
  STEP_CAS_FAILED,
  STEP_CAS_UNKNOWN,
  STEP_READ,
  ValueTable,
  type CompiledOps,
} from './model.js';

export interface CheckOptions {
  /** The value every register holds before the history starts; default null (absent). */
  initialValue?: RegisterValue;
  /** Maximum search steps per key before giving up with 'unknown'; default 1_000_000. */
  budget?: number;
}

export type KeyVerdict =
  | { key: string; result: 'ok'; operations: number }
  | { key: string; result: 'illegal'; operations: number; window: Operation[]; explanation: string }
  | { key: string; result: 'unknown'; operations: number; reason: string };

export interface CheckResult {
  result: 'ok' | 'illegal' | 'unknown';
  keys: KeyVerdict[];
}

const searchStepsDefault = 1_000_000;
/** How many already-linearized operations a failure window shows at most. */
const windowLinearizedOpsMax = 12;
/** How many pending determinate candidates a failure window shows at most. */
const windowPendingOpsMax = 12;
/** How many pending indeterminate operations a failure window shows at most. */
const windowIndeterminateOpsMax = 4;

/**
 * Checks that `history` is linearizable, key by key. Throws a plain Error if the history is
 * malformed (duplicate ids, completion before invocation, missing fields).
 */
export function checkLinearizable(history: readonly Operation[], options: CheckOptions = {}): CheckResult {
  validateHistory(history);
  const initialValue = options.initialValue ?? null;
  if (typeof initialValue !== 'string' && initialValue !== null) {
    throw new Error('linearizability: options.initialValue must be a string or null');
  }
  const budget = options.budget ?? searchStepsDefault;
  if (!(budget > 0 && (Number.isInteger(budget) || budget === Number.POSITIVE_INFINITY))) {
    throw new Error(`linearizability: options.budget must be a positive integer, got ${String(budget)}`);
  }

  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    let ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, (ops = []));
    ops.push(op);
  }
  const keys = [...byKey.keys()].sort();
  const verdicts = keys.map((key) => checkKey(key, byKey.get(key) ?? [], initialValue, budget));
  const result = verdicts.some((v) => v.result === 'illegal')
    ? 'illegal'
    : verdicts.some((v) => v.result === 'unknown')
      ? 'unknown'
      : 'ok';
  return { result, keys: verdicts };
}

/** The deepest point the search got stuck at, kept to explain an illegal verdict. */
interface Deepest {
  depth: number;
  state: number;
  /** Index (in the key's sorted ops) of the determinate op whose return blocked the search. */
  culprit: number;
  /** The linearized prefix, as op indices in linearization order. */
  prefix: Int32Array;
  /** Pending ops that were candidates to be linearized next: determinate, then recent indeterminate. */
  pending: number[];
}

function checkKey(key: string, keyOps: readonly Operation[], initialValue: RegisterValue, budget: number): KeyVerdict {
  const operations = keyOps.length;
  // A read that never returned constrains nothing: it may have seen anything, or nothing.
  const ops = keyOps
    .filter((op) => op.kind !== 'read' || op.complete !== null)
    .sort((a, b) => a.invoke - b.invoke || a.id - b.id);
  const values = new ValueTable();
  const initialState = values.intern(initialValue);
  const compiled = compileOps(ops, values);
  const unwritten = findUnwrittenNeed(ops, compiled, initialState);
  if (unwritten !== null) {
    const op = ops[unwritten]!;
    const need = formatValue(values.value(compiled.needs[unwritten]!));
    return {
      key,
      result: 'illegal',
      operations,
      window: [op],
      explanation: `${describeOperation(op)}, but no operation that could have written ${need} was invoked before it returned`,
    };
  }

  // Determinate and indeterminate ops are numbered separately, each in invoke order: that keeps
  // the linearized determinate set dense below its first gap (see the cache key below).
  const detOp: number[] = [];
  const indetOp: number[] = [];
  ops.forEach((op, i) => (op.complete === null ? indetOp : detOp).push(i));
  const nd = detOp.length;
  const ni = indetOp.length;
  if (nd === 0) return { key, result: 'ok', operations };

  // The event list of determinate ops: node 2d is d's call, 2d+1 its return, before sorting.
  // Calls sort before returns at equal times, so ops that merely touch count as concurrent: the
  // permissive reading, since clocks that tie cannot order them.
  const eventCount = 2 * nd;
  const eventTime = (e: number): number => {
    const op = ops[detOp[e >>> 1]!]!;
    return (e & 1) === 0 ? op.invoke : (op.complete ?? Number.POSITIVE_INFINITY);
  };
  const order = Array.from({ length: eventCount }, (_, e) => e);
  order.sort((a, b) => eventTime(a) - eventTime(b) || (a & 1) - (b & 1) || (a >>> 1) - (b >>> 1));
  const head = eventCount;
  const tail = eventCount + 1;
  const next = new Int32Array(eventCount + 2);
  const prev = new Int32Array(eventCount + 2);
  const nodeDet = new Int32Array(eventCount + 2).fill(-1);
  const nodeIsCall = new Uint8Array(eventCount + 2);
  const nodeTime = new Float64Array(eventCount + 2);
  const returnNode = new Int32Array(nd);
  order.forEach((e, node) => {
    const d = e >>> 1;
    nodeDet[node] = d;
    nodeTime[node] = eventTime(e);
    if ((e & 1) === 0) nodeIsCall[node] = 1;
    else returnNode[d] = node;
    prev[node] = node === 0 ? head : node - 1;
    next[node] = node === eventCount - 1 ? tail : node + 1;
  });
  next[head] = 0;
  prev[tail] = eventCount - 1;
  nodeTime[tail] = Number.POSITIVE_INFINITY;

  // Indeterminate ops are not in the event list (their returns are at infinity and never block);
  // they live in their own list in invoke order and are tried after the determinate candidates.
  const indetHead = ni;
  const indetTail = ni + 1;
  const inext = new Int32Array(ni + 2);
  const iprev = new Int32Array(ni + 2);
  const indetInvoke = new Float64Array(ni + 2);
  for (let k = 0; k < ni; k++) {
    indetInvoke[k] = ops[indetOp[k]!]!.invoke;
    iprev[k] = k === 0 ? indetHead : k - 1;
    inext[k] = k === ni - 1 ? indetTail : k + 1;
  }
  // Indeterminate ops with the same effect (kind, value, expected) are interchangeable once both
  // are candidates, and both stay candidates for good. So only the earliest unused one of such a
  // group is ever tried, and the used ones of a group are always its earliest: twinBefore[k] is the
  // previous op of k's group, which must be used before k may be.
  const twinBefore = new Int32Array(ni).fill(-1);
  const lastOfGroup = new Map<string, number>();
  for (let k = 0; k < ni; k++) {
    const i = indetOp[k]!;
    const group = `${compiled.step[i]!}:${compiled.arg[i]!}:${compiled.expected[i]!}`;
    twinBefore[k] = lastOfGroup.get(group) ?? -1;
    lastOfGroup.set(group, k);
  }
  inext[indetHead] = ni === 0 ? indetTail : 0;
  iprev[indetTail] = ni === 0 ? indetHead : ni - 1;
  indetInvoke[indetTail] = Number.POSITIVE_INFINITY;

  // The linearized set: two bitsets, each with a Zobrist hash kept incrementally.
  const detWords = (nd + 31) >>> 5;
  const indetWords = (ni + 31) >>> 5;
  const detBits = new Int32Array(detWords);
  const indetBits = new Int32Array(indetWords);
  const random = splitmix32(0x5eed ^ ops.length);
  const zobristDet = Int32Array.from({ length: nd }, random);
  const zobristIndet = Int32Array.from({ length: ni }, random);
  let hash = 0;
  let indetHash = 0;
  // firstGap: the lowest determinate index not linearized; maxDet: the highest one linearized.
  // Every determinate op below firstGap is linearized, and ops above it must overlap it in real
  // time, so the cache key stores only the bitset words from firstGap to maxDet: typically one or
  // two words instead of the whole bitset.
  let firstGap = 0;
  let maxDet = -1;
  const keyBuffer = new Int32Array(2 + detWords);
  const cache = new ConfigurationCache(indetWords);
  // The interned id of the linearized indeterminate set (the empty set, interned first, is 0).
  let indetSet = cache.internIndeterminate(indetHash, indetBits);
  const isNewConfiguration = (state: number, gap: number, max: number, set: number): boolean => {
    let length = 0;
    keyBuffer[length++] = state;
    keyBuffer[length++] = gap;
    if (max >= gap) for (let w = gap >>> 5; w <= max >>> 5; w++) keyBuffer[length++] = detBits[w]!;
    return cache.addUnlessSubsumed(hash ^ Math.imul(state + 1, 0x9e3779b1), keyBuffer, length, set);
  };

  // The search stack, one frame per linearized op. frameRef is the call node for a determinate
  // op, or -(k + 1) for indeterminate op k, whose frame also keeps the return node that bounded
  // the candidates at its level.
  const depthMax = nd + ni;
  const frameRef = new Int32Array(depthMax);
  const frameBound = new Int32Array(depthMax);
  const frameWantedAt = new Int32Array(depthMax);
  const frameState = new Int32Array(depthMax);
  const frameGap = new Int32Array(depthMax);
  const frameMax = new Int32Array(depthMax);
  const frameOp = new Int32Array(depthMax);
  const frameSet = new Int32Array(depthMax);
  const frameInertTried = new Uint8Array(depthMax);
  let depth = 0;
  let depthReached = 0;

  // How many unlinearized determinate ops need each value to be current, and how many unlinearized
  // ops can still write it. Leaving a value that is still needed and that nothing can write again
  // is a dead end; catching it when it happens, not when the needing op finally comes up, matters
  // when an indeterminate write gets used up too early to excuse something else.
  const needers = new Int32Array(values.size);
  const writers = new Int32Array(values.size);
  // And how many unlinearized ops compare the register with each value. A value nobody compares
  // with is inert: no op can tell it from another inert value.
  const referrers = new Int32Array(values.size);
  for (let i = 0; i < ops.length; i++) countLinearized(i, 1);
  const strandsValue = (i: number, nextState: number): boolean =>
    nextState !== state &&
    needers[state]! - (compiled.needs[i] === state ? 1 : 0) > 0 &&
    writers[state]! - (compiled.writes[i] === state ? 1 : 0) === 0;
  function countLinearized(i: number, delta: number): void {
    const need = compiled.needs[i]!;
    const write = compiled.writes[i]!;
    const refer = compiled.refers[i]!;
    if (need >= 0) needers[need]! += delta;
    if (write >= 0) writers[write]! += delta;
    if (refer >= 0) referrers[refer]! += delta;
  }

  // Unused indeterminate ops are also kept in one list per value they write (node ni + v heads
  // value v's circular list), so that the search can try just those writing a value it wants.
  const bnext = new Int32Array(ni + values.size);
  const bprev = new Int32Array(ni + values.size);
  for (let v = 0; v < values.size; v++) bnext[ni + v] = bprev[ni + v] = ni + v;
  for (let k = 0; k < ni; k++) {
    const bucket = ni + compiled.writes[indetOp[k]!]!;
    bnext[k] = bucket;
    bprev[k] = bprev[bucket]!;
    bnext[bprev[bucket]!] = k;
    bprev[bucket] = k;
  }

  // Linearizing an indeterminate op is worth it only if it unblocks a candidate that the current
  // value blocks: right after it the candidates are the same (it does not move `bound`), and a
  // continuation starting with an op that was legal anyway (a failed cas; blind writes are pruned)
  // reaches the same configuration with the two swapped. A blocked read or successful cas wants
  // one value; so, transitively, does an indeterminate cas writing a wanted value. A blocked failed
  // cas is unblocked by any other value, and then every indeterminate op is tried.
  const wanted = new Int32Array(values.size);
  let wantedCount = 0;
  const wantedMark = new Int32Array(values.size);
  let wantedEpoch = 0;
  let anyValueWanted = false;
  const want = (v: number): void => {
    if (wantedMark[v] === wantedEpoch) return;
    wantedMark[v] = wantedEpoch;
    wanted[wantedCount++] = v;
  };
  const findWanted = (): void => {
    wantedEpoch++;
    wantedCount = 0;
    anyValueWanted = false;
    for (let n = next[head]!; n !== bound && n !== tail; n = next[n]!) {
      const i = detOp[nodeDet[n]!]!;
      if (applyStep(compiled, i, state) >= 0) continue;
      if (compiled.step[i] === STEP_CAS_FAILED) {
        anyValueWanted = true;
        return;
      }
      want(compiled.needs[i]!);
    }
    const limit = nodeTime[bound]!;
    for (let w = 0; w < wantedCount; w++) {
      for (let k = bnext[ni + wanted[w]!]!; k < ni && indetInvoke[k]! <= limit; k = bnext[k]!) {
        const i = indetOp[k]!;
        if (compiled.step[i] === STEP_CAS_UNKNOWN) want(compiled.expected[i]!);
      }
    }
  };

  // Whether this level already tried an indeterminate op leaving an inert value. Such ops are
  // interchangeable here (swap them in any continuation: no op can tell their values apart), so
  // one per level is enough.
  let inertTried = false;

  let state = initialState;
  let detLinearized = 0;
  // Search steps: configurations entered plus backtracks, so the budget measures the search tree.
  let steps = 0;
  // Phase 0 scans determinate calls from the list head up to the first pending return (`bound`);
  // phase 1 then scans indeterminate ops invoked by that return's time.
  let phase = 0;
  let node = next[head]!;
  let bound = tail;
  // Phase 1 walks either the whole unused list (anyValueWanted) or the value lists of wanted[wantedAt..].
  let inode = indetTail;
  let wantedAt = 0;
  let deepest: Deepest | null = null;

  while (true) {
    if (detLinearized === nd) return { key, result: 'ok', operations };
    if (steps >= budget) {
      return {
        key,
        result: 'unknown',
        operations,
        reason: `search budget of ${budget} steps exhausted for key ${key} after linearizing at most ${depthReached} of ${ops.length} operations`,
      };
    }
    // Right after an indeterminate op, a blind write is pointless: it erases the indeterminate op's
    // effect, and the same write was already tried without it at the level where the run of
    // indeterminate ops began (the candidates are the same, since those ops do not move `bound`).
    const afterIndeterminate = depth > 0 && frameRef[depth - 1]! < 0;

    if (phase === 0) {
      if (nodeIsCall[node] === 1) {
        const d = nodeDet[node]!;
        const i = detOp[d]!;
        if (!(afterIndeterminate && isBlindWrite(compiled, i))) {
          const nextState = applyStep(compiled, i, state);
          if (nextState >= 0 && !strandsValue(i, nextState)) {
            const word = d >>> 5;
            const bit = 1 << (d & 31);
            detBits[word]! |= bit;
            hash ^= zobristDet[d]!;
            const gap = d === firstGap ? nextGap(detBits, d + 1, nd) : firstGap;
            const max = d > maxDet ? d : maxDet;
            if (isNewConfiguration(nextState, gap, max, indetSet)) {
              frameRef[depth] = node;
              frameSet[depth] = indetSet;
              frameState[depth] = state;
              frameGap[depth] = firstGap;
              frameMax[depth] = maxDet;
              frameOp[depth] = i;
              frameInertTried[depth] = inertTried ? 1 : 0;
              depth++;
              steps++;
              inertTried = false;
              if (depth > depthReached) depthReached = depth;
              state = nextState;
              firstGap = gap;
              maxDet = max;
              detLinearized++;
              countLinearized(i, -1);
              lift(next, prev, node, returnNode[d]!);
              node = next[head]!;
              continue;
            }
            detBits[word]! &= ~bit;
            hash ^= zobristDet[d]!;
          }
        }
        node = next[node]!;
        continue;
      }
      bound = node;
      phase = 1;
      if (ni === 0) {
        inode = indetTail;
        anyValueWanted = true;
      } else {
        findWanted();
        wantedAt = 0;
        inode = anyValueWanted ? inext[indetHead]! : wantedCount > 0 ? bnext[ni + wanted[0]!]! : indetTail;
      }
      continue;
    }

    // The next indeterminate candidate, if any.
    let candidate = -1;
    const limit = nodeTime[bound]!;
    if (anyValueWanted) {
      if (inode !== indetTail && indetInvoke[inode]! <= limit) candidate = inode;
    } else {
      while (wantedAt < wantedCount) {
        if (inode < ni && indetInvoke[inode]! <= limit) {
          candidate = inode;
          break;
        }
        if (++wantedAt < wantedCount) inode = bnext[ni + wanted[wantedAt]!]!;
      }
    }
    if (candidate >= 0) {
      const i = indetOp[candidate]!;
      const twin = twinBefore[candidate]!;
      const nextState = twin >= 0 && (indetBits[twin >>> 5]! & (1 << (twin & 31))) === 0 ? -1 : applyStep(compiled, i, state);
      // An indeterminate op that leaves the register as it was only uses itself up; the current
      // configuration, which does not use it, is explored anyway.
      if (
        nextState >= 0 &&
        nextState !== state &&
        !(afterIndeterminate && isBlindWrite(compiled, i)) &&
        !strandsValue(i, nextState) &&
        !(referrers[nextState] === 0 && inertTried)
      ) {
        if (referrers[nextState] === 0) inertTried = true;
        const word = candidate >>> 5;
        const bit = 1 << (candidate & 31);
        indetBits[word]! |= bit;
        indetHash ^= zobristIndet[candidate]!;
        const set = cache.internIndeterminate(indetHash, indetBits);
        if (isNewConfiguration(nextState, firstGap, maxDet, set)) {
          frameRef[depth] = -(candidate + 1);
          frameSet[depth] = indetSet;
          indetSet = set;
          frameBound[depth] = bound;
          frameWantedAt[depth] = wantedAt;
          frameState[depth] = state;
          frameGap[depth] = firstGap;
          frameMax[depth] = maxDet;
          frameOp[depth] = i;
          frameInertTried[depth] = inertTried ? 1 : 0;
          depth++;
          steps++;
          inertTried = false;
          if (depth > depthReached) depthReached = depth;
          state = nextState;
          countLinearized(i, -1);
          inext[iprev[candidate]!] = inext[candidate]!;
          iprev[inext[candidate]!] = iprev[candidate]!;
          bnext[bprev[candidate]!] = bnext[candidate]!;
          bprev[bnext[candidate]!] = bprev[candidate]!;
          phase = 0;
          node = next[head]!;
          continue;
        }
        indetBits[word]! &= ~bit;
        indetHash ^= zobristIndet[candidate]!;
      }
      inode = anyValueWanted ? inext[candidate]! : bnext[candidate]!;
      continue;
    }

    // Stuck: no candidate leads to a new configuration. Remember the deepest such point for the
    // report, then undo the most recent linearization and try the next candidate at that level.
    if (deepest === null || depth > deepest.depth) {
      deepest = {
        depth,
        state,
        culprit: detOp[nodeDet[bound]!] ?? -1,
        prefix: frameOp.slice(0, depth),
        pending: pendingCandidates(),
      };
    }
    if (depth === 0) {
      return { key, result: 'illegal', operations, ...explain(key, ops, compiled, values, deepest) };
    }
    depth--;
    steps++;
    inertTried = frameInertTried[depth] === 1;
    const ref = frameRef[depth]!;
    state = frameState[depth]!;
    firstGap = frameGap[depth]!;
    maxDet = frameMax[depth]!;
    indetSet = frameSet[depth]!;
    countLinearized(frameOp[depth]!, 1);
    if (ref >= 0) {
      const d = nodeDet[ref]!;
      detBits[d >>> 5]! &= ~(1 << (d & 31));
      hash ^= zobristDet[d]!;
      detLinearized--;
      unlift(next, prev, ref, returnNode[d]!);
      phase = 0;
      node = next[ref]!;
    } else {
      const k = -ref - 1;
      indetBits[k >>> 5]! &= ~(1 << (k & 31));
      indetHash ^= zobristIndet[k]!;
      bprev[bnext[k]!] = k;
      bnext[bprev[k]!] = k;
      inext[iprev[k]!] = k;
      iprev[inext[k]!] = k;
      phase = 1;
      bound = frameBound[depth]!;
      // The level's wanted values are a function of its configuration, restored by now.
      findWanted();
      wantedAt = frameWantedAt[depth]!;
      inode = anyValueWanted ? inext[k]! : bnext[k]!;
    }
  }

  function pendingCandidates(): number[] {
    const pending: number[] = [];
    for (let n = next[head]!; n !== bound && n !== tail && pending.length < windowPendingOpsMax; n = next[n]!) {
      if (nodeIsCall[n] === 1) pending.push(detOp[nodeDet[n]!]!);
    }
    // Indeterminate ops stay candidates forever; keep only the most recently invoked ones.
    const limit = nodeTime[bound]!;
    const indeterminate: number[] = [];
    for (let k = inext[indetHead]!; k !== indetTail && indetInvoke[k]! <= limit; k = inext[k]!) {
      indeterminate.push(indetOp[k]!);
    }
    return pending.concat(indeterminate.slice(-windowIndeterminateOpsMax));
  }
}

/**
 * A determinate op that needs a value (a read of it, a successful cas expecting it) which is not the
 * initial one and which no operation invoked before the op returned could have written: illegal
 * whatever the order, and reported as such without searching. Returns the earliest-returning one.
 */
function findUnwrittenNeed(ops: readonly Operation[], compiled: CompiledOps, initialState: number): number | null {
  const firstWriteInvoke = new Map<number, number>();
  ops.forEach((op, i) => {
    const write = compiled.writes[i]!;
    if (write >= 0 && !(op.invoke >= (firstWriteInvoke.get(write) ?? Number.POSITIVE_INFINITY))) {
      firstWriteInvoke.set(write, op.invoke);
    }
  });
  let found: number | null = null;
  ops.forEach((op, i) => {
    const need = compiled.needs[i]!;
    if (need < 0 || need === initialState || op.complete === null) return;
    if (!((firstWriteInvoke.get(need) ?? Number.POSITIVE_INFINITY) <= op.complete)) {
      if (found === null || op.complete < (ops[found]!.complete ?? 0)) found = i;
    }
  });
  return found;
}

/** Removes a call node and its return node (dancing links: their own links are kept for unlift). */
function lift(next: Int32Array, prev: Int32Array, call: number, ret: number): void {
  next[prev[call]!] = next[call]!;
  prev[next[call]!] = prev[call]!;
  next[prev[ret]!] = next[ret]!;
  prev[next[ret]!] = prev[ret]!;
}

/** Undoes lift; valid because the search undoes lifts in reverse order. */
function unlift(next: Int32Array, prev: Int32Array, call: number, ret: number): void {
  next[prev[ret]!] = ret;
  prev[next[ret]!] = ret;
  next[prev[call]!] = call;
  prev[next[call]!] = call;
}

/** The lowest index at or above `from` whose bit is clear, or `count` if none. */
function nextGap(bits: Int32Array, from: number, count: number): number {
  let i = from;
  while (i < count) {
    const word = bits[i >>> 5]!;
    if ((i & 31) === 0 && word === -1) {
      i += 32;
    } else if (((word >>> (i & 31)) & 1) === 1) {
      i++;
    } else {
      return i;
    }
  }
  return count;
}

/** Deterministic 32-bit words for Zobrist hashing (the cache compares full keys, so quality only affects speed). */
function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return z ^ (z >>> 16);
  };
}

/**
 * Builds the failure window around the deepest stuck point: the op whose return blocked the
 * search, the other candidates at that point, the linearized ops that overlap them in time, and the
 * op that last set the register in the prefix (where the value everyone disagrees with came from).
 * If the blocking op was refused because it would overwrite a value that a later op still needs and
 * that nothing writes again, that later op is the one to blame, and it joins the window.
 */
function explain(
  key: string,
  ops: readonly Operation[],
  compiled: CompiledOps,
  values: ValueTable,
  deepest: Deepest,
): { window: Operation[]; explanation: string } {
  const chosen = new Set<number>();
  const culprit = ops[deepest.culprit];
  if (culprit !== undefined) chosen.add(deepest.culprit);
  for (const i of deepest.pending) chosen.add(i);
  // Linearized ops matter if they were still in flight when the stuck determinate ops began.
  let earliest = Number.POSITIVE_INFINITY;
  for (const i of chosen) if (ops[i]!.complete !== null) earliest = Math.min(earliest, ops[i]!.invoke);
  let linearizedShown = 0;
  for (let j = deepest.prefix.length - 1; j >= 0 && linearizedShown < windowLinearizedOpsMax; j--) {
    const i = deepest.prefix[j]!;
    const complete = ops[i]!.complete;
    if (complete === null || complete >= earliest) {
      chosen.add(i);
      linearizedShown++;
    }
  }
  for (let j = deepest.prefix.length - 1; j >= 0; j--) {
    const i = deepest.prefix[j]!;
    const step = compiled.step[i];
    if (step !== STEP_READ && step !== STEP_CAS_FAILED) {
      chosen.add(i);
      break;
    }
  }

  const holds = formatValue(values.value(deepest.state));
  const prefix =
    deepest.depth === 0
      ? `no operation can be linearized first (${key} starts as ${holds})`
      : `the longest linearizable prefix has ${deepest.depth} op${deepest.depth === 1 ? '' : 's'}, after which ${key} holds ${holds}`;
  // A value still needed later that nothing can write again pins the register: any candidate that
  // would change it was refused, so the op needing it is part of the story.
  const strandedBy = (i: number): number | undefined => {
    const nextState = applyStep(compiled, i, deepest.state);
    return nextState >= 0 && nextState !== deepest.state ? strandedNeeder(ops, compiled, deepest, i) : undefined;
  };
  const culpritStrands = culprit === undefined ? undefined : strandedBy(deepest.culprit);
  let explanation: string;
  if (culprit !== undefined && culpritStrands !== undefined) {
    chosen.add(culpritStrands);
    explanation =
      `${describeOperation(ops[culpritStrands]!)}, but no linearization allows it; ${prefix}, ` +
      `and the next op to be linearized overwrites it for good: ${describeOperation(culprit)}`;
  } else {
    const what = culprit === undefined ? `an operation on ${key}` : describeOperation(culprit);
    explanation = `${what}, but no linearization allows it; ${prefix}`;
    const needer = deepest.pending.map(strandedBy).find((i) => i !== undefined);
    if (needer !== undefined) {
      chosen.add(needer);
      explanation += `, a value still needed later by: ${describeOperation(ops[needer]!)}`;
    }
  }
  const window = [...chosen].map((i) => ops[i]!).sort((a, b) => a.invoke - b.invoke || a.id - b.id);
  return { window, explanation };
}

/**
 * If the value current at the deepest point is still needed by an unlinearized determinate op
 * other than `overwriter` and no unlinearized op can write it again, that op (the earliest invoked
 * such); otherwise undefined.
 */
function strandedNeeder(ops: readonly Operation[], compiled: CompiledOps, deepest: Deepest, overwriter: number): number | undefined {
  const state = deepest.state;
  const linearized = new Set(deepest.prefix);
  let needer: number | undefined;
  for (let i = 0; i < ops.length; i++) {
    if (linearized.has(i) || i === overwriter) continue;
    if (compiled.writes[i] === state) return undefined;
    if (compiled.needs[i] === state && (needer === undefined || ops[i]!.invoke < ops[needer]!.invoke)) needer = i;
  }
  return needer;
}
