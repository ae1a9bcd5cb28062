// `npm run bench [-- --quick] [-- --only small,bulk]`: Ferry side by side with
// a direct connection, nginx and a plain Node proxy, in one run on this machine.
// Writes bench/results/latest.json and, for a full run, docs/benchmarks.md and
// docs/benchmarks.svg.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { watchResources } from "./lib/resources.js";
import { ensureTools, findNatsServer, versionOf } from "./lib/tools.js";
import type { RunOptions, Scenario } from "./lib/types.js";
import { type BenchResults, chart, markdown } from "./report.js";
import { bulk } from "./scenarios/bulk.js";
import { fixedRate } from "./scenarios/fixed-rate.js";
import { headOfLine } from "./scenarios/head-of-line.js";
import { grpc } from "./scenarios/grpc.js";
import { connectorIdle } from "./scenarios/connector-idle.js";
import { idle } from "./scenarios/idle.js";
import { small } from "./scenarios/small.js";
import { websocketIdle } from "./scenarios/websocket-idle.js";
import { websocket } from "./scenarios/websocket.js";
import type { Protection } from "./protection.js";
import { measureProtected } from "./run-protected.js";
import {
  cannotRun, PROTECTABLE, ROOT, ROWS, rowName, SETUPS, type Setup, type SetupName, startGrpcTarget, startSetup, startTarget, type Target,
} from "./setups.js";

const SCENARIOS: Scenario[] = [small, fixedRate, bulk, headOfLine, idle, connectorIdle, websocket, websocketIdle, grpc];

const HELP = `Usage: npm run bench [-- options]

Measures Ferry (one relay: ferry-1; two relays clustered over NATS with peer links,
the load on the node without the connector: ferry-2; three, the load spread over all
three: ferry-3) against direct, nginx and node-proxy setups in one run.

Options:
  --quick            short runs and small sizes (smoke test, a few minutes)
  --only <ids>       comma-separated scenarios (default: all)
  --setups <names>   comma-separated setups: ${SETUPS.join(", ")} (default: all).
                     ${PROTECTABLE.join(" and ")} bring their rows behind an access policy where a
                     scenario has them; those can be named alone too: ${ROWS.filter((r) => r.includes("+")).join(", ")}
  -h, --help         this help

Scenarios:
${SCENARIOS.map((s) => `  ${s.id.padEnd(17)}  ${s.title}${s.only ? ` (${s.only.join(", ")})` : ""}`).join("\n")}

Needs nginx and wrk, and nats-server for ferry-2 and ferry-3 (Debian packages; installed automatically
when running as root; without nats-server, they are reported as not measured).

Environment, to find where time and memory go:
  FERRY_BENCH_RELAY_NODE_ARGS, FERRY_BENCH_CONNECTOR_NODE_ARGS
                     node flags for each relay and connector (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
  FERRY_BENCH_OUTPUT_DIR
                     a directory (made if missing): every process's output lines go to <name>-<pid>.log there
                     (e.g. with --trace-gc in the node flags)

Results: a full run writes bench/results/latest.json, docs/benchmarks.md and docs/benchmarks.svg;
a partial one (--quick, --only, --setups) writes bench/results/tmp/partial.json.
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      setups: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return void process.stdout.write(HELP);
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((id) => !SCENARIOS.some((s) => s.id === id)) ?? [];
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(", ")}; choose from ${SCENARIOS.map((s) => s.id).join(", ")}`);
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.id));
  const setups = values.setups?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknownSetups = setups?.filter((name) => !(ROWS as string[]).includes(name)) ?? [];
  if (unknownSetups.length > 0) throw new Error(`unknown setup ${unknownSetups.join(", ")}; choose from ${ROWS.join(", ")}`);
  const o: RunOptions = { quick: values.quick };
  const log = (line: string) => process.stdout.write(`${line}\n`);

  ensureTools(log);
  const results: BenchResults = {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    quick: o.quick,
    machine: machine(),
    scenarios: Object.fromEntries(
      scenarios.map((s) => [s.id, { title: s.title, method: s.method(o), headline: s.headline, results: {} }]),
    ),
  };

  // Scenario by scenario, each setup started fresh for it: no scenario inherits another's
  // heap, connections or caches, and every setup sees the same machine state. A Ferry
  // setup's rows behind access policies are measured on that same setup (run-protected.ts).
  const chosen = (setup: SetupName, protection?: Protection) =>
    !setups || setups.includes(rowName(setup, protection)) || (protection !== undefined && setups.includes(setup));
  const plan = scenarios.flatMap((s) =>
    SETUPS.filter((setup) => !s.only || s.only.includes(setup)).flatMap((setup) => {
      const protections = PROTECTABLE.includes(setup) ? (s.protections ?? []).filter((p) => chosen(setup, p)) : [];
      // Behind a policy needs the same setup without one: the baseline of its ratios.
      if (!chosen(setup) && protections.length === 0) return [];
      const rows = [rowName(setup), ...protections.map((p) => rowName(setup, p))];
      return [{ setup, s, protections, rows, seconds: s.seconds(o) * (1 + protections.length) }];
    }),
  );
  // Why a setup gets a note instead of figures: the scenario does not apply to it, or it cannot run here.
  const noteFor = (setup: SetupName, s: Scenario) => s.skip?.[setup] ?? cannotRun(setup);
  let left = plan.reduce((n, p) => n + (noteFor(p.setup, p.s) ? 0 : p.seconds + 2), 0);
  const target = await startTarget();
  // The gRPC target only when a gRPC scenario runs somewhere.
  let grpcTarget: Target | undefined;
  let step = 0;
  try {
    if (plan.some((p) => p.s.target === "grpc" && !p.s.standalone && !noteFor(p.setup, p.s))) grpcTarget = await startGrpcTarget();
    for (const { setup: name, s, protections, rows, seconds } of plan) {
      step++;
      const figures = results.scenarios[s.id]!.results;
      const setAll = (f: Record<string, unknown>) => rows.forEach((row) => (figures[row] = f));
      const note = noteFor(name, s);
      const title = `[${step}/${plan.length}] ${s.title} · ${rows.join(", ")}`;
      if (note) {
        setAll({ note });
        log(`${title}: ${note}`);
        continue;
      }
      log(`${title} (~${seconds} s; ~${clock(left)} left)`);
      left -= seconds + 2;
      if (s.standalone) {
        figures[name] = await measure(name, undefined, s, o, log);
        continue;
      }
      let setup: Setup;
      try {
        setup = await startSetup(name, s.target === "grpc" ? grpcTarget! : target, protections.length > 0);
      } catch (e) {
        // A setup that does not come up is that setup's failure, not the run's.
        log(`  failed to start: ${(e as Error).message}`);
        setAll({ error: `did not start: ${(e as Error).message.split("\n")[0]!}` });
        continue;
      }
      try {
        if (protections.length === 0) figures[name] = await measure(name, setup, s, o, log);
        else Object.assign(figures, await measureProtected(name, setup, s, protections, o, log));
      } catch (e) {
        log(`  failed: ${(e as Error).message}`);
        setAll({ error: (e as Error).message.split("\n")[0]! });
      } finally {
        await setup.stop();
      }
    }
  } finally {
    await grpcTarget?.proc.stop();
    await target.proc.stop();
  }

  // Only a full run replaces the committed figures; a partial one goes where git does not look.
  const full = !o.quick && !only && !setups;
  const json = full ? "bench/results/latest.json" : "bench/results/tmp/partial.json";
  mkdirSync(join(ROOT, json, ".."), { recursive: true });
  writeFileSync(join(ROOT, json), `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown(results);
  if (full) {
    writeFileSync(join(ROOT, "docs/benchmarks.md"), md);
    writeFileSync(join(ROOT, "docs/benchmarks.svg"), chart(results));
    log(`\nwrote ${json}, docs/benchmarks.md, docs/benchmarks.svg`);
  } else {
    log(`\nwrote ${json} (latest.json and docs/ are only rewritten by a full run)`);
  }
  log(`\n${md}`);
}

/** Runs one scenario on one setup, with CPU seconds and peak RSS of the setup's own processes. */
async function measure(name: SetupName, setup: Setup | undefined, s: Scenario, o: RunOptions, log: (l: string) => void): Promise<Record<string, unknown>> {
  const used = watchResources(setup);
  try {
    const figures = await s.run(setup, o, log, name);
    return { ...figures, resources: used() };
  } catch (e) {
    log(`  failed: ${(e as Error).message}`);
    return { error: (e as Error).message.split("\n")[0]! };
  }
}

function machine(): Record<string, string | number> {
  const cpuInfo = cpus();
  const natsServer = findNatsServer();
  let os = release();
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // not Linux: the kernel release will do
  }
  return {
    cores: cpuInfo.length,
    cpu: cpuInfo[0]?.model ?? "unknown",
    os,
    node: process.version,
    nginx: versionOf("nginx", ["-v"]).replace(/^nginx version: /, ""),
    wrk: versionOf("wrk", ["--version"]).split(" [")[0]!,
    "nats-server": natsServer ? versionOf(natsServer, ["--version"]).replace(/^nats-server: /, "") : "missing",
  };
}

function clock(seconds: number): string {
  const m = Math.floor(seconds / 60);
  return m > 0 ? `${m}m${String(Math.round(seconds % 60)).padStart(2, "0")}s` : `${Math.round(seconds)}s`;
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exit(1);
});
