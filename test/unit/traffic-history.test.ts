import { describe, expect, it } from "vitest";
import { createTrafficHistory } from "../../services/observability/traffic-history.js";

describe("traffic history", () => {
  it("counts requests, errors and p95 in 10-second buckets of the last 15 minutes, oldest first", () => {
    let now = 1_000_000_000;
    const h = createTrafficHistory({ now: () => now });
    h.record("acme", 200, undefined, 10);
    h.record("acme", 503, undefined, 30);
    h.record("globex", 404, "target_not_found", 1);
    let b = h.buckets();
    expect(b).toHaveLength(90);
    expect(b.at(-1)).toMatchObject({ requests: 3, errors: 2 });
    expect(b[0]).toMatchObject({ requests: 0, errors: 0, latencyP95Ms: undefined });
    expect(h.buckets("acme").at(-1)).toMatchObject({ requests: 2, errors: 1 });
    expect(h.buckets("nobody").at(-1)?.requests).toBe(0);
    now += 10_000;
    h.record("acme", 200, undefined, 5);
    b = h.buckets("acme");
    expect(b.slice(-2).map((x) => x.requests)).toEqual([2, 1]);
    expect(b.at(-1)!.startMs - b.at(-2)!.startMs).toBe(10_000);
    // After 15 minutes a slot's turn comes again: it starts from zero.
    now += 90 * 10_000;
    h.record("acme", 200, undefined, 5);
    expect(h.buckets("acme").reduce((n, x) => n + x.requests, 0)).toBe(1);
    h.forgetTenant("acme");
    expect(h.buckets("acme").every((x) => x.requests === 0)).toBe(true);
  });
});
