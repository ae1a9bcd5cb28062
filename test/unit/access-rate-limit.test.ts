import { describe, expect, it } from "vitest";
import { bucketKey, createRateLimiter, rateLimitHeaders } from "../../services/access/rate-limit.js";

const spec = { name: "crm api", requests: 2, perMs: 1000, burst: 4 };

describe("rate limits", () => {
  it("lets a burst through, then refills at requests per period", () => {
    let now = 0;
    const limiter = createRateLimiter({ now: () => now });
    const key = bucketKey("acme", "crm api", "ip:192.0.2.1");
    const takes = () => limiter.take(key, spec).ok;
    expect([takes(), takes(), takes(), takes()]).toEqual([true, true, true, true]);
    const refused = limiter.take(key, spec);
    expect(refused).toEqual({
      ok: false,
      retryAfterSeconds: 1,
      headers: { "ratelimit-policy": `"crm api";q=2;w=1`, ratelimit: `"crm api";r=0;t=1`, "retry-after": "1" },
    });
    now = 499;
    expect(takes()).toBe(false); // 0.998 of a token
    now = 500;
    expect(takes()).toBe(true); // one token per 500 ms
    expect(takes()).toBe(false);
    now = 10_000;
    expect([takes(), takes(), takes(), takes(), takes()]).toEqual([true, true, true, true, false]); // never above the burst
  });

  it("keeps one bucket per key", () => {
    const limiter = createRateLimiter({ now: () => 0 });
    const one = { ...spec, burst: 1 };
    expect(limiter.take(bucketKey("acme", "r", "a"), one).ok).toBe(true);
    expect(limiter.take(bucketKey("acme", "r", "a"), one).ok).toBe(false);
    expect(limiter.take(bucketKey("acme", "r", "b"), one).ok).toBe(true);
    expect(limiter.take(bucketKey("acme", "other rule", "a"), one).ok).toBe(true);
    expect(limiter.take(bucketKey("globex", "r", "a"), one).ok).toBe(true);
    expect(limiter.size).toBe(4);
  });

  it("says how long until the next token for slow limits", () => {
    let now = 0;
    const limiter = createRateLimiter({ now: () => now });
    const slow = { name: "r", requests: 3, perMs: 60_000, burst: 3 };
    for (let i = 0; i < 3; i++) limiter.take("k", slow);
    const refused = limiter.take("k", slow);
    expect(refused.ok === false && refused.retryAfterSeconds).toBe(20);
    expect(refused.ok === false && refused.headers).toEqual({ "ratelimit-policy": `"r";q=3;w=60`, ratelimit: `"r";r=0;t=20`, "retry-after": "20" });
    now = 15_000;
    const later = limiter.take("k", slow);
    expect(later.ok === false && later.retryAfterSeconds).toBe(5);
  });

  it("holds at most maxBuckets, the least recently used going first", () => {
    const limiter = createRateLimiter({ now: () => 0, maxBuckets: 2 });
    const one = { ...spec, burst: 1 };
    limiter.take("a", one);
    limiter.take("b", one);
    limiter.take("a", one); // a is the newest now (refused: its token is gone)
    limiter.take("c", one); // b goes
    expect(limiter.size).toBe(2);
    expect(limiter.take("a", one).ok).toBe(false); // still held, still empty
    expect(limiter.take("b", one).ok).toBe(true); // forgotten: a fresh bucket
  });

  it("enforces only this node's share of a limit", () => {
    let share = 0.5;
    const limiter = createRateLimiter({ now: () => 0, share: () => share });
    const ten = { name: "r", requests: 10, perMs: 1000, burst: 10 };
    const passed = Array.from({ length: 10 }, () => limiter.take("k", ten).ok).filter(Boolean).length;
    expect(passed).toBe(5);
    share = 0.01; // a tiny share still lets one request through
    expect(limiter.take("other", ten).ok).toBe(true);
    expect(limiter.take("other", ten).ok).toBe(false);
  });

  it("keeps a bucket's tokens when the share changes, capping them at a smaller capacity and refilling to a larger one", () => {
    let now = 0;
    let share = 1;
    const limiter = createRateLimiter({ now: () => now, share: () => share });
    const ten = { name: "r", requests: 10, perMs: 1000, burst: 10 };
    const takes = (n: number) => Array.from({ length: n }, () => limiter.take("k", ten).ok).filter(Boolean).length;
    expect(takes(2)).toBe(2); // 8 left
    share = 0.5; // a node joins: this one's capacity is 5 now, and the 8 tokens are capped at it
    expect(takes(8)).toBe(5);
    now = 100;
    expect(takes(1)).toBe(0); // refilling at 5 a second: half a token
    now = 200;
    expect(takes(2)).toBe(1);
    share = 1; // the other node leaves: the capacity is 10 again, but the bucket fills from empty, not at once
    now = 300;
    expect(takes(10)).toBe(1); // 100 ms at 10 a second
    now = 10_000;
    expect(takes(11)).toBe(10); // full at the whole burst again
    now = 20_000;
    expect(takes(8)).toBe(8); // 2 left
    share = 0.25; // two more nodes join: capacity 2.5, and a bucket below it keeps what it has
    expect(takes(3)).toBe(2);
    const refused = limiter.take("k", ten);
    expect(refused.ok === false && refused.retryAfterSeconds).toBe(1); // a token at 2.5 a second: 400 ms, stated as 1 s
  });

  it.each([
    [{ name: "r", requests: 100, perMs: 1000, burst: 100 }, `"r";q=100;w=1`],
    [{ name: "r", requests: 10, perMs: 100, burst: 10 }, `"r";q=100;w=1`], // a sub-second period as a quota per second
    [{ name: "r", requests: 1, perMs: 1500, burst: 1 }, `"r";q=1;w=2`],
    [{ name: "r", requests: 1000, perMs: 86_400_000, burst: 1000 }, `"r";q=1000;w=86400`],
    [{ name: `say "hi"\\`, requests: 1, perMs: 1000, burst: 1 }, `"say \\"hi\\"\\\\";q=1;w=1`], // an RFC 9651 string
  ])("states %j as %s", (s, want) => {
    expect(rateLimitHeaders(s, 3)["ratelimit-policy"]).toBe(want);
  });
});
