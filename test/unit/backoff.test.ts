import { describe, expect, it } from "vitest";
import { createBackoff } from "../../clients/connector/backoff.js";

/** The jitter ceiling of each attempt, read off by a random() that returns just under 1. */
function ceilings(minMs: number, maxMs: number, n: number): number[] {
  const b = createBackoff({ minMs, maxMs, random: () => 1 - Number.EPSILON });
  return Array.from({ length: n }, () => b.next());
}

describe("createBackoff", () => {
  it("doubles the ceiling from minMs each attempt and caps it at maxMs", () => {
    expect(ceilings(500, 20_000, 9)).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 20_000, 20_000, 20_000]);
  });

  it("uses full jitter: random() scales the ceiling from 0", () => {
    const zero = createBackoff({ minMs: 500, maxMs: 20_000, random: () => 0 });
    expect([zero.next(), zero.next(), zero.next()]).toEqual([0, 0, 0]);
    const half = createBackoff({ minMs: 500, maxMs: 20_000, random: () => 0.5 });
    expect([half.next(), half.next(), half.next(), half.next()]).toEqual([250, 500, 1000, 2000]);
  });

  it("stays within [0, min(max, min * 2^attempt)] for any random value", () => {
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const b = createBackoff({ minMs: 100, maxMs: 5000, random });
    for (let attempt = 0; attempt < 200; attempt++) {
      const delay = b.next();
      expect(Number.isInteger(delay)).toBe(true);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(Math.min(5000, 100 * 2 ** attempt));
    }
  });

  it("never exceeds the cap or overflows after very many attempts", () => {
    const b = createBackoff({ minMs: 1, maxMs: 60_000, random: () => 1 - Number.EPSILON });
    let last = 0;
    for (let i = 0; i < 2000; i++) last = b.next();
    expect(last).toBe(60_000);
    expect(b.attempt).toBe(2000);
  });

  it("counts attempts", () => {
    const b = createBackoff({ minMs: 10, maxMs: 100 });
    expect(b.attempt).toBe(0);
    b.next();
    b.next();
    expect(b.attempt).toBe(2);
  });

  it("a connection that lived at least stableMs resets the sequence", () => {
    const b = createBackoff({ minMs: 100, maxMs: 10_000, stableMs: 5000, random: () => 1 - Number.EPSILON });
    b.next();
    b.next();
    b.next();
    b.succeeded(5000);
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(100);
  });

  it("a shorter-lived connection does not reset it", () => {
    const b = createBackoff({ minMs: 100, maxMs: 10_000, stableMs: 5000, random: () => 1 - Number.EPSILON });
    b.next();
    b.next();
    b.succeeded(4999);
    expect(b.attempt).toBe(2);
    expect(b.next()).toBe(400);
  });

  it("defaults stableMs to 10 seconds", () => {
    const b = createBackoff({ minMs: 100, maxMs: 10_000 });
    b.next();
    b.succeeded(9999);
    expect(b.attempt).toBe(1);
    b.succeeded(10_000);
    expect(b.attempt).toBe(0);
  });
});
