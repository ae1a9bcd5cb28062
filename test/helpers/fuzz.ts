/**
 * What the fuzz tests share: a seeded PRNG (mulberry32) and the seed to use.
 * FUZZ_SEED=<n> reproduces a failure; otherwise each run draws a new seed and
 * prints it, so a failure in CI can be replayed.
 */
export function fuzzSeed(name: string): number {
  const fixed = process.env.FUZZ_SEED;
  const seed = fixed !== undefined ? Number(fixed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`${name}: FUZZ_SEED=${seed}`);
  return seed;
}

export interface Rng {
  /** [0, 1) */
  (): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Uint8Array;
}

export function rng(seed: number): Rng {
  let s = seed | 0;
  const next = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = next as Rng;
  r.int = (n) => Math.floor(next() * n);
  r.chance = (p) => next() < p;
  r.pick = (items) => items[Math.floor(next() * items.length)]!;
  r.bytes = (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
    return out;
  };
  return r;
}
