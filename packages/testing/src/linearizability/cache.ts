/**
 * The memo of search configurations already explored. A configuration is the register value, the
 * set of linearized determinate ops, and the set of linearized indeterminate ops. Exact matches are
 * not enough: a configuration that has used up more indeterminate ops than an explored one with the
 * same value and determinate set can do nothing the explored one could not (indeterminate ops are
 * optional), so it is pruned too. Without that subsumption, every way of sprinkling timed-out writes
 * over a long prefix is a new configuration and refuting a long history blows up.
 *
 * Configurations are grouped by (value, determinate set); each group lists the indeterminate sets
 * seen with it. Indeterminate sets are interned, since they change far less often than the rest of
 * the configuration, and a group entry is just a set id. Everything lives in typed arrays, because
 * the search may insert its whole step budget of configurations and per-entry objects would cost
 * far more memory and GC time than the words themselves.
 */
export class ConfigurationCache {
  readonly #groups = new HashedWords();
  /** Per group: index + 1 of its most recent entry; 0 = none. */
  #groupFirst = new Int32Array(1 << 10);
  /** Per entry: its indeterminate set id and the next entry of the same group (+1). */
  #entrySet = new Int32Array(1 << 10);
  #entryNext = new Int32Array(1 << 10);
  #entries = 0;
  readonly #sets = new HashedWords();
  readonly #indetWords: number;

  constructor(indetWords: number) {
    this.#indetWords = indetWords;
  }

  /**
   * The id of the indeterminate set `words[0..indetWords)`, whose hash is `hash`. The caller must
   * intern the empty set first, so that it gets id 0 (a subset of everything).
   */
  internIndeterminate(hash: number, words: Int32Array): number {
    return this.#sets.intern(hash, words, this.#indetWords).id;
  }

  /**
   * Records the configuration with group key `key[0..keyLength)` (hashed to `hash`) and
   * indeterminate set `setId` unless it is subsumed by one already recorded. Returns true if it was
   * recorded, i.e. the configuration is worth exploring.
   */
  addUnlessSubsumed(hash: number, key: Int32Array, keyLength: number, setId: number): boolean {
    const { id: group, added } = this.#groups.intern(hash, key, keyLength);
    if (group >= this.#groupFirst.length) this.#groupFirst = grow(this.#groupFirst, group + 1);
    if (!added) {
      for (let entry = this.#groupFirst[group]!; entry !== 0; entry = this.#entryNext[entry - 1]!) {
        const seen = this.#entrySet[entry - 1]!;
        if (seen === setId || seen === 0 || this.#sets.isSubset(seen, setId, this.#indetWords)) return false;
      }
    }
    const entry = this.#entries++;
    if (entry >= this.#entrySet.length) {
      this.#entrySet = grow(this.#entrySet, entry + 1);
      this.#entryNext = grow(this.#entryNext, entry + 1);
    }
    this.#entrySet[entry] = setId;
    this.#entryNext[entry] = this.#groupFirst[group]!;
    this.#groupFirst[group] = entry + 1;
    return true;
  }
}

/**
 * Interned word strings with open addressing, their words packed into one arena. The caller
 * supplies the hash; equal strings must have equal hashes.
 */
class HashedWords {
  /** Id + 1 per slot; 0 = empty. The length is a power of two. */
  #slots = new Int32Array(1 << 11);
  #hashes = new Int32Array(1 << 10);
  /** Arena offset of each string: its length, then its words. */
  #offsets = new Int32Array(1 << 10);
  #count = 0;
  #arena = new Int32Array(1 << 12);
  #arenaUsed = 0;
  readonly #result = { id: 0, added: false };

  /** The id of the string (allocated in order from 0), and whether this call added it. The result object is reused. */
  intern(hash: number, words: Int32Array, length: number): { id: number; added: boolean } {
    const slots = this.#slots;
    const mask = slots.length - 1;
    let slot = mix(hash) & mask;
    while (true) {
      const entry = slots[slot]!;
      if (entry === 0) break;
      if (this.#hashes[entry - 1] === hash && this.#equals(this.#offsets[entry - 1]!, words, length)) {
        this.#result.id = entry - 1;
        this.#result.added = false;
        return this.#result;
      }
      slot = (slot + 1) & mask;
    }
    const id = this.#count++;
    if (id >= this.#hashes.length) {
      this.#hashes = grow(this.#hashes, id + 1);
      this.#offsets = grow(this.#offsets, id + 1);
    }
    this.#hashes[id] = hash;
    this.#offsets[id] = this.#store(words, length);
    slots[slot] = id + 1;
    // Keep the load factor at most one half so that probe sequences stay short.
    if (this.#count * 2 > slots.length) this.#rehash();
    this.#result.id = id;
    this.#result.added = true;
    return this.#result;
  }

  /** Whether every bit of string `a` is set in string `b` (both `length` words). */
  isSubset(a: number, b: number, length: number): boolean {
    const arena = this.#arena;
    const offsetA = this.#offsets[a]! + 1;
    const offsetB = this.#offsets[b]! + 1;
    for (let i = 0; i < length; i++) if ((arena[offsetA + i]! & ~arena[offsetB + i]!) !== 0) return false;
    return true;
  }

  #store(words: Int32Array, length: number): number {
    const offset = this.#arenaUsed;
    if (offset + 1 + length > this.#arena.length) this.#arena = grow(this.#arena, offset + 1 + length);
    const arena = this.#arena;
    arena[offset] = length;
    for (let i = 0; i < length; i++) arena[offset + 1 + i] = words[i]!;
    this.#arenaUsed = offset + 1 + length;
    return offset;
  }

  #equals(offset: number, words: Int32Array, length: number): boolean {
    const arena = this.#arena;
    if (arena[offset] !== length) return false;
    for (let i = 0; i < length; i++) if (arena[offset + 1 + i] !== words[i]) return false;
    return true;
  }

  #rehash(): void {
    const slots = new Int32Array(this.#slots.length * 2);
    const mask = slots.length - 1;
    for (let id = 0; id < this.#count; id++) {
      let slot = mix(this.#hashes[id]!) & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = id + 1;
    }
    this.#slots = slots;
  }
}

function grow(array: Int32Array<ArrayBuffer>, minLength: number): Int32Array<ArrayBuffer> {
  let length = array.length * 2;
  while (length < minLength) length *= 2;
  const bigger = new Int32Array(length);
  bigger.set(array);
  return bigger;
}

/** murmur3's finalizer: the incoming hashes are XORs of random words, but spread them anyway. */
function mix(hash: number): number {
  let h = hash ^ (hash >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
