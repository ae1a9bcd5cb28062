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
        "ferry-2": { note: "not measured: nats-server is missing (apt-get install nats-server)" },
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

  it("says why a setup was not measured, or that it failed, instead of inventing a number", () => {
    expect(md).toContain("| ferry-2 | not measured: nats-server is missing (apt-get install nats-server) |");
    expect(md).toContain("| ferry-1 | failed: connector exited |");
  });

  it("names the run and the machine", () => {
    expect(md).toContain("on 2026-11-23T12:00:00Z");
    expect(md).toContain("| cores | 2 |");
  });

  it("compares ferry-2 with ferry-1 from the same run: figures, CPU, CPU per request and peak RSS", () => {
    const run: BenchResults = {
      ...results,
      scenarios: {
        small: {
          ...results.scenarios.small!,
          results: {
            nginx: { rps: 40000, p99Ms: 3, requests: 1_000_000 },
            "node-proxy": { rps: 20000, p99Ms: 6 },
            "ferry-1": { rps: 10000, p99Ms: 12, requests: 260_000, resources: { relay: { cpuSeconds: 14, peakRssMB: 100 }, connector: { cpuSeconds: 16, peakRssMB: 150 } } },
            "ferry-2": {
              rps: 4000,
              p99Ms: 30,
              requests: 104_000,
              resources: {
                "relay-a": { cpuSeconds: 12, peakRssMB: 110 },
                "relay-b": { cpuSeconds: 9, peakRssMB: 100 },
                connector: { cpuSeconds: 6, peakRssMB: 140 },
                "nats-server": { cpuSeconds: 3, peakRssMB: 25 },
              },
            },
          },
        },
        "head-of-line": {
          title: "Head-of-line blocking",
          method: "8 downloads",
          headline: [{ key: "ratio", unit: "x", higherIsBetter: true, ratios: false }],
          results: { "ferry-1": { ratio: 1, aloneMBs: 250, stalledMBs: 250 }, "ferry-2": { ratio: 0.9, aloneMBs: 100, stalledMBs: 90 } },
        },
        idle: {
          title: "Idle capacity",
          method: "2000 tunnels",
          headline: [
            { key: "perTunnelKB", unit: "KB/tunnel", higherIsBetter: false, ratios: false },
            { key: "perExchangeKB", unit: "KB/exchange", higherIsBetter: false, ratios: false },
          ],
          results: {
            "ferry-1": { n: 2000, baseMB: 72.4, perTunnelKB: 29, perExchangeKB: 14 },
            "ferry-2": {
              n: 2000, baseMB: 150, perTunnelKB: 58, perExchangeKB: 21,
              tunnelKBa: 20, tunnelKBb: 38, tunnelKBnats: 5, exchangeKBa: 14, exchangeKBb: 7, exchangeKBnats: 1,
            },
          },
        },
      },
    };
    const out = markdown(run);
    expect(out).toContain(
      "| ferry-2 | 4,000 (0.10x · 0.20x) | 30.0 (10.00x · 5.00x) | relay-a 12.0 s, 110 MB; relay-b 9.0 s, 100 MB; connector 6.0 s, 140 MB; nats-server 3.0 s, 25 MB |",
    );
    // CPU 30 s vs 30 s, for 0.4x the requests: 2.5x per request; RSS 375 MB vs 250 MB.
    expect(out).toContain("ferry-2 / ferry-1 (same run): req/s 0.40x · ms p99 2.50x · CPU s 1.00x · CPU per request 2.50x · peak RSS 1.50x");
    // A ratio of ratios means nothing: head-of-line has no such line, only its MB/s.
    expect(out).not.toMatch(/ferry-2 \/ ferry-1 \(same run\): x /);
    expect(out).toContain("ferry-1 250 → 250, ferry-2 100 → 90");
    expect(out).toContain(
      "ferry-2: 2000 tunnels on node b and 2000 exchanges through node a; both nodes together started at 150 MB RSS. Per tunnel node a 20 + node b 38 KB (nats-server 5 KB); per exchange node a 14 + node b 7 KB (nats-server 1 KB). ferry-2 / ferry-1: KB/tunnel 2.00x · KB/exchange 1.50x.",
    );
  });

  it("puts the rows behind an access policy after their setup, against it from the same run", () => {
    const run: BenchResults = {
      ...results,
      scenarios: {
        small: {
          ...results.scenarios.small!,
          results: {
            nginx: { rps: 40000, p99Ms: 3 },
            "node-proxy": { rps: 20000, p99Ms: 6 },
            "ferry-1": { rps: 10000, p99Ms: 12, requests: 200_000, resources: { relay: { cpuSeconds: 20, peakRssMB: 100 }, connector: { cpuSeconds: 20, peakRssMB: 150 } } },
            "ferry-1+client-key": {
              rps: 9500, p99Ms: 12.6, requests: 190_000, resources: { relay: { cpuSeconds: 20.9, peakRssMB: 101 }, connector: { cpuSeconds: 19, peakRssMB: 150 } },
            },
            "ferry-1+jwt": { error: "did not start: the access policy is not in force after 30 s" },
            "ferry-2": { rps: 4000, p99Ms: 30, requests: 80_000, resources: { "relay-a": { cpuSeconds: 16, peakRssMB: 110 }, "relay-b": { cpuSeconds: 8, peakRssMB: 100 } } },
            "ferry-2+jwt": { rps: 2000, p99Ms: 60, requests: 40_000, resources: { "relay-a": { cpuSeconds: 12, peakRssMB: 120 }, "relay-b": { cpuSeconds: 4, peakRssMB: 100 } } },
          },
        },
      },
    };
    const out = markdown(run);
    const rows = out.split("\n").filter((l) => l.startsWith("| ferry"));
    expect(rows.map((l) => l.split(" | ")[0])).toEqual(["| ferry-1", "| ferry-1 + client key", "| ferry-1 + JWT", "| ferry-2", "| ferry-2 + JWT"]);
    expect(out).toContain("| ferry-1 + client key | 9,500 (0.24x · 0.47x) | 12.6 (4.20x · 2.10x) | relay 20.9 s, 101 MB; connector 19.0 s, 150 MB |");
    expect(out).toContain("| ferry-1 + JWT | failed: did not start: the access policy is not in force after 30 s |");
    // CPU per request: 39.9 s / 190,000 against 40 s / 200,000; the relay's own 110 µs against 100 µs.
    expect(out).toContain(
      "Behind an access policy / without one (same run): ferry-1 + client key req/s 0.95x · ms p99 1.05x · CPU per request 1.05x (relay 100 → 110 µs); " +
        "ferry-2 + JWT req/s 0.50x · ms p99 2.00x · CPU per request 1.33x (relay 200 → 300 µs).",
    );
    // Against ferry-1 without a policy only: the ferry-2 / ferry-1 line stays as it was.
    expect(out).toContain("ferry-2 / ferry-1 (same run): req/s 0.40x · ms p99 2.50x · CPU s 0.60x · CPU per request 1.50x");
  });

  it("names the transfers that failed and keeps the figures that did not", () => {
    const run: BenchResults = {
      ...results,
      scenarios: {
        bulk: {
          title: "Bulk transfer",
          method: "200 MB",
          headline: [
            { key: "downMBs", unit: "MB/s down", higherIsBetter: true },
            { key: "upMBs", unit: "MB/s up", higherIsBetter: true },
          ],
          results: {
            nginx: { downMBs: 400, upMBs: 800 },
            "ferry-1": { downMBs: 200, upMBs: 400, resources: { relay: { cpuSeconds: 5, peakRssMB: 100 } } },
            "ferry-2": { downMBs: 100, failed: "upload: HTTP 502 target_error from http://x/sink", resources: { "relay-a": { cpuSeconds: 5, peakRssMB: 100 } } },
          },
        },
      },
    };
    const out = markdown(run);
    expect(out).toContain("| ferry-2 | 100 (0.25x · —) | — | relay-a 5.0 s, 100 MB |");
    expect(out).toContain("ferry-2 failed (figures left out): upload: HTTP 502 target_error from http://x/sink");
    // Different work done: no CPU or memory comparison.
    expect(out).toContain("ferry-2 / ferry-1 (same run): MB/s down 0.50x\n");
    expect(chart(run)).toContain("failed (see benchmarks.md)");
  });

  it("gives WebSocket and gRPC figures against direct, the per-call overhead and the idle WebSocket start", () => {
    const run: BenchResults = {
      ...results,
      scenarios: {
        websocket: {
          title: "WebSocket echo",
          method: "50 WebSockets",
          headline: [
            { key: "msgsPerSecond", unit: "msgs/s", higherIsBetter: true },
            { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
          ],
          results: {
            direct: { msgsPerSecond: 40000, p99Ms: 2 },
            "node-proxy": { note: "not measured" },
            "ferry-1": { msgsPerSecond: 10000, p99Ms: 8 },
          },
        },
        grpc: {
          title: "gRPC unary calls",
          method: "Echo",
          headline: [
            { key: "callsPerSecond", unit: "calls/s", higherIsBetter: true },
            { key: "aloneP50Ms", unit: "ms p50 alone", higherIsBetter: false },
          ],
          results: {
            direct: { callsPerSecond: 5000, aloneP50Ms: 0.5 },
            "ferry-1": { callsPerSecond: 2000, aloneP50Ms: 1.75 },
            "ferry-2": { note: "not measured: the connector forwarded the call to the h2c:// target over HTTP/1.1" },
          },
        },
        "websocket-idle": {
          title: "Idle WebSockets",
          method: "1000 WebSockets",
          headline: [
            { key: "relayKB", unit: "KB/WebSocket relay", higherIsBetter: false, ratios: false },
            { key: "connectorKB", unit: "KB/WebSocket connector", higherIsBetter: false, ratios: false },
          ],
          results: { "ferry-1": { n: 1000, relayBaseMB: 80.5, connectorBaseMB: 90, relayKB: 12.5, connectorKB: 20 } },
        },
      },
    };
    const out = markdown(run);
    expect(out).toContain("Against direct (same run): ferry-1 msgs/s 0.25x · ms p99 4.00x.");
    expect(out).toContain("Against direct (same run): ferry-1 calls/s 0.40x · ms p50 alone 3.50x.");
    expect(out).toContain("Per-call overhead (ms p50 alone, minus direct's): ferry-1 +1.25 ms.");
    expect(out).toContain("| ferry-2 | not measured: the connector forwarded the call to the h2c:// target over HTTP/1.1 |");
    expect(out).toContain("| ferry-1 | 12.5 | 20.0 |");
    expect(out).toContain("1000 WebSockets; the relay started at 80.5 MB RSS and the connector at 90 MB.");
  });

  it("charts requests/s and MB/s per setup", () => {
    const svg = chart(results);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("Small requests: requests/s");
    expect(svg).toContain(">10,000<");
    expect(svg).toContain("not measured: nats-server is missing (apt-get install nats-server)");
  });
});
