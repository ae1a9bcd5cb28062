import { describe, expect, it } from "vitest";
import { BUCKET_COUNT, GROWTH, LatencyHistogram, MAX_MS, MIN_MS } from "../../services/observability/latency-histogram.js";

/** Park-Miller: a seeded random source, so the distributions are the same every run. */
function seeded(seed: number): () => number {
  return () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
}

/** The exact nearest-rank quantile of sorted values, what the histogram estimates. */
function exact(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

function histogramOf(values: number[]): LatencyHistogram {
  const h = new LatencyHistogram();
  for (const v of values) h.add(v);
  return h;
}

/** Worst relative error of the estimates over q = 0.01..0.99. */
function worstError(values: number[]): number {
  const h = histogramOf(values);
  const sorted = [...values].sort((a, b) => a - b);
  let worst = 0;
  for (let p = 1; p <= 99; p++) {
    const truth = exact(sorted, p / 100);
    worst = Math.max(worst, Math.abs(h.quantile(p / 100) - truth) / truth);
  }
  return worst;
}

describe("LatencyHistogram", () => {
  it("covers 0.01 ms to at least an hour in buckets growing by GROWTH", () => {
    expect(MIN_MS).toBe(0.01);
    expect(GROWTH).toBeLessThanOrEqual(1.05);
    expect(MAX_MS).toBeGreaterThanOrEqual(3_600_000);
    // No more buckets than needed: one fewer would fall short of the hour.
    expect(MIN_MS * GROWTH ** (BUCKET_COUNT - 1)).toBeLessThan(3_600_000);
    expect(BUCKET_COUNT).toBe(404);
  });

  it("answers 0 and counts 0 when empty", () => {
    const h = new LatencyHistogram();
    expect(h.count).toBe(0);
    expect([h.quantile(0), h.quantile(0.5), h.quantile(0.99), h.quantile(1)]).toEqual([0, 0, 0, 0]);
  });

  it("answers a single repeated value exactly, being bounded by the observed min and max", () => {
    const h = histogramOf([42, 42, 42]);
    expect(h.count).toBe(3);
    expect([h.quantile(0.01), h.quantile(0.5), h.quantile(0.99)]).toEqual([42, 42, 42]);
  });

  it("estimates quantiles of 1..1000 ms uniform within 5% (p50 ~500, p99 ~990)", () => {
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    const h = histogramOf(values);
    expect(Math.abs(h.quantile(0.5) - 500) / 500).toBeLessThan(0.05);
    expect(Math.abs(h.quantile(0.95) - 950) / 950).toBeLessThan(0.05);
    expect(Math.abs(h.quantile(0.99) - 990) / 990).toBeLessThan(0.05);
    expect(h.quantile(0)).toBe(1);
    expect(h.quantile(1)).toBe(1000);
  });

  it("stays within half a bucket (~2.5%) at every percentile of skewed and wide distributions", () => {
    const bound = Math.sqrt(GROWTH) - 1 + 1e-9;
    const random = seeded(11);
    const uniform = Array.from({ length: 100_000 }, () => 1 + random() * 999);
    // Log-normal-ish: typical web latencies, a long tail over four decades.
    const skewed = Array.from({ length: 100_000 }, () => Math.exp(random() * 5 + random() * 5) / 10);
    const exponential = Array.from({ length: 100_000 }, () => -Math.log(1 - random()) * 80);
    expect(worstError(uniform)).toBeLessThanOrEqual(bound);
    expect(worstError(skewed)).toBeLessThanOrEqual(bound);
    expect(worstError(exponential)).toBeLessThanOrEqual(bound);
  });

  it("clamps values outside the range to the end buckets, and counts bad values as 0", () => {
    const h = histogramOf([0.0001, 5e9, Infinity, -3, NaN]);
    expect(h.count).toBe(5);
    expect(h.quantile(1)).toBe(MAX_MS);
    expect(h.quantile(0)).toBe(0);
    // 0.0001, -3 and NaN all land in the first bucket; beyond "under MIN_MS * GROWTH" there is nothing to tell.
    expect(h.quantile(0.6)).toBeLessThan(MIN_MS * GROWTH);
    expect(h.quantile(0.8)).toBeGreaterThan(MAX_MS / GROWTH); // the last bucket's middle
    expect(h.bucketsInUse).toBe(2);
  });

  it("stores sparsely: 100k latencies between 1 and 100 ms use under 100 buckets", () => {
    const random = seeded(3);
    const h = histogramOf(Array.from({ length: 100_000 }, () => 1 + random() * 99));
    expect(h.bucketsInUse).toBeGreaterThan(80);
    expect(h.bucketsInUse).toBeLessThanOrEqual(Math.ceil(Math.log(100) / Math.log(GROWTH)) + 1);
  });

  it("merges: the merge of two halves answers like the whole, and leaves its input alone", () => {
    const random = seeded(5);
    const values = Array.from({ length: 20_000 }, () => Math.exp(random() * 8));
    const whole = histogramOf(values);
    const a = histogramOf(values.slice(0, 7_000));
    const b = histogramOf(values.slice(7_000));
    const merged = LatencyHistogram.merged([a, b]);
    expect(merged.count).toBe(20_000);
    for (const q of [0, 0.1, 0.5, 0.9, 0.99, 1]) expect(merged.quantile(q)).toBe(whole.quantile(q));
    expect(b.count).toBe(13_000);
    a.merge(b);
    expect(a.quantile(0.5)).toBe(whole.quantile(0.5));
    expect(a.count).toBe(20_000);
    a.merge(new LatencyHistogram());
    expect(a.count).toBe(20_000);
    expect(LatencyHistogram.merged([]).quantile(0.5)).toBe(0);
  });

  it("resets to empty for reuse", () => {
    const h = histogramOf([1, 2, 3, 1000]);
    h.reset();
    expect(h.count).toBe(0);
    expect(h.bucketsInUse).toBe(0);
    expect(h.quantile(0.5)).toBe(0);
    h.add(7);
    expect(h.quantile(0.5)).toBe(7);
  });
});
