import { openLoop } from "../lib/load.js";
import type { Scenario } from "../lib/types.js";

const RATE = 2000;

/** 1 KiB GETs at a fixed arrival rate, open loop: tail latency without coordinated omission. */
export const fixedRate: Scenario = {
  id: "fixed-rate",
  title: "Fixed rate",
  method: (o) =>
    `1 KiB GET at ${RATE} req/s for ${o.quick ? 3 : 10} s, open loop (latency counted from when each request was due), after a 1 s warm-up`,
  seconds: (o) => (o.quick ? 4 : 11),
  headline: [
    { key: "p50Ms", unit: "ms p50", higherIsBetter: false },
    { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
  ],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const url = `${setup.base}/1k`;
    const warmUp = await openLoop(url, RATE, 1);
    const r = await openLoop(url, RATE, o.quick ? 3 : 10);
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
