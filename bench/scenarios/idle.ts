import { Agent, type ClientRequest, request } from "node:http";
import { join } from "node:path";
import { type Proc, settledRss, startProc } from "../lib/proc.js";
import type { Figures, Scenario } from "../lib/types.js";
import { type Relay, ROOT, startCluster, startRelay, untilTunnels } from "../setups.js";

/**
 * What a relay pays to hold idle tunnels and idle exchanges: a fresh relay,
 * N simulated connectors' tunnels (from one process), then N requests that the
 * simulated connectors never answer. For ferry-2 the tunnels are on node b and
 * the requests go to node a, so each exchange is held on both nodes and across
 * NATS; the figures are the two nodes' growth added up (the split per node,
 * and nats-server's, come with them).
 */
export const idle: Scenario = {
  id: "idle",
  title: "Idle capacity",
  only: ["ferry-1", "ferry-2"],
  standalone: true,
  method: (o) =>
    `a fresh relay; ${count(o.quick)} tunnel streams from one process (100 per connection), then ${count(o.quick)} open exchanges that are never answered; RSS growth per tunnel and per exchange (ferry-2: tunnels on node b, requests to node a, both nodes' growth added up)`,
  seconds: (o) => (o.quick ? 6 : 12),
  headline: [
    { key: "perTunnelKB", unit: "KB/tunnel", higherIsBetter: false, ratios: false },
    { key: "perExchangeKB", unit: "KB/exchange", higherIsBetter: false, ratios: false },
  ],
  async run(_setup, o, _log, name) {
    return name === "ferry-2" ? clustered(count(o.quick)) : single(count(o.quick));
  },
};

async function single(n: number): Promise<Figures> {
  const relay = await startRelay();
  try {
    const secret = await benchKey(relay);
    const base = await settledRss(relay.proc.pid);
    const sim = startSim(relay.url, secret, n);
    try {
      await sim.waitLine((l) => (l.includes('"tunnels"') ? true : undefined));
      const withTunnels = await settledRss(relay.proc.pid);
      const exchanges = await openExchanges(relay.url, sim, n);
      const withExchanges = await settledRss(relay.proc.pid);
      exchanges.close();
      return {
        n,
        baseMB: Math.round(base / 1e5) / 10,
        perTunnelKB: kb(withTunnels - base, n),
        perExchangeKB: kb(withExchanges - withTunnels, n),
      };
    } finally {
      await sim.stop();
    }
  } finally {
    await relay.stop();
  }
}

async function clustered(n: number): Promise<Figures> {
  const cluster = await startCluster();
  const { a, b, nats } = cluster;
  try {
    const secret = await benchKey(b);
    const pids = { a: a.proc.pid, b: b.proc.pid, nats: nats.proc.pid };
    const all = async () => ({ a: await settledRss(pids.a), b: await settledRss(pids.b), nats: await settledRss(pids.nats) });
    const base = await all();
    const sim = startSim(b.url, secret, n);
    try {
      await sim.waitLine((l) => (l.includes('"tunnels"') ? true : undefined));
      // Node a routes (and holds presence entries) once it has seen every tunnel of node b.
      await untilTunnels(a, n, 120_000);
      const withTunnels = await all();
      const exchanges = await openExchanges(a.url, sim, n);
      const withExchanges = await all();
      exchanges.close();
      const per = (k: keyof typeof base, from: typeof base, to: typeof base) => kb(to[k] - from[k], n);
      return {
        n,
        baseMB: Math.round((base.a + base.b) / 1e5) / 10,
        perTunnelKB: kb(withTunnels.a - base.a + withTunnels.b - base.b, n),
        perExchangeKB: kb(withExchanges.a - withTunnels.a + withExchanges.b - withTunnels.b, n),
        tunnelKBa: per("a", base, withTunnels),
        tunnelKBb: per("b", base, withTunnels),
        tunnelKBnats: per("nats", base, withTunnels),
        exchangeKBa: per("a", withTunnels, withExchanges),
        exchangeKBb: per("b", withTunnels, withExchanges),
        exchangeKBnats: per("nats", withTunnels, withExchanges),
      };
    } finally {
      await sim.stop();
    }
  } finally {
    await cluster.stop();
  }
}

async function benchKey(relay: Relay): Promise<string> {
  await relay.admin.createTenant({ name: "bench" });
  return (await relay.admin.createKey({ tenant: "bench" })).secret;
}

/** Simulated connectors serving target "idle" with `n` tunnels, expecting `n` exchanges. */
function startSim(relayUrl: string, secret: string, n: number): Proc {
  const tsx = join(ROOT, "node_modules/tsx/dist/cli.mjs");
  return startProc("sim-connectors", process.execPath, [tsx, join(ROOT, "bench/sim-connectors.ts"), relayUrl, secret, String(n), String(n)]);
}

/**
 * Sends `n` requests for target "idle" to `relayUrl` and resolves once the simulated
 * connectors hold all of them; close() drops them (after the caller has measured). A
 * request answered meanwhile (say a 503: the relay had nowhere to send it) fails the
 * scenario rather than leaving it waiting for exchanges that will never come.
 */
async function openExchanges(relayUrl: string, sim: Proc, n: number): Promise<{ close(): void }> {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const requests: ClientRequest[] = [];
  const close = () => {
    for (const r of requests) r.destroy();
    agent.destroy();
  };
  const answered = new Promise<never>((_, reject) => {
    for (let i = 0; i < n; i++) {
      const req = request(`${relayUrl}/relay/bench/idle/x`, { agent }, (res) => {
        res.resume();
        reject(new Error(`an idle request was answered (HTTP ${res.statusCode}) instead of reaching a connector`));
      });
      req.on("error", () => {});
      req.end();
      requests.push(req);
    }
  });
  answered.catch(() => {});
  try {
    await Promise.race([sim.waitLine((l) => (l.includes(`"exchanges":${n}}`) ? true : undefined)), answered]);
  } catch (e) {
    close();
    throw e;
  }
  return { close };
}

function kb(bytes: number, n: number): number {
  return Math.round(bytes / n / 100) / 10;
}

function count(quick: boolean): number {
  return quick ? 500 : 2000;
}
