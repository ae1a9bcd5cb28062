import { describe, expect, it } from "vitest";
import { createRefusalLimiter } from "../../services/audit/refusal-limiter.js";

describe("refusal limiter", () => {
  it("admits a few per window, counts the rest, and reports them with the next one admitted", () => {
    let now = 0;
    const limiter = createRefusalLimiter(3, 1000, () => now);
    expect([limiter.admit(), limiter.admit(), limiter.admit()]).toEqual([0, 0, 0]);
    for (let i = 0; i < 100; i++) expect(limiter.admit()).toBeUndefined();
    now = 1000;
    expect(limiter.admit()).toBe(100);
    expect(limiter.admit()).toBe(0);
  });
});
