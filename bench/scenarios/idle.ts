import { Agent, request } from "node:http";
import { join } from "node:path";
import { startProc, rss } from "../lib/proc.js";
import type { Scenario } from "../lib/types.js";
import { ROOT, startRelay } from "../setups.js";

/**
 * What a relay pays to hold idle tunnels and idle exchanges: a fresh relay,
 * N simulated connectors' tunnels (from one process), then N requests that the
 * simulated connectors never answer.
 */
export const idle: Scenario = {
  id: "idle",
  title: "Idle capacity",
  only: ["ferry-1"],
  standalone: true,
  method: (o) =>
    `a fresh relay; ${count(o.quick)} tunnel streams from one process (100 per connection), then ${count(o.quick)} open exchanges that are never answered; RSS growth per tunnel and per exchange`,
  seconds: (o) => (o.quick ? 6 : 12),
  headline: [
    { key: "perTunnelKB", unit: "KB/tunnel", higherIsBetter: false, ratios: false },
    { key: "perExchangeKB", unit: "KB/exchange", higherIsBetter: false, ratios: false },
  ],
  async run(_setup, o) {
    const n = count(o.quick);
    const relay = await startRelay();
    const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
    try {
      await relay.admin.createTenant({ name: "bench" });
      const { secret } = await relay.admin.createKey({ tenant: "bench" });
      const base = await settledRss(relay.proc.pid);
      const tsx = join(ROOT, "node_modules/tsx/dist/cli.mjs");
      const sim = startProc("sim-connectors", process.execPath, [tsx, join(ROOT, "bench/sim-connectors.ts"), relay.url, secret, String(n), String(n)]);
      try {
        await sim.waitLine((l) => (l.includes('"tunnels"') ? true : undefined));
        const withTunnels = await settledRss(relay.proc.pid);
        const requests = Array.from({ length: n }, () => {
          const req = request(`${relay.url}/relay/bench/idle/x`, { agent });
          req.on("error", () => {});
          req.end();
          return req;
        });
        await sim.waitLine((l) => (l.includes(`"exchanges":${n}}`) ? true : undefined));
        const withExchanges = await settledRss(relay.proc.pid);
        for (const r of requests) r.destroy();
        return {
          n,
          baseMB: Math.round(base / 1e5) / 10,
          perTunnelKB: Math.round((withTunnels - base) / n / 100) / 10,
          perExchangeKB: Math.round((withExchanges - withTunnels) / n / 100) / 10,
        };
      } finally {
        await sim.stop();
      }
    } finally {
      agent.destroy();
      await relay.proc.stop();
    }
  },
};

function count(quick: boolean): number {
  return quick ? 500 : 2000;
}

/** RSS once it stops moving (allocation settles within a second or two after a burst). */
async function settledRss(pid: number): Promise<number> {
  let last = rss(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = rss(pid);
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}
