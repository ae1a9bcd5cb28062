import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, settledRss, startProc } from "../lib/proc.js";
import type { Scenario } from "../lib/types.js";
import { ROOT, startConnector, startRelay } from "../setups.js";

/**
 * What an on-premises box gives a connector at rest: its settled RSS with its two tunnels up and no traffic,
 * started from the package (`node dist/clients/cli/main.js connector`) and as the single-file build, next to a
 * bare `node` idling in the same run (the floor neither can go below).
 */
export const connectorIdle: Scenario = {
  id: "connector-idle",
  title: "Connector at rest",
  only: ["ferry-1"],
  standalone: true,
  method: () =>
    "a relay and a connector with two tunnels up, no traffic: the connector's settled RSS, run by node from the package and as the single-file build (built for this run), and a bare node's idle RSS from the same run",
  seconds: () => 30,
  headline: [
    { key: "packageMB", unit: "MB package", higherIsBetter: false, ratios: false },
    { key: "binaryMB", unit: "MB single file", higherIsBetter: false, ratios: false },
    { key: "bareNodeMB", unit: "MB bare node", higherIsBetter: false, ratios: false },
    { key: "binaryVsPackage", unit: "x single file / package", higherIsBetter: false, ratios: false },
  ],
  async run(_setup, _o, log) {
    const out = mkdtempSync(join(tmpdir(), "ferry-bench-bin-"));
    const relay = await startRelay();
    const procs: Proc[] = [];
    try {
      log("building the single-file connector");
      execFileSync(process.execPath, [join(ROOT, "scripts/build-connector-binary.mjs"), "--arch", process.arch, "--out", out], { stdio: "ignore" });
      const bare = startProc("bare-node", process.execPath, ["-e", "setInterval(() => {}, 1 << 30)"]);
      procs.push(bare);
      // A target nobody asks: at rest, the connector never dials it.
      const target = { port: 9, scheme: "http" as const };
      const fromPackage = await startConnector(relay, target);
      procs.push(fromPackage);
      const single = await startConnector(relay, target, [], join(out, `ferry-connector-linux-${process.arch}`));
      procs.push(single);
      const [bareRss, packageRss, binaryRss] = [await settledRss(bare.pid), await settledRss(fromPackage.pid), await settledRss(single.pid)];
      const mb = (n: number) => Math.round(n / 1e5) / 10;
      return { bareNodeMB: mb(bareRss), packageMB: mb(packageRss), binaryMB: mb(binaryRss), binaryVsPackage: Math.round((binaryRss / packageRss) * 100) / 100 };
    } finally {
      for (const p of procs) await p.stop();
      await relay.stop();
      rmSync(out, { recursive: true, force: true });
    }
  },
};
