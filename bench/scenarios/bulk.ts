import { download, timed, upload } from "../lib/load.js";
import { median } from "../lib/percentile.js";
import type { Figures, Scenario } from "../lib/types.js";
import { basesOf } from "../setups.js";

const MB = 1e6;

/** Large bodies: one stream each way, then eight at once. */
export const bulk: Scenario = {
  id: "bulk",
  title: "Bulk transfer",
  method: (o) => {
    const s = sizes(o.quick);
    return `${s.single / MB} MB download and upload on one stream, then 8 parallel streams of ${s.parallel / MB} MB each way; MB/s (1 MB = 10^6 bytes), ${o.quick ? "one run" : "median of 3 runs"} after a 50 MB warm-up each way (ferry-3: each transfer to the next node in turn, the warm-up on every node)`;
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
    // Each figure on its own: a transfer that fails costs its own figure (named in `failed`),
    // not the others; no transfer is ever retried.
    const figures: Figures = {};
    // ferry-3: each transfer to the next node in turn (a round-robin client).
    const bases = basesOf(setup);
    let turn = 0;
    const next = () => bases[turn++ % bases.length]!;
    const failed: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        failed.push(`${what}: ${(e as Error).message.split("\n")[0]}`);
      }
    };
    const rate = (key: string, what: string, bytes: number, fn: () => Promise<unknown>) =>
      attempt(what, async () => {
        const seconds: number[] = [];
        for (let i = 0; i < runs; i++) seconds.push(await timed(fn));
        figures[key] = round(bytes / MB / median(seconds));
      });
    // Warm-up: JIT, connection pools and socket buffers on every hop.
    await attempt("warm-up download", () => Promise.all(bases.map((b) => download(`${b}/bytes?size=${50 * MB}`))));
    await attempt("warm-up upload", () => Promise.all(bases.map((b) => upload(`${b}/sink`, 50 * MB))));
    await rate("downMBs", "download", s.single, () => download(`${next()}/bytes?size=${s.single}`));
    await rate("upMBs", "upload", s.single, () => upload(`${next()}/sink`, s.single));
    await rate("down8MBs", "8 downloads", 8 * s.parallel, () =>
      Promise.all(Array.from({ length: 8 }, () => download(`${next()}/bytes?size=${s.parallel}`))),
    );
    await rate("up8MBs", "8 uploads", 8 * s.parallel, () => Promise.all(Array.from({ length: 8 }, () => upload(`${next()}/sink`, s.parallel))));
    if (Object.keys(figures).length === 0) throw new Error(failed[0] ?? "no transfer succeeded");
    return failed.length > 0 ? { ...figures, failed: failed.join("; ") } : figures;
  },
};

function sizes(quick: boolean) {
  return quick ? { single: 50 * MB, parallel: 10 * MB } : { single: 200 * MB, parallel: 50 * MB };
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
