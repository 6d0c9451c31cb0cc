/**
 * Exponential back-off with "equal jitter": the n-th retry waits a uniformly random time in
 * [c/2, c) where c = min(maxMs, minMs * 2^n). The jitter keeps nodes that lost the same peer at
 * the same instant from redialling it in lockstep; the lower half keeps a floor on the delay.
 */
export class Backoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #attemptCount = 0;

  constructor(minMs: number, maxMs: number, random: () => number) {
    this.#minMs = minMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  nextDelayMs(): number {
    // 2^30 * minMs is far beyond any sane maxMs: stop doubling there so the product stays finite.
    const ceilingMs = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#attemptCount, 30));
    this.#attemptCount++;
    return Math.round(ceilingMs / 2 + (this.#random() * ceilingMs) / 2);
  }

  reset(): void {
    this.#attemptCount = 0;
  }
}
