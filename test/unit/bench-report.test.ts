import { describe, expect, it } from "vitest";
import { type BenchResults, chart, markdown } from "../../bench/report.js";

// The benchmark report: ratios against the baselines of the same run, and never a made-up number.
const results: BenchResults = {
  date: "2026-11-23T12:00:00Z",
  quick: false,
  machine: { cores: 2, node: "v20.20.2" },
  scenarios: {
    small: {
      title: "Small requests",
      method: "1 KiB GET",
      headline: [
        { key: "rps", unit: "req/s", higherIsBetter: true },
        { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
      ],
      results: {
        direct: { rps: 80000, p99Ms: 1.5 },
        nginx: { rps: 40000, p99Ms: 3, resources: { nginx: { cpuSeconds: 18.2, peakRssMB: 15 } } },
        "node-proxy": { rps: 20000, p99Ms: 6 },
        "ferry-1": { rps: 10000, p99Ms: 12, resources: { relay: { cpuSeconds: 14, peakRssMB: 101.4 }, connector: { cpuSeconds: 16.9, peakRssMB: 172 } } },
        "ferry-2": { note: "not yet: needs the cluster (issue 5)" },
      },
    },
    bulk: {
      title: "Bulk transfer",
      method: "200 MB",
      headline: [{ key: "downMBs", unit: "MB/s down", higherIsBetter: true }],
      results: { nginx: { downMBs: 400 }, "ferry-1": { error: "connector exited" } },
    },
  },
};

describe("benchmark report", () => {
  const md = markdown(results);

  it("gives each Ferry figure its ratios to nginx and node-proxy", () => {
    expect(md).toContain("| ferry-1 | 10,000 (0.25x · 0.50x) | 12.0 (4.00x · 2.00x) | relay 14.0 s, 101 MB; connector 16.9 s, 172 MB |");
  });

  it("shows baselines without ratios and with their own resources", () => {
    expect(md).toContain("| nginx | 40,000 | 3.00 | nginx 18.2 s, 15 MB |");
    expect(md).toContain("| direct | 80,000 | 1.50 |  |");
  });

  it("says 'not yet' or 'failed' instead of inventing a number", () => {
    expect(md).toContain("| ferry-2 | not yet: needs the cluster (issue 5) |");
    expect(md).toContain("| ferry-1 | failed: connector exited |");
  });

  it("names the run and the machine", () => {
    expect(md).toContain("on 2026-11-23T12:00:00Z");
    expect(md).toContain("| cores | 2 |");
  });

  it("charts requests/s and MB/s per setup", () => {
    const svg = chart(results);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("Small requests: requests/s");
    expect(svg).toContain(">10,000<");
    expect(svg).toContain("not yet: needs the cluster (issue 5)");
  });
});
