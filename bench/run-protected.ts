import { median, medianBy } from "./lib/percentile.js";
import { watchResources } from "./lib/resources.js";
import type { RunOptions, Scenario, TimedRun } from "./lib/types.js";
import { type Protection, PROTECTIONS } from "./protection.js";
import type { Resources } from "./report.js";
import { type RowName, rowName, type Setup, type SetupName } from "./setups.js";

interface Run {
  round: number;
  figures: TimedRun;
  resources: Resources;
}

/**
 * Measures a Ferry setup without a policy and behind each of `protections`
 * on the same processes, switching the policy between timed runs: every
 * round runs each once, starting one further along each round, so both sides
 * of every ratio see the same machine (a shared VM's speed drifts by more
 * than the check costs) and none always follows the same neighbour. A row
 * gets the run with its median req/s, the CPU and requests of all its runs,
 * and, behind a policy, `rpsVsUnprotected`: the median over the rounds of its
 * req/s over the unprotected run's of the same round.
 */
export async function measureProtected(
  name: SetupName,
  setup: Setup,
  s: Scenario,
  protections: Protection[],
  o: RunOptions,
  log: (line: string) => void,
): Promise<Partial<Record<RowName, Record<string, unknown>>>> {
  if (!setup.protections || !s.runOnce || !s.warmUp || !s.rounds) throw new Error(`${s.id} cannot be measured behind a policy on ${name}`);
  const variants: (Protection | undefined)[] = [undefined, ...protections];
  const runs = new Map<Protection | undefined, Run[]>(variants.map((v) => [v, []]));
  const behind = async (v: Protection | undefined) => ({ ...setup, headers: await setup.protections!.use(v) });
  for (const v of variants) await s.warmUp(await behind(v), o);
  const rounds = s.rounds(o);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + round) % variants.length];
      const on = await behind(v);
      const used = watchResources(setup);
      const figures = await s.runOnce(on, o);
      runs.get(v)!.push({ round, figures, resources: used() });
      const watched = v === "watched" ? setup.protections.watched() : undefined;
      const seen = watched ? ` (the watcher has had ${watched.exchanges.toLocaleString("en-US")} exchanges, ${watched.dropped.toLocaleString("en-US")} dropped)` : "";
      log(`  round ${round + 1}/${rounds} · ${v ? PROTECTIONS[v] : "no policy"}: ${Math.round(figures.rps).toLocaleString("en-US")} req/s${seen}`);
    }
  }
  const plain = runs.get(undefined)!;
  const out: Partial<Record<RowName, Record<string, unknown>>> = { [name]: summary(plain) };
  for (const p of protections) {
    const guarded = runs.get(p)!;
    const refused = guarded.reduce((n, r) => n + r.figures.errors, 0);
    out[rowName(name, p)] =
      refused > 0
        ? { error: `${refused} requests were refused or failed behind the access policy` }
        : { ...summary(guarded), rpsVsUnprotected: median(guarded.map((r) => r.figures.rps / plain.find((q) => q.round === r.round)!.figures.rps)) };
  }
  return out;
}

function summary(runs: Run[]): Record<string, unknown> {
  const mid = medianBy(runs, (r) => r.figures.rps).figures;
  const resources: Resources = {};
  for (const run of runs) {
    for (const [role, r] of Object.entries(run.resources)) {
      const sum = (resources[role] ??= { cpuSeconds: 0, peakRssMB: 0 });
      sum.cpuSeconds += r.cpuSeconds;
      sum.peakRssMB = Math.max(sum.peakRssMB, r.peakRssMB);
    }
  }
  return { ...mid, rps: Math.round(mid.rps), runs: runs.length, requests: runs.reduce((n, r) => n + r.figures.requests, 0), resources };
}
