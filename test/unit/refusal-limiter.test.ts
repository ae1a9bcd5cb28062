import { describe, expect, it } from "vitest";
import { createRefusalLimiter } from "../../services/audit/refusal-limiter.js";

describe("refusal limiter", () => {
  it("admits a few per source and window, counts the rest, and reports them with that source's next one admitted", () => {
    let now = 0;
    const limiter = createRefusalLimiter({ perSource: 3, total: 100, windowMs: 1000, now: () => now });
    expect([limiter.admit("10.0.0.1"), limiter.admit("10.0.0.1"), limiter.admit("10.0.0.1")]).toEqual([0, 0, 0]);
    for (let i = 0; i < 100; i++) expect(limiter.admit("10.0.0.1")).toBeUndefined();
    // Another source is not held back by the first one's flood.
    expect(limiter.admit("10.0.0.2")).toBe(0);
    now = 1000;
    expect(limiter.admit("10.0.0.1")).toBe(100);
    expect(limiter.admit("10.0.0.1")).toBe(0);
    expect(limiter.admit("10.0.0.2")).toBe(0);
  });

  it("caps all sources together, and still reports each source's own suppressed count", () => {
    let now = 0;
    const limiter = createRefusalLimiter({ perSource: 5, total: 4, windowMs: 1000, now: () => now });
    for (let i = 1; i <= 4; i++) expect(limiter.admit(`10.0.0.${i}`)).toBe(0);
    expect(limiter.admit("10.0.0.5")).toBeUndefined();
    expect(limiter.admit("10.0.0.5")).toBeUndefined();
    expect(limiter.admit("10.0.0.1")).toBeUndefined();
    now = 1000;
    expect(limiter.admit("10.0.0.5")).toBe(2);
    expect(limiter.admit("10.0.0.1")).toBe(1);
  });

  it("keys IPv6 sources by /64 and forgets the least recent sources beyond its cap", () => {
    const limiter = createRefusalLimiter({ perSource: 1, total: 1000, windowMs: 1000, maxSources: 2, now: () => 0 });
    expect(limiter.admit("2001:db8:1:2::1")).toBe(0);
    expect(limiter.admit("2001:db8:1:2:ffff::9")).toBeUndefined(); // same /64
    expect(limiter.admit("2001:db8:1:3::1")).toBe(0);
    expect(limiter.admit("10.0.0.1")).toBe(0); // pushes out 2001:db8:1:2::/64, the least recently refused
    expect(limiter.admit("2001:db8:1:2::1")).toBe(0);
  });
});
