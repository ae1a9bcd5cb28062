import { type WrkResult, wrk } from "../lib/load.js";
import { medianBy } from "../lib/percentile.js";
import type { RunOptions, Scenario } from "../lib/types.js";
import type { Setup } from "../setups.js";

const CONNECTIONS = 50;
const load = (setup: Setup, seconds: number) => wrk(`${setup.base}/1k`, CONNECTIONS, seconds, setup.headers);
const runSeconds = (o: RunOptions) => (o.quick ? 3 : 2);
const rounds = (o: RunOptions) => (o.quick ? 1 : 12);

/**
 * 1 KiB GETs, 50 connections, closed loop: the most requests per second each setup can carry;
 * Ferry also behind a policy that wants a client key, and one that wants a JWT.
 */
export const small: Scenario = {
  id: "small",
  title: "Small requests",
  method: (o) =>
    `1 KiB GET, ${CONNECTIONS} connections, wrk (one thread), the median of ${rounds(o)} run${rounds(o) > 1 ? "s" : ""} of ${runSeconds(o)} s after a 2 s ` +
    "warm-up; on Ferry those runs alternate with the runs behind each access policy, round by round, on the same processes",
  seconds: (o) => 2 + rounds(o) * runSeconds(o),
  protections: ["client-key", "jwt", "watched"],
  headline: [
    { key: "rps", unit: "req/s", higherIsBetter: true },
    { key: "p50Ms", unit: "ms p50", higherIsBetter: false },
    { key: "p99Ms", unit: "ms p99", higherIsBetter: false },
  ],
  warmUp: (setup) => load(setup, 2),
  runOnce: (setup, o) => load(setup, runSeconds(o)),
  rounds,
  async run(setup, o) {
    if (!setup) throw new Error("needs a setup");
    const warmUp = await load(setup, 2);
    const runs: WrkResult[] = [];
    for (let i = 0; i < rounds(o); i++) runs.push(await load(setup, runSeconds(o)));
    // Every request the setup carried while its CPU was counted, warm-up included: CPU per request.
    return { ...median(runs), requests: runs.reduce((n, r) => n + r.requests, warmUp.requests) };
  },
};

/** The run with the median requests/s (its latencies come with it, so they stay consistent). */
function median(runs: WrkResult[]) {
  const m = medianBy(runs, (r) => r.rps);
  return { rps: Math.round(m.rps), p50Ms: m.p50Ms, p99Ms: m.p99Ms, errors: m.errors, runs: runs.length };
}
