/**
 * The memo of search configurations already explored: open addressing over typed arrays, with the
 * keys packed into one growing arena, because the search inserts up to its whole step budget of
 * keys and per-key objects would cost far more memory and GC time than the words themselves.
 */
export class ConfigurationCache {
  /** Entry index + 1 per slot; 0 = empty. The length is a power of two. */
  #slots = new Int32Array(1 << 12);
  #hashes = new Int32Array(1 << 11);
  #offsets = new Int32Array(1 << 11);
  /** Each key is stored as its length followed by its words. */
  #arena = new Int32Array(1 << 14);
  #arenaUsed = 0;
  #count = 0;

  get size(): number {
    return this.#count;
  }

  /**
   * Inserts the key `words[0..length)` with the given hash unless an equal key is present.
   * Returns true if it was inserted (the configuration is new).
   */
  addIfAbsent(hash: number, words: Int32Array, length: number): boolean {
    const slots = this.#slots;
    const mask = slots.length - 1;
    let slot = mix(hash) & mask;
    while (true) {
      const entry = slots[slot]!;
      if (entry === 0) break;
      if (this.#hashes[entry - 1] === hash && this.#equals(this.#offsets[entry - 1]!, words, length)) return false;
      slot = (slot + 1) & mask;
    }
    const entry = this.#count;
    if (entry >= this.#hashes.length) {
      this.#hashes = grow(this.#hashes, entry + 1);
      this.#offsets = grow(this.#offsets, entry + 1);
    }
    const offset = this.#arenaUsed;
    if (offset + 1 + length > this.#arena.length) this.#arena = grow(this.#arena, offset + 1 + length);
    const arena = this.#arena;
    arena[offset] = length;
    for (let i = 0; i < length; i++) arena[offset + 1 + i] = words[i]!;
    this.#arenaUsed = offset + 1 + length;
    this.#hashes[entry] = hash;
    this.#offsets[entry] = offset;
    this.#count = entry + 1;
    slots[slot] = entry + 1;
    // Keep the load factor at most one half so that probe sequences stay short.
    if (this.#count * 2 > slots.length) this.#rehash();
    return true;
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
    for (let entry = 0; entry < this.#count; entry++) {
      let slot = mix(this.#hashes[entry]!) & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = entry + 1;
    }
    this.#slots = slots;
  }
}

function grow(array: Int32Array, minLength: number): Int32Array {
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
