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

describe("traffic history, at its edges", () => {
  const T0 = 1_700_000_000_000; // a multiple of 10 s
  const setup = (start = T0) => {
    const clock = { now: start };
    return { clock, h: createTrafficHistory({ now: () => clock.now }) };
  };
  const total = (b: ReturnType<ReturnType<typeof createTrafficHistory>["buckets"]>) => b.reduce((n, x) => n + x.requests, 0);

  it("puts the last millisecond of an interval in it and the next millisecond in the next one", () => {
    const { clock, h } = setup(T0 + 9_999);
    h.record("acme", 200, undefined, 1);
    clock.now = T0 + 10_000;
    h.record("acme", 200, undefined, 1);
    h.record("acme", 200, undefined, 1);
    const b = h.buckets();
    expect(b.slice(-2).map((x) => [x.startMs, x.requests])).toEqual([
      [T0, 1],
      [T0 + 10_000, 2],
    ]);
  });

  it("always answers 90 intervals 10 s apart, the current one last, whatever the clock's offset in it", () => {
    const { clock, h } = setup(T0 + 4_321);
    for (const t of [T0 + 4_321, T0 + 9_999, T0 + 10_000]) {
      clock.now = t;
      const b = h.buckets("anyone");
      expect(b).toHaveLength(90);
      expect(b.at(-1)!.startMs).toBe(Math.floor(t / 10_000) * 10_000);
      expect(b.every((x, i) => i === 0 || x.startMs - b[i - 1]!.startMs === 10_000)).toBe(true);
    }
  });

  it("shows an interval for 15 minutes: 89 intervals later it is the oldest, 90 later it is gone", () => {
    const { clock, h } = setup();
    h.record("acme", 200, undefined, 1);
    clock.now = T0 + 89 * 10_000;
    expect(h.buckets("acme")[0]).toMatchObject({ startMs: T0, requests: 1 });
    clock.now = T0 + 90 * 10_000;
    expect(total(h.buckets("acme"))).toBe(0);
    expect(total(h.buckets())).toBe(0);
  });

  it("counts from zero in a reused slot, and never shows a slot left from an older round", () => {
    const { clock, h } = setup();
    for (let i = 0; i < 5; i++) h.record("acme", 500, undefined, 100);
    // Exactly one round later: the same slot, counted anew.
    clock.now = T0 + 90 * 10_000;
    h.record("acme", 200, undefined, 1);
    expect(h.buckets("acme").at(-1)).toMatchObject({ requests: 1, errors: 0 });
    expect(h.buckets("acme").at(-1)!.latencyP95Ms).toBeLessThan(2);
    // Two rounds later and nothing recorded since: every slot is stale, none shows.
    clock.now = T0 + 3 * 90 * 10_000 + 5;
    expect(total(h.buckets("acme"))).toBe(0);
    expect(h.buckets("acme").every((x) => x.latencyP95Ms === undefined && x.errors === 0)).toBe(true);
  });

  it("keeps every tenant apart, and the node's total is their sum", () => {
    const { clock, h } = setup();
    h.record("acme", 200, undefined, 1);
    h.record("globex", 200, undefined, 1);
    clock.now += 10_000;
    h.record("acme", 200, undefined, 1);
    h.record("globex", 200, undefined, 1);
    h.record("globex", 200, undefined, 1);
    const sum = h.buckets("acme").map((x, i) => x.requests + h.buckets("globex")[i]!.requests);
    expect(h.buckets().map((x) => x.requests)).toEqual(sum);
    expect(h.buckets("acme").slice(-2).map((x) => x.requests)).toEqual([1, 1]);
    expect(h.buckets("globex").slice(-2).map((x) => x.requests)).toEqual([1, 2]);
  });

  it.each([
    [500, undefined, true],
    [599, undefined, true],
    [502, "target_unreachable", true],
    [0, "client_gone", true],
    [404, "target_not_found", true],
    [499, undefined, false],
    [404, undefined, false],
    [301, undefined, false],
    [0, undefined, false],
  ])("counts status %i with Ferry code %s as an error: %s", (status, code, error) => {
    const { h } = setup();
    h.record("acme", status, code, 1);
    expect(h.buckets("acme").at(-1)).toMatchObject({ requests: 1, errors: error ? 1 : 0 });
  });

  it("gives the p95 of an interval's latencies, and none for an interval without traffic", () => {
    const { clock, h } = setup();
    for (let ms = 1; ms <= 100; ms++) h.record("acme", 200, undefined, ms);
    clock.now += 10_000;
    const [busy, idle] = h.buckets("acme").slice(-2);
    expect(busy!.latencyP95Ms).toBeGreaterThanOrEqual(92);
    expect(busy!.latencyP95Ms).toBeLessThanOrEqual(98);
    expect(idle).toMatchObject({ requests: 0, errors: 0, latencyP95Ms: undefined });
    const { h: single } = setup();
    single.record("acme", 200, undefined, 42);
    expect(single.buckets("acme").at(-1)!.latencyP95Ms).toBe(42);
  });

  it("forgets one tenant without touching the node's total or the others, and takes it again afresh", () => {
    const { h } = setup();
    h.record("acme", 500, undefined, 1);
    h.record("globex", 200, undefined, 1);
    h.forgetTenant("acme");
    expect(total(h.buckets("acme"))).toBe(0);
    expect(total(h.buckets("globex"))).toBe(1);
    expect(total(h.buckets())).toBe(2);
    h.record("acme", 200, undefined, 1);
    expect(h.buckets("acme").at(-1)).toMatchObject({ requests: 1, errors: 0 });
    h.forgetTenant("nobody");
  });

  it("takes other interval lengths and slot counts", () => {
    const clock = { now: 1_000 };
    const h = createTrafficHistory({ bucketMs: 1_000, slots: 3, now: () => clock.now });
    expect(h.bucketMs).toBe(1_000);
    h.record("acme", 200, undefined, 1);
    clock.now = 3_999;
    expect(h.buckets().map((x) => [x.startMs, x.requests])).toEqual([
      [1_000, 1],
      [2_000, 0],
      [3_000, 0],
    ]);
    clock.now = 4_000;
    expect(total(h.buckets())).toBe(0);
  });
});
