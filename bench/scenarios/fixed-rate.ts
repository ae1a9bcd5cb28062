import { openLoop } from "../lib/load.js";
import type { Scenario } from "../lib/types.js";
import { basesOf } from "../setups.js";

const RATE = 2000;

/** 1 KiB GETs at a fixed arrival rate, open loop: tail latency without coordinated omission. */
export const fixedRate: Scenario = {
  id: "fixed-rate",
  title: "Fixed rate",
  method: (o) =>
    `1 KiB GET at ${RATE} req/s for ${o.quick ? 3 : 10} s, open loop (latency counted from when each request was due; ferry-3: a third of the rate to each node, the worst node's latencies), after a 1 s warm-up`,
  seconds: (o) => (o.quick ? 4 : 11),
  headline: [
    { key: "p50Ms", unit: "ms p50", higherIsBetter: false },
    { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
  ],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    // ferry-3: an equal share of the rate to each node, at once; the latencies are the worst node's.
    const bases = basesOf(setup);
    const load = async (seconds: number) => {
      const runs = await Promise.all(bases.map((b) => openLoop(`${b}/1k`, RATE / bases.length, seconds)));
      const worst = (k: "p50Ms" | "p99Ms" | "p999Ms" | "maxMs") => Math.max(...runs.map((r) => r[k]));
      const sum = (k: "sent" | "errors") => runs.reduce((n, r) => n + r[k], 0);
      return { rate: RATE, sent: sum("sent"), errors: sum("errors"), p50Ms: worst("p50Ms"), p99Ms: worst("p99Ms"), p999Ms: worst("p999Ms"), maxMs: worst("maxMs") };
    };
    const warmUp = await load(1);
    const r = await load(o.quick ? 3 : 10);
    return {
      rate: r.rate,
      sent: r.sent,
      // Every request while the setup's CPU was counted, warm-up included: CPU per request.
      requests: warmUp.sent + r.sent,
      errors: r.errors,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      p999Ms: r.p999Ms,
      maxMs: r.maxMs,
    };
  },
};
