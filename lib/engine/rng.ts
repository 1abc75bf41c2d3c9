/**
 * The run's seeded random generator.
 *
 * One generator per run. Weight init, masking, dropout seeds and shuffling all
 * draw from it (or from a child made with `fork`), so a run is reproducible from
 * its seed. Draws happen in JavaScript, so the same seed gives the same numbers
 * on every backend.
 *
 * Algorithm: xoshiro128** (Blackman & Vigna), 128 bits of state, seeded through
 * splitmix32. Normals use Box–Muller; the spare value is part of the state.
 */

/** A JSON-safe snapshot of a generator, for checkpoints. */
export interface RngState {
  readonly algorithm: "xoshiro128**";
  readonly s: readonly [number, number, number, number];
  /** The cached second Box–Muller normal, or null. */
  readonly spare: number | null;
}

function splitmix32(seed: number): () => number {
  let z = seed >>> 0;
  return () => {
    z = (z + 0x9e3779b9) >>> 0;
    let x = z;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    return (x ^ (x >>> 16)) >>> 0;
  };
}

/**
 * a % n for whole a ≤ 2^32 and n ≥ 1, through a float division: with it int() takes 6–7 ns
 * where it took 15 with %. Exact: where a / n is not whole its fraction is at least 1 / n from
 * either integer, and the division's rounding is below (a / n)·2⁻⁵³ ≤ 2⁻²¹ / n.
 */
function remainder(a: number, n: number): number {
  return a - Math.floor(a / n) * n;
}

/** x rotated left by k bits, as an int32 (the state's representation). */
function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export class Rng {
  // The state words are kept as int32 (the same bits as xoshiro's uint32s), which V8 holds as
  // small integers; as uint32s, every word at or past 2^31 was a double, and a draw cost 15 ns.
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spare: number | null = null;

  /** `seed` is any safe integer; both 32-bit halves feed the state. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new Error(`Rng seed must be a safe integer, got ${seed}; pass a whole number such as 42.`);
    }
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    const sm = splitmix32(lo ^ Math.imul(hi, 0x27d4eb2d));
    this.s0 = sm() | 0;
    this.s1 = sm() | 0;
    this.s2 = sm() | 0;
    this.s3 = sm() | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32 random bits as an unsigned integer. */
  uint32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    const s2 = this.s2 ^ s0;
    const s3 = this.s3 ^ s1;
    this.s1 = s1 ^ s2;
    this.s0 = s0 ^ s3;
    this.s2 = s2 ^ t;
    this.s3 = rotl(s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  float(): number {
    const hi = this.uint32() >>> 5; // 27 bits
    const lo = this.uint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), without modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) {
      throw new Error(`Rng.int needs a whole number bound in [1, 2^32], got ${n}.`);
    }
    if (n === 1) return 0;
    const limit = 2 ** 32 - remainder(2 ** 32, n);
    for (;;) {
      const x = this.uint32();
      if (x < limit) return remainder(x, n);
    }
  }

  /** Standard normal N(0, 1) by Box–Muller. */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.float();
    const v = this.float();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fill a Float32Array with N(mean, std²) draws. */
  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** A fresh 31-bit seed, for tfjs ops that take a numeric seed (dropout). */
  seed(): number {
    return this.uint32() >>> 1;
  }

  /**
   * `count` calls of seed(), and the first of them (0 when `count` is 0): a
   * training step's dropout seeds on the backends that mask on the device
   * (DropoutSeeds.forStep), drawn where the batch is made.
   */
  seeds(count: number): number {
    const first = count > 0 ? this.seed() : 0;
    for (let i = 1; i < count; i++) this.seed();
    return first;
  }

  /** In-place Fisher–Yates shuffle (of an array, or a typed array). */
  shuffle<A extends { length: number; [i: number]: unknown }>(items: A): A {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i];
      items[i] = items[j];
      items[j] = t;
    }
    return items;
  }

  /** A permutation of 0..n-1. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }

  /**
   * An independent child generator. The parent advances by two draws, so
   * forking is itself reproducible. Use a child per concern (init, masking,
   * data order) so that changing one does not shift the others.
   */
  fork(): Rng {
    const a = this.uint32();
    const b = this.uint32();
    return new Rng(a * 2 ** 21 + (b >>> 11));
  }

  getState(): RngState {
    return { algorithm: "xoshiro128**", s: [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0], spare: this.spare };
  }

  setState(state: RngState): void {
    if (
      !state ||
      state.algorithm !== "xoshiro128**" ||
      !Array.isArray(state.s) ||
      state.s.length !== 4 ||
      !state.s.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)
    ) {
      throw new Error("Rng state is not a saved xoshiro128** state; pass the object returned by getState().");
    }
    [this.s0, this.s1, this.s2, this.s3] = state.s.map((x) => x | 0);
    this.spare = state.spare ?? null;
  }

  static fromState(state: RngState): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }
}
