import { type WrkResult, wrk } from "../lib/load.js";
import { medianBy } from "../lib/percentile.js";
import type { RunOptions, Scenario } from "../lib/types.js";
import { basesOf, type Setup } from "../setups.js";

const CONNECTIONS = 50;
/** wrk against each of the setup's bases at once (ferry-3: one per node), the connections shared out. */
const load = async (setup: Setup, seconds: number): Promise<WrkResult> => {
  const bases = basesOf(setup);
  const runs = await Promise.all(bases.map((b, i) => wrk(`${b}/1k`, Math.floor(CONNECTIONS / bases.length) + (i < CONNECTIONS % bases.length ? 1 : 0), seconds, setup.headers)));
  return runs.length === 1 ? runs[0]! : mergeRuns(runs);
};

/** Parallel runs as one: requests and rates added up, latencies the worst of them (wrk reports no histogram to merge). */
function mergeRuns(runs: WrkResult[]): WrkResult {
  const sum = (k: "rps" | "requests" | "errors") => runs.reduce((n, r) => n + r[k], 0);
  const worst = (k: "p50Ms" | "p99Ms") => Math.max(...runs.map((r) => r[k]));
  return { ...runs[0]!, rps: sum("rps"), requests: sum("requests"), errors: sum("errors"), p50Ms: worst("p50Ms"), p99Ms: worst("p99Ms") };
}
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
    "warm-up (ferry-3: one wrk per node, the connections shared out, latencies the worst node's); on Ferry those runs alternate with the runs behind each access policy, round by round, on the same processes",
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
