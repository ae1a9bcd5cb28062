import { type CallResult, createEchoCaller } from "../lib/grpc-load.js";
import type { Figures, RunOptions, Scenario } from "../lib/types.js";

const CALLERS = 50;
/** A small request: 64 characters, about 70 bytes on the wire as a gRPC message. */
const MESSAGE = "m".repeat(64);

/**
 * gRPC unary calls to EchoService on an h2c target: what a relay adds to each
 * call. Many callers at once give the call rate and its latency under load;
 * one caller alone gives a call's latency with nothing queued, so the
 * difference to direct is the per-call overhead.
 */
export const grpc: Scenario = {
  id: "grpc",
  title: "gRPC unary calls",
  only: ["direct", "ferry-1", "ferry-2"],
  target: "grpc",
  method: (o) =>
    `ferry.testing.v1.EchoService/Echo with a ${MESSAGE.length}-character message, connect-node gRPC client over one h2c connection, target connect-node on cleartext HTTP/2 (the connector's target: h2c://); ${CALLERS} callers, each calling again as soon as its answer is in, ${runsOf(o, loadSeconds(o))} after a ${o.quick ? 1 : 2} s warm-up; then 1 caller for ${aloneSeconds(o)} s (ms p50 alone: the latency of one call with nothing queued)`,
  seconds: (o) => (o.quick ? 6 : 28),
  headline: [
    { key: "callsPerSecond", unit: "calls/s", higherIsBetter: true },
    { key: "p50Ms", unit: "ms p50", higherIsBetter: false },
    { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
    { key: "aloneP50Ms", unit: "ms p50 alone", higherIsBetter: false },
  ],
  async run(setup, o): Promise<Figures> {
    if (!setup) throw new Error("needs a setup");
    const caller = createEchoCaller(setup.base);
    try {
      try {
        await caller.echo("probe");
      } catch (e) {
        // Only this target answers 505, and only to HTTP/1.1: the connector has no HTTP/2 transport.
        if (/\bHTTP 505\b/.test((e as Error).message)) {
          return { note: "not measured: the connector forwarded the call to the h2c:// target over HTTP/1.1 (no HTTP/2 transport in this build)" };
        }
        throw e;
      }
      await caller.load(CALLERS, o.quick ? 1 : 2, MESSAGE);
      const loaded: CallResult[] = [];
      for (let i = 0; i < runs(o); i++) loaded.push(await caller.load(CALLERS, loadSeconds(o), MESSAGE));
      const alone = await caller.load(1, aloneSeconds(o), MESSAGE);
      // The median run's latencies come with its rate, so they stay consistent.
      const m = [...loaded].sort((a, b) => a.callsPerSecond - b.callsPerSecond)[Math.floor(loaded.length / 2)]!;
      return {
        callsPerSecond: Math.round(m.callsPerSecond),
        p50Ms: m.p50Ms,
        p99Ms: m.p99Ms,
        aloneP50Ms: alone.p50Ms,
        aloneP99Ms: alone.p99Ms,
      };
    } finally {
      caller.close();
    }
  },
};

const runs = (o: RunOptions) => (o.quick ? 1 : 3);
const runsOf = (o: RunOptions, seconds: number) => (o.quick ? `1 run of ${seconds} s` : `median of 3 runs of ${seconds} s`);
const loadSeconds = (o: RunOptions) => (o.quick ? 2 : 6);
const aloneSeconds = (o: RunOptions) => (o.quick ? 1 : 5);
