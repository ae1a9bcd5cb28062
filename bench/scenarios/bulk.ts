import { download, timed, upload } from "../lib/load.js";
import type { Scenario } from "../lib/types.js";

const MB = 1e6;

/** Large bodies: one stream each way, then eight at once. */
export const bulk: Scenario = {
  id: "bulk",
  title: "Bulk transfer",
  method: (o) => {
    const s = sizes(o.quick);
    return `${s.single / MB} MB download and upload on one stream, then 8 parallel streams of ${s.parallel / MB} MB each way; MB/s (1 MB = 10^6 bytes)`;
  },
  seconds: (o) => (o.quick ? 4 : 14),
  headline: [
    { key: "downMBs", unit: "MB/s down", higherIsBetter: true },
    { key: "upMBs", unit: "MB/s up", higherIsBetter: true },
    { key: "down8MBs", unit: "MB/s 8 down", higherIsBetter: true },
    { key: "up8MBs", unit: "MB/s 8 up", higherIsBetter: true },
  ],
  async run(setup, o) {
    const s = sizes(o.quick);
    await download(`${setup.base}/bytes?size=${10 * MB}`); // warm-up
    const down = await timed(() => download(`${setup.base}/bytes?size=${s.single}`));
    const up = await timed(() => upload(`${setup.base}/sink`, s.single));
    const down8 = await timed(() => Promise.all(Array.from({ length: 8 }, () => download(`${setup.base}/bytes?size=${s.parallel}`))));
    const up8 = await timed(() => Promise.all(Array.from({ length: 8 }, () => upload(`${setup.base}/sink`, s.parallel))));
    return {
      downMBs: round(s.single / MB / down),
      upMBs: round(s.single / MB / up),
      down8MBs: round((8 * s.parallel) / MB / down8),
      up8MBs: round((8 * s.parallel) / MB / up8),
    };
  },
};

function sizes(quick: boolean) {
  return quick ? { single: 50 * MB, parallel: 10 * MB } : { single: 200 * MB, parallel: 50 * MB };
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
