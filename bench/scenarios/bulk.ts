import { download, timed, upload } from "../lib/load.js";
import type { Scenario } from "../lib/types.js";

const MB = 1e6;

/** Large bodies: one stream each way, then eight at once. */
export const bulk: Scenario = {
  id: "bulk",
  title: "Bulk transfer",
  method: (o) => {
    const s = sizes(o.quick);
    return `${s.single / MB} MB download and upload on one stream, then 8 parallel streams of ${s.parallel / MB} MB each way; MB/s (1 MB = 10^6 bytes), ${o.quick ? "one run" : "median of 3 runs"} after a 50 MB warm-up each way`;
  },
  seconds: (o) => (o.quick ? 5 : 30),
  headline: [
    { key: "downMBs", unit: "MB/s down", higherIsBetter: true },
    { key: "upMBs", unit: "MB/s up", higherIsBetter: true },
    { key: "down8MBs", unit: "MB/s 8 down", higherIsBetter: true },
    { key: "up8MBs", unit: "MB/s 8 up", higherIsBetter: true },
  ],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const s = sizes(o.quick);
    const runs = o.quick ? 1 : 3;
    // Warm-up: JIT, connection pools and socket buffers on every hop.
    await download(`${setup.base}/bytes?size=${50 * MB}`);
    await upload(`${setup.base}/sink`, 50 * MB);
    const rate = async (bytes: number, fn: () => Promise<unknown>) => {
      const seconds: number[] = [];
      for (let i = 0; i < runs; i++) seconds.push(await timed(fn));
      return round(bytes / MB / median(seconds));
    };
    return {
      downMBs: await rate(s.single, () => download(`${setup.base}/bytes?size=${s.single}`)),
      upMBs: await rate(s.single, () => upload(`${setup.base}/sink`, s.single)),
      down8MBs: await rate(8 * s.parallel, () => Promise.all(Array.from({ length: 8 }, () => download(`${setup.base}/bytes?size=${s.parallel}`)))),
      up8MBs: await rate(8 * s.parallel, () => Promise.all(Array.from({ length: 8 }, () => upload(`${setup.base}/sink`, s.parallel)))),
    };
  },
};

function sizes(quick: boolean) {
  return quick ? { single: 50 * MB, parallel: 10 * MB } : { single: 200 * MB, parallel: 50 * MB };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
