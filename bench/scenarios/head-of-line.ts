import { download, stall, timed } from "../lib/load.js";
import { median } from "../lib/percentile.js";
import type { Scenario } from "../lib/types.js";

const MB = 1e6;

/**
 * Eight downloads at once, with and without a ninth client that stops reading
 * a large download. A relay without per-exchange flow control lets the stalled
 * one block the tunnel it shares with the others (head-of-line blocking).
 */
export const headOfLine: Scenario = {
  id: "head-of-line",
  title: "Head-of-line blocking",
  skip: { "ferry-3": "see ferry-2: the same cross-node path, one client" },
  method: (o) =>
    `8 parallel downloads of ${(o.quick ? 20 : 100)} MB, alone and next to a client that stopped reading a 10 GB download (${o.quick ? "one pair of runs" : "median of 3 pairs"}); ratio = MB/s with the stalled client / MB/s without`,
  seconds: (o) => (o.quick ? 5 : 30),
  headline: [{ key: "ratio", unit: "x", higherIsBetter: true, ratios: false }],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const size = (o.quick ? 20 : 100) * MB;
    const eight = () => Promise.all(Array.from({ length: 8 }, () => download(`${setup.base}/bytes?size=${size}`)));
    await eight(); // warm-up
    const aloneRuns: number[] = [];
    const stalledRuns: number[] = [];
    for (let i = 0; i < (o.quick ? 1 : 3); i++) {
      aloneRuns.push(await timed(eight));
      const stalled = await stall(`${setup.base}/bytes?size=${10_000 * MB}`);
      try {
        stalledRuns.push(await timed(eight));
      } finally {
        stalled.release();
      }
    }
    const aloneMBs = (8 * size) / MB / median(aloneRuns);
    const stalledMBs = (8 * size) / MB / median(stalledRuns);
    return { aloneMBs: Math.round(aloneMBs), stalledMBs: Math.round(stalledMBs), ratio: Math.round((stalledMBs / aloneMBs) * 100) / 100 };
  },
};
