import { describe, expect, it } from "vitest";
import { BUCKET_COUNT } from "../../services/observability/latency-histogram.js";
import {
  createTrafficStats,
  trafficStatsCensus,
  type ExchangeOutcome,
  type TrafficFigures,
  type TrafficStatsOptions,
} from "../../services/observability/traffic-stats.js";

// The clock is a variable the tests move: no timers, no waiting.
function setup(options: Omit<TrafficStatsOptions, "now"> = { windowMs: 60_000, slots: 6 }) {
  const clock = { t: 1_000_000 };
  const stats = createTrafficStats({ ...options, now: () => clock.t });
  const record = (o: Partial<ExchangeOutcome> = {}) =>
    stats.record({ tenant: "t1", target: "api", status: 200, bytesIn: 0, bytesOut: 0, durationMs: 1, ...o });
  return { clock, stats, record };
}

const zeros: TrafficFigures = {
  requests: 0,
  clientErrors: 0,
  serverErrors: 0,
  relayErrors: {},
  bytesIn: 0,
  bytesOut: 0,
  latencyP50Ms: 0,
  latencyP95Ms: 0,
  latencyP99Ms: 0,
};

/** Within 5% of the expected value. */
function near(actual: number, expected: number): void {
  expect(Math.abs(actual - expected) / expected).toBeLessThan(0.05);
}

describe("createTrafficStats", () => {
  it("counts every exchange and classifies target errors apart from Ferry's own, by code", () => {
    const { stats, record } = setup();
    for (const status of [200, 204, 302, 399, 400, 404, 499, 500, 503, 599, 600]) record({ status });
    record({ status: 0 }); // the client went away; nothing answered, nothing failed
    record({ status: 504, code: "timeout" });
    record({ status: 502, code: "no_connector" });
    record({ status: 0, code: "cancelled" });
    record({ status: 504, code: "timeout" });
    record({ status: 502, code: "target_unreachable" });
    const [entry] = stats.snapshot("t1", "api");
    for (const figures of [entry!.recent, entry!.total]) {
      expect(figures.requests).toBe(17);
      expect(figures.clientErrors).toBe(3);
      expect(figures.serverErrors).toBe(3);
      expect(figures.relayErrors).toEqual({ cancelled: 1, no_connector: 1, target_unreachable: 1, timeout: 2 });
    }
  });

  it("sums bytes in and out", () => {
    const { stats, record } = setup();
    record({ bytesIn: 100, bytesOut: 2_000 });
    record({ bytesIn: 50, bytesOut: 0 });
    record({ bytesIn: 0, bytesOut: 30, status: 0, code: "cancelled" });
    const [entry] = stats.snapshot("t1", "api");
    expect([entry!.recent.bytesIn, entry!.recent.bytesOut]).toEqual([150, 2_030]);
    expect([entry!.total.bytesIn, entry!.total.bytesOut]).toEqual([150, 2_030]);
  });

  it("estimates latency quantiles within 5%, the recent ones merged across slots", () => {
    const { clock, stats, record } = setup();
    // 1..1000 ms, spread over five of the six slots of the window.
    for (let ms = 1; ms <= 1000; ms++) {
      record({ durationMs: ((ms * 7919) % 1000) + 1 });
      clock.t += 50;
    }
    const [entry] = stats.snapshot("t1", "api");
    for (const figures of [entry!.recent, entry!.total]) {
      expect(figures.requests).toBe(1000);
      near(figures.latencyP50Ms, 500);
      near(figures.latencyP95Ms, 950);
      near(figures.latencyP99Ms, 990);
    }
  });

  it("puts the tenant total first, aggregating its targets, then targets sorted by name", () => {
    const { stats, record } = setup();
    for (let ms = 1; ms <= 500; ms++) record({ target: "web", durationMs: ms, bytesIn: 1, status: 404 });
    for (let ms = 501; ms <= 1000; ms++) record({ target: "api", durationMs: ms, bytesOut: 2, status: 500 });
    record({ target: "db", code: "timeout" });
    record({ tenant: "other", target: "api" }); // another tenant's traffic stays out
    const entries = stats.snapshot("t1");
    expect(entries.map((e) => e.target)).toEqual(["", "api", "db", "web"]);
    expect(entries.every((e) => e.tenant === "t1" && e.recentWindowMs === 60_000)).toBe(true);
    const [tenant, api, db, web] = entries;
    for (const figures of [tenant!.recent, tenant!.total]) {
      expect(figures.requests).toBe(1001);
      expect(figures.clientErrors).toBe(500);
      expect(figures.serverErrors).toBe(500);
      expect(figures.relayErrors).toEqual({ timeout: 1 });
      expect([figures.bytesIn, figures.bytesOut]).toEqual([500, 1000]);
      near(figures.latencyP50Ms, 500); // only the merged histograms can know this
      near(figures.latencyP99Ms, 990);
    }
    expect(api!.total.requests).toBe(500);
    near(api!.total.latencyP50Ms, 750);
    expect(db!.total.relayErrors).toEqual({ timeout: 1 });
    expect(web!.total.clientErrors).toBe(500);
    near(web!.recent.latencyP50Ms, 250);
  });

  it("answers a single target alone, and zeros for targets and tenants without traffic", () => {
    const { stats, record } = setup();
    record({ target: "api" });
    record({ target: "web" });
    const only = stats.snapshot("t1", "web");
    expect(only).toHaveLength(1);
    expect(only[0]!.target).toBe("web");
    expect(only[0]!.total.requests).toBe(1);

    expect(stats.snapshot("t1", "nope")).toEqual([
      { tenant: "t1", target: "nope", recent: zeros, total: zeros, recentWindowMs: 60_000 },
    ]);
    expect(stats.snapshot("ghost")).toEqual([
      { tenant: "ghost", target: "", recent: zeros, total: zeros, recentWindowMs: 60_000 },
    ]);
    expect(stats.snapshot("ghost", "api")).toEqual([
      { tenant: "ghost", target: "api", recent: zeros, total: zeros, recentWindowMs: 60_000 },
    ]);
    // Target "" names the tenant as a whole.
    const whole = stats.snapshot("t1", "");
    expect(whole.map((e) => e.target)).toEqual([""]);
    expect(whole[0]!.total.requests).toBe(2);
  });

  it("empties recent once windowMs passes without traffic, while total keeps everything", () => {
    const { clock, stats, record } = setup(); // 60 s in 6 slots of 10 s
    clock.t = 1_000_000; // the start of a slot
    record({ durationMs: 40, bytesIn: 9, status: 503 });
    record({ durationMs: 60, code: "timeout" });
    clock.t += 59_999;
    const [still] = stats.snapshot("t1", "api");
    expect(still!.recent.requests).toBe(2);
    expect(still!.recent.serverErrors).toBe(1);

    clock.t += 1; // windowMs after the traffic: its slot is out
    const [later] = stats.snapshot("t1", "api");
    expect(later!.recent).toEqual(zeros);
    expect(later!.total.requests).toBe(2);
    expect(later!.total.bytesIn).toBe(9);
    expect(later!.total.relayErrors).toEqual({ timeout: 1 });
    near(later!.total.latencyP99Ms, 60);
    const [tenant] = stats.snapshot("t1");
    expect(tenant!.recent).toEqual(zeros);
    expect(tenant!.total.requests).toBe(2);
  });

  it("drops the older half of the window first, and a reused slot forgets what it held", () => {
    const { clock, stats, record } = setup();
    clock.t = 1_000_000;
    for (let i = 0; i < 10; i++) record({ durationMs: 10, status: 404 }); // slot 0
    clock.t += 30_000;
    for (let i = 0; i < 20; i++) record({ durationMs: 100, status: 500 }); // slot 3

    clock.t += 30_000; // slot 6: slots 1..6 are live, slot 0 is out
    let [entry] = stats.snapshot("t1", "api");
    expect(entry!.recent.requests).toBe(20);
    expect(entry!.recent.clientErrors).toBe(0);
    expect(entry!.recent.serverErrors).toBe(20);
    near(entry!.recent.latencyP50Ms, 100);
    expect(entry!.total.requests).toBe(30);
    near(entry!.total.latencyP50Ms, 100);

    // Slot 6 reuses slot 0's place in the ring; the old ten must not come back.
    record({ durationMs: 1000, status: 200 });
    [entry] = stats.snapshot("t1", "api");
    expect(entry!.recent.requests).toBe(21);
    expect(entry!.recent.clientErrors).toBe(0);
    expect(entry!.total.requests).toBe(31);
    expect(entry!.total.clientErrors).toBe(10);

    clock.t += 30_000; // slot 9: slots 4..9 live, slot 3 is out too
    [entry] = stats.snapshot("t1", "api");
    expect(entry!.recent.requests).toBe(1);
    near(entry!.recent.latencyP50Ms, 1000);
  });

  it("counts into the newest slot when the clock steps backwards, instead of wiping it", () => {
    const { clock, stats, record } = setup();
    clock.t = 1_000_000;
    record();
    clock.t += 60_000; // same ring position, next lap
    record();
    clock.t -= 60_000; // NTP steps the wall clock back
    record();
    const [entry] = stats.snapshot("t1", "api");
    expect(entry!.recent.requests).toBe(2);
    expect(entry!.total.requests).toBe(3);
  });

  it("forgets a tenant entirely, leaving the others alone", () => {
    const { stats, record } = setup();
    record({ tenant: "gone", target: "api" });
    record({ tenant: "gone", target: "web" });
    record({ tenant: "kept", target: "api" });
    stats.forgetTenant("gone");
    expect(stats.snapshot("gone")).toEqual([
      { tenant: "gone", target: "", recent: zeros, total: zeros, recentWindowMs: 60_000 },
    ]);
    expect(stats.snapshot("kept")[0]!.total.requests).toBe(1);
    expect(trafficStatsCensus(stats).series).toBe(1);
    record({ tenant: "gone", target: "api" });
    expect(stats.snapshot("gone").map((e) => e.total.requests)).toEqual([1, 1]);
  });

  it("keeps memory bounded: 1M exchanges over many windows never hold more than `slots` slot histograms", () => {
    const windowMs = 300_000;
    const slots = 30;
    const clock = { t: 0 };
    const stats = createTrafficStats({ now: () => clock.t }); // the defaults
    const recentFrom = (t: number) => (Math.floor(t / (windowMs / slots)) - slots + 1) * (windowMs / slots);
    const n = 1_000_000;
    const step = 7; // 7,000 s in all: more than 23 windows
    let census = trafficStatsCensus(stats);
    for (let i = 0; i < n; i++) {
      stats.record({ tenant: "t", target: "api", status: 200, bytesIn: 1, bytesOut: 1, durationMs: (i % 1000) + 1 });
      if (i % 100_000 === 0) {
        census = trafficStatsCensus(stats);
        expect(census.slotHistograms).toBeLessThanOrEqual(slots);
      }
      clock.t += step;
    }
    clock.t -= step; // snapshot at the time of the last record
    census = trafficStatsCensus(stats);
    expect(census.series).toBe(1);
    expect(census.slotHistograms).toBe(slots);
    expect(census.histogramBuckets).toBeLessThanOrEqual((slots + 1) * BUCKET_COUNT);

    const [entry] = stats.snapshot("t", "api");
    expect(entry!.recentWindowMs).toBe(windowMs);
    expect(entry!.total.requests).toBe(n);
    // Exactly the exchanges recorded in the live slots, none from earlier laps of the ring.
    const expectedRecent = n - Math.ceil(recentFrom(clock.t) / step);
    expect(entry!.recent.requests).toBe(expectedRecent);
    expect(entry!.recent.bytesIn).toBe(expectedRecent);
    near(entry!.recent.latencyP50Ms, 500);
    near(entry!.total.latencyP99Ms, 990);
  });

  it("rejects a window or slot count that cannot work", () => {
    expect(() => createTrafficStats({ windowMs: 0 })).toThrow(RangeError);
    expect(() => createTrafficStats({ slots: 0 })).toThrow(RangeError);
    expect(() => createTrafficStats({ slots: 2.5 })).toThrow(RangeError);
    expect(createTrafficStats().snapshot("x")[0]!.recentWindowMs).toBe(300_000);
  });
});
