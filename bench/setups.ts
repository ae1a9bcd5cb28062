import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createAdminClient } from "../clients/cli/admin-client.js";
import { download } from "./lib/load.js";
import { type NatsServer, startNatsServer } from "./lib/nats-server.js";
import { childrenOf, type Proc, portLine, startProc } from "./lib/proc.js";
import { findNatsServer, freePort, natsServerNote } from "./lib/tools.js";
import { createProtections, type Protection, type Protections, PROTECTIONS } from "./protection.js";

export const ROOT = resolve(import.meta.dirname, "..");
const CLI = join(ROOT, "dist/clients/cli/main.js");
const ADMIN_TOKEN = "bench-admin-token-0123456789";

/** One way of reaching the target, ready to take load. */
export interface Setup {
  name: SetupName;
  /** Base URL: append "/1k", "/bytes?size=N", "/sink", "/ws" (or a gRPC method, for the gRPC target). */
  base: string;
  /** Processes whose CPU and memory the report shows (proxies, relays, connector, nats-server). */
  watched: Array<{ role: string; pid: number }>;
  /**
   * ferry-3: every node's base, for a client that spreads its load round-robin over them (basesOf); `base` is the
   * first. Other setups have one.
   */
  bases?: string[];
  /** Headers every request must carry: the client credential while a protection is in force; else none. */
  headers: Record<string, string>;
  /** A Ferry setup started to be measured behind access policies: switches them (see run-protected.ts). */
  protections?: Protections;
  stop(): Promise<void>;
}

export type SetupName = "direct" | "nginx" | "node-proxy" | "ferry-1" | "ferry-2" | "ferry-3";
export const SETUPS: SetupName[] = ["direct", "nginx", "node-proxy", "ferry-1", "ferry-2", "ferry-3"];

/** The base URLs a round-robin client spreads its load over: ferry-3's three nodes, or the one base. */
export const basesOf = (setup: Setup): string[] => setup.bases ?? [setup.base];
/** The setups a scenario can also measure behind an access policy (its `protections`). */
export const PROTECTABLE: SetupName[] = ["ferry-1", "ferry-2"];

/** A row of a scenario's results: a setup, or a Ferry setup behind an access policy ("ferry-1+jwt"). */
export type RowName = SetupName | `${SetupName}+${Protection}`;

export function rowName(setup: SetupName, protection?: Protection): RowName {
  return protection ? `${setup}+${protection}` : setup;
}

/** Every row in report order: each setup, then that setup behind each protection. */
export const ROWS: RowName[] = SETUPS.flatMap((s) => [
  s,
  ...(PROTECTABLE.includes(s) ? (Object.keys(PROTECTIONS) as Protection[]).map((p) => rowName(s, p)) : []),
]);

/** Setups that cannot run on this machine, with the reason the report prints instead of a number. */
export function cannotRun(name: SetupName): string | undefined {
  return name === "ferry-2" || name === "ferry-3" ? natsServerNote() : undefined;
}

/** A target server the setups forward to; "h2c" speaks cleartext HTTP/2 only (the connector's h2c:// targets). */
export interface Target {
  port: number;
  scheme: "http" | "h2c";
  proc: Proc;
}

/** The HTTP/1.1 target server every setup forwards to (with a WebSocket echo at /ws). */
export async function startTarget(): Promise<Target> {
  const proc = startProc("target", process.execPath, [join(ROOT, "bench/target.mjs")]);
  return { port: await proc.waitLine(portLine), scheme: "http", proc };
}

/** The gRPC target: EchoService on h2c (TypeScript, so through tsx like the simulated connectors). */
export async function startGrpcTarget(): Promise<Target> {
  const tsx = join(ROOT, "node_modules/tsx/dist/cli.mjs");
  const proc = startProc("grpc-target", process.execPath, [tsx, join(ROOT, "bench/grpc-target.ts")]);
  return { port: await proc.waitLine(portLine), scheme: "h2c", proc };
}

/** Starts setup `name`; `protectable` (ferry-1 and ferry-2 only): with `protections` to put its target behind access policies. */
export async function startSetup(name: SetupName, target: Pick<Target, "port" | "scheme">, protectable = false): Promise<Setup> {
  // The proxies here are HTTP/1.1 proxies; a gRPC scenario leaves them out (`only`).
  if (target.scheme === "h2c" && (name === "nginx" || name === "node-proxy")) throw new Error(`${name} is not set up for an h2c target`);
  if (protectable && !PROTECTABLE.includes(name)) throw new Error(`${name} has no access policy to switch`);
  // A policy is checked in force with GETs of /1k, which only the HTTP target has.
  if (protectable && target.scheme !== "http") throw new Error("access policies are set up for the HTTP target only");
  switch (name) {
    case "direct":
      return { name, base: `http://127.0.0.1:${target.port}`, watched: [], headers: {}, stop: async () => {} };
    case "node-proxy": {
      const proc = startProc("node-proxy", process.execPath, [join(ROOT, "bench/node-proxy.mjs"), String(target.port)]);
      const port = await proc.waitLine(portLine);
      return { name, base: `http://127.0.0.1:${port}`, watched: [{ role: "node-proxy", pid: proc.pid }], headers: {}, stop: proc.stop };
    }
    case "nginx":
      return startNginx(target.port);
    case "ferry-1":
      return startFerry(target, [], protectable);
    case "ferry-2":
      return startFerryCluster(target, protectable);
    case "ferry-3":
      return startFerryCluster3(target);
  }
}

/** Debian's nginx as a keep-alive reverse proxy, one worker (one core, like one Node process), in a temp prefix. */
async function startNginx(targetPort: number): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-bench-nginx-"));
  for (const d of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, d));
  const port = await freePort();
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream target {
    server 127.0.0.1:${targetPort};
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://target;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_read_timeout 300s;
    }
    # WebSockets: Upgrade and Connection are hop-by-hop, so nginx passes them on only when told to.
    # A location of its own keeps keep-alive upstream (Connection "") for every other request.
    location = /ws {
      proxy_pass http://target;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`,
  );
  const proc = startProc("nginx", "nginx", ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log"), "-g", "daemon off;"]);
  await waitForPort(port, proc);
  // The worker does the proxying; its CPU and memory count only once it exists.
  while (childrenOf(proc.pid).length === 0) await new Promise((r) => setImmediate(r));
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { name: "nginx", base: `http://127.0.0.1:${port}`, watched: [{ role: "nginx", pid: proc.pid }], headers: {}, stop };
}

/** One relay node and one connector (default settings: two tunnels), tenant "bench", target "app". */
export async function startFerry(target: Pick<Target, "port" | "scheme">, extraConnectorArgs: string[] = [], protectable = false): Promise<Setup> {
  const relay = await startRelay();
  let connector: Proc | undefined;
  try {
    connector = await startConnector(relay, target, extraConnectorArgs);
    const base = `${relay.url}/relay/bench/app`;
    const protections = protectable ? createProtections(relay.admin, `${base}/1k`) : undefined;
    return {
      name: "ferry-1",
      base,
      watched: [
        { role: "relay", pid: relay.proc.pid },
        { role: "connector", pid: connector.pid },
      ],
      headers: {},
      ...(protections ? { protections } : {}),
      stop: async () => {
        await connector!.stop();
        await relay.stop();
        await protections?.stop();
      },
    };
  } catch (e) {
    await connector?.stop();
    await relay.stop();
    throw e;
  }
}

/**
 * Two relay nodes ("a" and "b") clustered over one nats-server (JetStream, one replica),
 * the connector on node b only and the load on node a: every request goes
 * a → NATS → b → tunnel → connector → target. Tenant, key, connector and target as in ferry-1.
 */
export async function startFerryCluster(target: Pick<Target, "port" | "scheme">, protectable = false): Promise<Setup> {
  const cluster = await startCluster();
  const { a, b, nats } = cluster;
  let connector: Proc | undefined;
  // Set on node b, in force on node a (where the check runs): policies and keys cross the KV bucket.
  const protections = protectable ? createProtections(b.admin, `${a.url}/relay/bench/app/1k`) : undefined;
  const stop = async () => {
    await connector?.stop();
    await cluster.stop();
    await protections?.stop();
  };
  try {
    // Tenant and key are made on node b, so the node the connector dials knows the key at once.
    connector = await startConnector(b, target);
    // Node a routes once it knows where the connector is (presence over NATS): poll until a
    // request through it comes back whole. The gRPC target has no /1k: there, until node a
    // lists both tunnels.
    if (target.scheme === "http") await untilOk(`${a.url}/relay/bench/app/1k`, 30_000);
    else await untilTunnels(a, 2, 30_000);
    return {
      name: "ferry-2",
      base: `${a.url}/relay/bench/app`,
      headers: {},
      ...(protections ? { protections } : {}),
      watched: [
        { role: "relay-a", pid: a.proc.pid },
        { role: "relay-b", pid: b.proc.pid },
        { role: "connector", pid: connector.pid },
        { role: "nats-server", pid: nats.proc.pid },
      ],
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A nats-server (JetStream) and relay nodes named `nodeIds` joined to it; stop() stops them all. */
export async function startCluster(nodeIds = ["a", "b"]): Promise<{ nats: NatsServer; nodes: Relay[]; a: Relay; b: Relay; stop(): Promise<void> }> {
  const bin = findNatsServer();
  if (!bin) throw new Error(natsServerNote());
  const nats = await startNatsServer(bin);
  const relays: Relay[] = [];
  const stop = async () => {
    await Promise.all(relays.map((r) => r.stop()));
    await nats.stop();
  };
  try {
    // The nodes start together, as a cluster's nodes would; all bootstrap the same admin token.
    const started = await Promise.allSettled(
      nodeIds.map((nodeId) => startRelay({ nats: nats.url, nodeId, peers: nodeIds.filter((n) => n !== nodeId) })),
    );
    for (const r of started) if (r.status === "fulfilled") relays.push(r.value);
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    // Until then a node's opens and frames take NATS: measured from the first request, the links carry them.
    await untilSettled(Promise.all(relays.map((r) => r.linksUp)), 30_000, "the peer links did not come up");
    return { nats, nodes: relays, a: relays[0]!, b: relays[1]!, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Three relay nodes ("a", "b", "c") on one nats-server, the connector on node c only, and the load spread over all
 * three (basesOf): what a cluster behind a load balancer gets, two thirds of the requests crossing nodes.
 */
async function startFerryCluster3(target: Pick<Target, "port" | "scheme">): Promise<Setup> {
  const cluster = await startCluster(["a", "b", "c"]);
  const [a, b, c] = cluster.nodes as [Relay, Relay, Relay];
  let connector: Proc | undefined;
  const stop = async () => {
    await connector?.stop();
    await cluster.stop();
  };
  try {
    connector = await startConnector(c, target);
    for (const node of [a, b]) await untilOk(`${node.url}/relay/bench/app/1k`, 30_000);
    const bases = [a, b, c].map((n) => `${n.url}/relay/bench/app`);
    return {
      name: "ferry-3",
      base: bases[0]!,
      bases,
      headers: {},
      watched: [
        { role: "relay-a", pid: a.proc.pid },
        { role: "relay-b", pid: b.proc.pid },
        { role: "relay-c", pid: c.proc.pid },
        { role: "connector", pid: connector.pid },
        { role: "nats-server", pid: cluster.nats.proc.pid },
      ],
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Tenant "bench" (made on first use), a key and a connector on `relay` serving target "app"; resolves once
 * the relay has logged every tunnel of it (default settings: two tunnels). `binary`: the single-file
 * connector (npm run build:connector-binary) to run instead of `node dist/clients/cli/main.js`.
 */
export async function startConnector(relay: Relay, target: Pick<Target, "port" | "scheme">, extraArgs: string[] = [], binary?: string): Promise<Proc> {
  if (!(await relay.admin.listTenants({})).tenants.some((t) => t.name === "bench")) await relay.admin.createTenant({ name: "bench" });
  const { secret } = await relay.admin.createKey({ tenant: "bench" });
  // FERRY_BENCH_CONNECTOR_NODE_ARGS: node flags for the connector, as FERRY_BENCH_RELAY_NODE_ARGS for the relay.
  const nodeArgs = (process.env.FERRY_BENCH_CONNECTOR_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const args = ["connector", "--relay", relay.url, "--target", `app=${target.scheme}://127.0.0.1:${target.port}`, "--max-concurrent", "2048", "--log-level", "warn", ...extraArgs];
  const connector = startProc("connector", binary ?? process.execPath, binary ? args : [...nodeArgs, CLI, ...args], {
    env: { ...process.env, FERRY_LOG_FORMAT: "json", FERRY_CONNECTOR_KEY: secret },
  });
  let connected = 0;
  const tunnels = Number(extraArgs[extraArgs.indexOf("--tunnels") + 1]) || 2;
  // Warn level hides "tunnel connected"; the relay's audit lines say when each tunnel is up.
  const up = relay.proc.waitLine((l) => (l.includes('"connector.connect"') && ++connected >= tunnels ? true : undefined));
  // Never resolves; rejects (with the connector's last lines) if the connector exits, now or when stopped later.
  const died = connector.waitLine<never>(() => undefined);
  died.catch(() => {});
  try {
    await Promise.race([up, died]);
  } catch (e) {
    await connector.stop();
    throw e;
  }
  return connector;
}

/** `p`, or an Error saying `what` after `timeoutMs`. */
async function untilSettled<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${timeoutMs / 1000} s`)), timeoutMs)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once a GET of `url` answers 200 with its whole body; polls until then. */
async function untilOk(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await download(url);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs / 1000} s: ${(e as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once `relay` lists `n` tunnels for tenant "bench" (a clustered node: those of other nodes too). */
export async function untilTunnels(relay: Relay, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { targets } = await relay.admin.listTargets({ tenant: "bench" });
    if (targets.reduce((sum, t) => sum + t.tunnels, 0) >= n) return;
    if (Date.now() > deadline) throw new Error(`${relay.url} does not list ${n} tunnels after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Relay {
  url: string;
  proc: Proc;
  admin: ReturnType<typeof createAdminClient>;
  /** A cluster node: resolves once it has logged a peer link up to each of its peers (rejects if it exits first). */
  linksUp: Promise<unknown>;
  /** Stops the relay and removes its data directory. */
  stop(): Promise<void>;
}

/**
 * A relay on a port of its own, in a fresh data directory, logging at info (audit lines
 * only at this volume). With `nats` it joins that cluster as `nodeId`, with no drain delay
 * on stop (nothing balances load in front of it here).
 */
export async function startRelay(cluster?: { nats: string; nodeId: string; peers: string[] }): Promise<Relay> {
  const dataDir = mkdtempSync(join(tmpdir(), "ferry-bench-relay-"));
  // FERRY_BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": node flags for the relay (profiling).
  const nodeArgs = (process.env.FERRY_BENCH_RELAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const args = [...nodeArgs, CLI, "relay", "--listen", "127.0.0.1:0", "--data", dataDir];
  // All load comes from 127.0.0.1 and one tenant, thousands of connections and exchanges at once in the idle
  // scenarios: limits per address, per key and per tenant are lifted (they are still checked on every request, so
  // their cost is measured), or the scenarios would measure refusals.
  // The idle scenario also opens thousands of tunnels with one key, as streams of one HTTP/2 connection.
  args.push("--limit", "maxConnectionsPerIp=20000", "--limit", "tenantMaxExchanges=100000", "--limit", "clientSharePercent=100");
  args.push("--limit", "maxTunnelsPerKey=100000", "--limit", "maxTunnelsPerTenant=100000", "--limit", "maxStreamsPerConnection=10000");
  // Peer links: nodes send exchange frames to each other over HTTP/2, NATS carries the rest (docs/cluster.md).
  if (cluster) args.push("--nats", cluster.nats, "--node-id", cluster.nodeId, "--drain-delay", "0s", "--peer-listen", "127.0.0.1:0");
  const proc = startProc(cluster ? `relay-${cluster.nodeId}` : "relay", process.execPath, args, {
    env: { ...process.env, FERRY_ADMIN_TOKEN: ADMIN_TOKEN, FERRY_LOG_FORMAT: "json" },
  });
  // Watched from the first line: a link can come up before "relay listening" is read.
  const linked = new Set<string>();
  const linksUp: Promise<unknown> = cluster
    ? proc.waitLine((l) => {
        if (l.includes('"peer link up"')) linked.add((JSON.parse(l) as { peer: string }).peer);
        return cluster.peers.every((p) => linked.has(p)) ? true : undefined;
      })
    : Promise.resolve();
  linksUp.catch(() => {}); // awaited (and its failure seen) by startCluster
  const stop = async () => {
    await proc.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const url = await proc.waitLine((l) => (l.includes('"relay listening"') ? (JSON.parse(l) as { url: string }).url : undefined));
    return { url, proc, admin: createAdminClient(url, ADMIN_TOKEN), linksUp, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Resolves once something accepts connections on the port (nginx cannot tell us when it is ready). */
async function waitForPort(port: number, proc: Proc): Promise<void> {
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error("nginx exited at start (see its error.log)");
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setImmediate(r));
  }
}
