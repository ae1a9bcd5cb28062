import { type WrkResult, wrk } from "../lib/load.js";
import type { Scenario } from "../lib/types.js";

const CONNECTIONS = 50;

/**
 * 1 KiB GETs, 50 connections, closed loop: the most requests per second each setup can carry;
 * Ferry also behind a policy that wants a client key, and one that wants a JWT.
 */
export const small: Scenario = {
  id: "small",
  title: "Small requests",
  method: (o) =>
    `1 KiB GET, ${CONNECTIONS} connections, wrk (one thread), ${o.quick ? "1 run of 3 s" : "median of 3 runs of 8 s"} after a 2 s warm-up`,
  seconds: (o) => (o.quick ? 5 : 26),
  protections: ["client-key", "jwt"],
  headline: [
    { key: "rps", unit: "req/s", higherIsBetter: true },
    { key: "p50Ms", unit: "ms p50", higherIsBetter: false },
    { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
  ],
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const url = `${setup.base}/1k`;
    const load = (seconds: number) => wrk(url, CONNECTIONS, seconds, setup.headers);
    const warmUp = await load(2);
    const runs: WrkResult[] = [];
    for (let i = 0; i < (o.quick ? 1 : 3); i++) runs.push(await load(o.quick ? 3 : 8));
    // Behind a policy a refusal is quick and cheap: figures with refusals in them would flatter the check.
    const refused = [warmUp, ...runs].reduce((n, r) => n + r.errors, 0);
    if (Object.keys(setup.headers).length > 0 && refused > 0) throw new Error(`${refused} requests were refused or failed behind the access policy`);
    // Every request the setup carried while its CPU was counted, warm-up included: CPU per request.
    return { ...median(runs), requests: runs.reduce((n, r) => n + r.requests, warmUp.requests) };
  },
};

/** The run with the median requests/s (its latencies come with it, so they stay consistent). */
export function median(runs: WrkResult[]) {
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  const m = sorted[Math.floor(sorted.length / 2)]!;
  return { rps: Math.round(m.rps), p50Ms: m.p50Ms, p99Ms: m.p99Ms, errors: m.errors, runs: runs.length };
}
