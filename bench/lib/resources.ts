import type { Resources } from "../report.js";
import type { Setup } from "../setups.js";
import { childrenOf, cpuSeconds, peakRss, resetPeak } from "./proc.js";

/**
 * Starts counting the CPU seconds and peak RSS of a setup's processes (each
 * with its direct children: nginx does its work in a worker); the function
 * returned says how much each role used since.
 */
export function watchResources(setup: Setup | undefined): () => Resources {
  const watched = (setup?.watched ?? []).flatMap((w) => [w.pid, ...childrenOf(w.pid)].map((pid) => ({ role: w.role, pid })));
  for (const w of watched) resetPeak(w.pid);
  const cpuBefore = watched.map((w) => cpuSeconds(w.pid));
  return () => {
    const resources: Resources = {};
    watched.forEach((w, i) => {
      const r = (resources[w.role] ??= { cpuSeconds: 0, peakRssMB: 0 });
      r.cpuSeconds += cpuSeconds(w.pid) - cpuBefore[i]!;
      r.peakRssMB += peakRss(w.pid) / 1e6;
    });
    return resources;
  };
}
