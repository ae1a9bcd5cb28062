import { readFileSync } from "node:fs";
import { type IncomingMessage, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AdminClient, createAdminClient } from "../../clients/cli/admin-client.js";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { download, request, upload } from "../helpers/http.js";
import { type NatsCluster, type NatsServer, startNatsCluster, startNatsServer } from "../helpers/nats-server.js";
import {
  ADMIN_TOKEN,
  type FerryProcess,
  type RelayProcess,
  rssGrowthDuring,
  spawnFerry,
  startConnectorProcess,
  startRelayProcess,
  tempDir,
} from "../helpers/processes.js";
import { patternSha256, startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// Real relay processes on real nats-servers: what happens when nodes or NATS servers die or restart.
const MB = 1024 * 1024;
/** A node that buffered a 200 MB body would grow by at least that much; streaming costs windows and buffers. */
const BODY_GROWTH_LIMIT = 120 * MB;
let target: TestTarget;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  target = await startTestTarget();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
afterAll(async () => {
  await target?.close();
});

/** Frames between nodes over peer links instead of NATS (docs/cluster.md). */
const PEER_LINKS = ["--peer-listen", "127.0.0.1:0"];

async function relayNode(nats: string, nodeId: string, extra: { port?: number; args?: string[] } = {}): Promise<RelayProcess> {
  const r = await startRelayProcess({ port: extra.port, args: ["--nats", nats, "--node-id", nodeId, "--drain-delay", "100ms", ...(extra.args ?? [])] });
  cleanups.push(() => r.stop("SIGKILL"));
  return r;
}

function connector(relays: string[], key: string, tunnels: number, env: Record<string, string> = {}): FerryProcess {
  const c = startConnectorProcess(relays, key, { app: target.url }, { args: ["--tunnels", String(tunnels)], env });
  cleanups.push(() => c.stop("SIGKILL"));
  return c;
}

async function tenantKey(admin: AdminClient, tenant: string): Promise<string> {
  await admin.createTenant({ name: tenant });
  return (await admin.createKey({ tenant })).secret;
}

/** How many live tunnels the cluster lists for a tenant (any node answers for all). */
async function tunnelsOf(admin: AdminClient, tenant: string): Promise<number> {
  const { connectors } = await admin.listConnectors({ tenant });
  return connectors.reduce((n, c) => n + c.tunnels, 0);
}

/**
 * What a load balancer in front of the nodes does: it sends requests only to nodes whose /readyz says ready
 * (checked continuously, as HAProxy or nginx health checks would), and a refused connection was never sent,
 * so it goes to the next node. Each request gets a fresh connection.
 */
function loadBalancer(urls: string[], opts: { ca?: Buffer; checkEveryMs: number }) {
  const ca = opts.ca;
  const ready = new Set<string>(urls);
  let checking = true;
  const send = ca ? httpsRequest : httpRequest;
  const get = (url: string, onFailedConnect?: () => void): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      let connected = false;
      const req = send(url, { agent: false, headers: { connection: "close" }, ...(ca ? { ca } : {}) }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
        res.on("error", reject);
      });
      req.on("socket", (socket) => socket.once(ca ? "secureConnect" : "connect", () => (connected = true)));
      req.on("error", (err) => (!connected && onFailedConnect ? onFailedConnect() : reject(err)));
      // A lost request fails the test with its number instead of hanging it.
      req.setTimeout(20_000, () => req.destroy(new Error("no answer within 20 s")));
      req.end();
    });
  const check = async () => {
    while (checking) {
      await Promise.all(
        urls.map(async (u) => {
          const ok = await get(`${u}/readyz`).then((r) => r.status === 200, () => false);
          if (ok) ready.add(u);
          else ready.delete(u);
        }),
      );
      await new Promise((r) => setTimeout(r, opts.checkEveryMs));
    }
  };
  const checker = check();
  let next = 0;
  const route = (path: string, tries = 0): Promise<{ status: number; body: string; node: string }> => {
    const candidates = urls.filter((u) => ready.has(u));
    if (candidates.length === 0 || tries > 50) return Promise.reject(new Error("no node is ready"));
    const node = candidates[next++ % candidates.length]!;
    // A connection that could not be made (a node closing its port) carried no request: try the next node.
    return new Promise((resolve, reject) => {
      get(`${node}${path}`, () => {
        ready.delete(node);
        setImmediate(() => route(path, tries + 1).then(resolve, reject));
      }).then((r) => resolve({ ...r, node }), reject);
    });
  };
  return {
    get: route,
    async close() {
      checking = false;
      await checker;
    },
  };
}

describe("cluster failures", () => {
  it("reports not-ready until NATS is up, then serves", async () => {
    const nats: NatsServer = await startNatsServer();
    cleanups.push(() => nats.close());
    await nats.stop(); // keeps its port: the relay is pointed at a server that is not there yet
    const relay = spawnFerry(["relay", "--listen", "127.0.0.1:0", "--data", tempDir(), "--nats", nats.url, "--node-id", "early"], {
      FERRY_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    cleanups.push(() => relay.stop("SIGKILL"));
    const url = String((await relay.waitFor((l) => l.msg === "waiting for NATS")).url);
    const early = await request(`${url}/readyz`);
    expect(early.status).toBe(503);
    expect(JSON.parse(early.body.toString())).toEqual({ status: "not ready", reason: "waiting for NATS" });
    expect((await request(`${url}/healthz`)).status).toBe(200);
    const refused = await request(`${url}/relay/acme/app/x`);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body.toString()).error.code).toBe("starting");

    await nats.restart();
    await relay.waitFor((l) => l.msg === "relay listening");
    expect((await request(`${url}/readyz`)).status).toBe(200);
    const admin = createAdminClient(url, ADMIN_TOKEN);
    expect((await admin.listNodes({})).nodes.map((n) => n.nodeId)).toEqual(["early"]);
  });

  it("passes NATS credentials through, and stops with a clear message when NATS refuses them", async () => {
    const nats = await startNatsServer({ user: "ferry", password: "s3cret-nats-pass" });
    cleanups.push(() => nats.close());
    const good = await startRelayProcess({ args: ["--nats", nats.url, "--nats-user", "ferry", "--node-id", "auth"], env: { FERRY_NATS_PASSWORD: "s3cret-nats-pass" } });
    cleanups.push(() => good.stop("SIGKILL"));
    expect((await request(`${good.url}/readyz`)).status).toBe(200);

    const bad = spawnFerry(["relay", "--listen", "127.0.0.1:0", "--data", tempDir(), "--nats", nats.url, "--nats-user", "ferry"], {
      FERRY_ADMIN_TOKEN: ADMIN_TOKEN,
      FERRY_NATS_PASSWORD: "wrong-password",
    });
    cleanups.push(() => bad.stop("SIGKILL"));
    expect((await bad.exited).code).toBe(1);
    expect(bad.stderr.join("\n")).toMatch(/NATS refused this node's credentials .*--nats-user\/--nats-password/);
    // The password is never printed, right or wrong.
    expect([...bad.stderr, ...bad.lines.map((l) => JSON.stringify(l))].join("\n")).not.toMatch(/wrong-password|s3cret/);
    expect(good.lines.map((l) => JSON.stringify(l)).join("\n")).not.toMatch(/s3cret/);
  });

  it("moves 200 MB each way between nodes intact, with memory bounded on both", async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.close());
    const a = await relayNode(nats.url, "a", { args: PEER_LINKS });
    const c = await relayNode(nats.url, "c", { args: PEER_LINKS });
    const key = await tenantKey(createAdminClient(a.url, ADMIN_TOKEN), "bulk");
    const conn = connector([c.url], key, 1);
    await conn.waitForCount("tunnel connected", 1);
    const base = `${a.url}/relay/bulk/app`;
    const size = 200 * MB;
    const growth = await rssGrowthDuring([a, c], async () => {
      expect(await download(`${base}/bytes?size=${size}`)).toEqual({ status: 200, bytes: size, sha256: patternSha256(size) });
      expect(await upload(`${base}/sink`, size)).toEqual({ bytes: size, sha256: patternSha256(size) });
    });
    // Nothing buffers a body: the ingress and the egress node alike grow by far less than 200 MB.
    for (const g of growth) expect(g).toBeLessThan(BODY_GROWTH_LIMIT);

    // Across nodes too, a client that stops reading holds back only its own exchange.
    const stalled = await new Promise<IncomingMessage>((resolve, reject) =>
      httpRequest(`${base}/stall?size=${1024 * MB}`, resolve).on("error", reject).end(),
    );
    stalled.pause();
    expect(await download(`${base}/bytes?size=${50 * MB}`)).toEqual({ status: 200, bytes: 50 * MB, sha256: patternSha256(50 * MB) });
    expect(target.stalledBytesWritten()).toBeGreaterThan(0);
    expect(target.stalledBytesWritten()).toBeLessThan(64 * MB);
    const aborted = target.nextAbort();
    stalled.destroy();
    expect(await aborted).toBe(`/stall?size=${1024 * MB}`);
  });

  it("kill -9 of the node holding the connector fails only its exchanges, clearly and promptly; the connector moves", async () => {
    const nats = await startNatsServer();
    cleanups.push(() => nats.close());
    // a and c over a peer link (the link dies with c), a and b over NATS (where the connector goes next).
    const a = await relayNode(nats.url, "a", { args: ["--request-timeout", "60s", ...PEER_LINKS] });
    const b = await relayNode(nats.url, "b");
    const c = await relayNode(nats.url, "c", { args: PEER_LINKS });
    const admin = createAdminClient(a.url, ADMIN_TOKEN);
    const key = await tenantKey(admin, "crash");
    // Only C holds the connector at first; B is its second address.
    const conn = connector([c.url, b.url], key, 1);
    await conn.waitForCount("tunnel connected", 1);
    await eventually(async () => (await tunnelsOf(admin, "crash")) === 1, "tunnel listed");

    const seenBefore = target.seen.length;
    const inFlight = Array.from({ length: 10 }, (_, i) => request(`${a.url}/relay/crash/app/slow?ms=20000&i=${i}`));
    await eventually(() => target.seen.length >= seenBefore + 10, "requests reached the target");
    const killedAt = Date.now();
    await c.stop("SIGKILL");
    const replies = await Promise.all(inFlight);
    const failedWithin = Date.now() - killedAt;
    // Every exchange C carried fails with a clear 502, long before the 20 s answer or the 60 s deadline.
    for (const r of replies) {
      expect(r.status).toBe(502);
      expect(JSON.parse(r.body.toString()).error.message).toMatch(/relay node c|stopped answering|tunnel closed/);
      expect(r.body.toString()).not.toMatch(/^\s*$/);
    }
    expect(failedWithin).toBeLessThan(15_000);
    // The connector comes back through its other address, and traffic flows again.
    await conn.waitForCount("tunnel connected", 2);
    await eventually(async () => (await request(`${a.url}/relay/crash/app/json`)).status === 200, "served again via B");
    if (process.env.FIGURES) console.log(`FIGURE kill9: failed within ${failedWithin} ms, served again after ${Date.now() - killedAt} ms`);
  });

  it("survives the loss of one of three NATS servers", async () => {
    const cluster: NatsCluster = await startNatsCluster(3);
    cleanups.push(() => cluster.stop());
    // Both at once on a brand-new cluster: they race to create the buckets and the bootstrap token.
    const [a, c] = await Promise.all([relayNode(cluster.url, "a"), relayNode(cluster.url, "c")]);
    const admin = createAdminClient(a.url, ADMIN_TOKEN);
    const key = await eventuallyValue(() => tenantKey(admin, "natsdown"));
    const conn = connector([c.url], key, 2);
    await conn.waitForCount("tunnel connected", 2);
    expect((await request(`${a.url}/relay/natsdown/app/json`)).status).toBe(200);

    // Kill the NATS server node A is connected to, so A itself must reconnect.
    const holder = await serverOf(cluster, "ferry-relay-a");
    await holder.kill();
    const killedAt = Date.now();
    await eventually(async () => (await request(`${a.url}/relay/natsdown/app/json`).catch(() => undefined))?.status === 200, "routing again", 15_000);
    const recoveredMs = Date.now() - killedAt;
    expect(recoveredMs).toBeLessThan(15_000);
    if (process.env.FIGURES) console.log(`FIGURE nats-loss: routing back after ${recoveredMs} ms`);
    // Shared state still takes writes (R3: two of three servers are a majority).
    await eventually(async () => {
      try {
        await admin.createTenant({ name: "after-nats-loss" });
        return true;
      } catch {
        return false;
      }
    }, "state writable", 20_000);
    if (process.env.FIGURES) console.log(`FIGURE nats-loss: state writable after ${Date.now() - killedAt} ms`);
    const onC = createAdminClient(c.url, ADMIN_TOKEN);
    await eventually(async () => (await onC.listTenants({})).tenants.some((t) => t.name === "after-nats-loss"), "seen on C", 15_000);
    if (process.env.FIGURES) console.log(`FIGURE nats-loss: write seen on C after ${Date.now() - killedAt} ms`);
  });

  it("a rolling restart of three nodes under steady load loses no request", async () => {
    await rollingRestart({ path: "/json", clients: 8, checkEveryMs: 20, drainDelay: "100ms" });
  });

  it("loses none either over TLS with HTTP/1.1 clients, slower requests and a slower load balancer", async () => {
    // Light load: a node is idle now and then, and the balancer keeps sending to it for a while after SIGTERM.
    await rollingRestart({ path: "/slow?ms=500", clients: 2, checkEveryMs: 600, drainDelay: "800ms", pki: makeTestPki() });
  });
});

/**
 * Restarts three relay nodes one after the other (SIGTERM, then the same port again) while eight clients send
 * requests through a health-checking load balancer, and expects every request to succeed.
 */
async function rollingRestart(opts: { path: string; clients: number; checkEveryMs: number; drainDelay: string; pki?: TestPki }): Promise<void> {
  const nats = await startNatsServer();
  cleanups.push(() => nats.close());
  // Over TLS the frames take NATS, without it peer links: a restart loses nothing on either path.
  const args = ["--drain-delay", opts.drainDelay, ...(opts.pki ? ["--tls-cert", opts.pki.cert, "--tls-key", opts.pki.key] : PEER_LINKS)];
  const ca = opts.pki ? readFileSync(opts.pki.ca) : undefined;
  const start = (i: number, port?: number) => relayNode(nats.url, `r${i + 1}`, { port, args });
  const nodes = [await start(0), await start(1), await start(2)];
  const urls = nodes.map((n) => n.url);
  const ports = urls.map((u) => Number(new URL(u).port));
  const adminOf = (url: string) => createAdminClient(url, ADMIN_TOKEN, { ca });
  const key = await tenantKey(adminOf(urls[0]!), "rolling");
  const conn = connector(urls, key, 3, opts.pki ? { NODE_EXTRA_CA_CERTS: opts.pki.ca } : {});
  await conn.waitForCount("tunnel connected", 3);

  const lb = loadBalancer(urls, { ca, checkEveryMs: opts.checkEveryMs });
  let sent = 0;
  let answered = 0;
  const failures: string[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      const i = sent++;
      try {
        const r = await lb.get(`/relay/rolling/app${opts.path}${opts.path.includes("?") ? "&" : "?"}i=${i}`);
        if (r.status === 200) answered++;
        else failures.push(`request ${i} via ${r.node}: ${r.status} ${r.body.slice(0, 200)}`);
      } catch (err) {
        failures.push(`request ${i}: ${(err as Error).message}`);
        // "No node is ready" comes without any I/O: a loop of those would starve the balancer's checks.
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const workers = Array.from({ length: opts.clients }, () => worker());

  for (let i = 0; i < nodes.length; i++) {
    const before = answered;
    await eventually(() => answered > before + 10, "load flowing");
    const stopped = await nodes[i]!.stop("SIGTERM");
    expect(stopped.code).toBe(0);
    nodes[i] = await start(i, ports[i]);
    // The connector keeps three tunnels open somewhere in the cluster throughout.
    await eventually(async () => (await tunnelsOf(adminOf(nodes[i]!.url), "rolling")) === 3, "tunnels back", 15_000);
  }
  const before = answered;
  await eventually(() => answered > before + 10, "load after the restarts");
  running = false;
  await Promise.all(workers);
  await lb.close();
  if (failures.length > 0) for (const n of nodes) console.log(n.lines.filter((l) => (l.level ?? 0) >= 40).map((l) => JSON.stringify(l)).join("\n"));
  expect(failures).toEqual([]);
  expect(answered).toBe(sent);
  // The connector's tunnels did not all pile up on one node.
  const { connectors } = await adminOf(nodes[0]!.url).listConnectors({ tenant: "rolling" });
  expect(connectors[0]!.nodeIds.length).toBeGreaterThanOrEqual(2);
  if (process.env.FIGURES) console.log(`FIGURE rolling ${opts.pki ? "tls" : "cleartext"}: ${sent} requests, ${failures.length} failed`);
}

/** The NATS server a client (by connection name) is connected to, from the servers' monitoring endpoints. */
async function serverOf(cluster: NatsCluster, client: string): Promise<NatsServer> {
  for (const s of cluster.servers) {
    const connz = (await (await fetch(`${s.monitorUrl}/connz`)).json()) as { connections?: Array<{ name?: string }> };
    if (connz.connections?.some((c) => c.name === client)) return s;
  }
  throw new Error(`no NATS server has a client named ${client}`);
}

/** Retries a call that JetStream may refuse while it elects its leaders. */
async function eventuallyValue<T>(fn: () => Promise<T>): Promise<T> {
  let last: unknown;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw last;
}
