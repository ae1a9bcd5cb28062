import { create, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { type ExchangeSummary, ExchangeSummarySchema } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";
import { closed, nextMessage, openWebSocket, startWebSocketTarget } from "../helpers/websocket-targets.js";

// Three relay nodes in this process on one real nats-server: routing, shared state and presence across nodes.
// Nodes a and b take peer links (frames between them skip NATS), c does not: both paths run in every test.
let nats: NatsServer;
let a: TestRelay;
let b: TestRelay;
let c: TestRelay;
let target: TestTarget;
let other: TestTarget;

const node = (nodeId: string, links = false) =>
  startTestRelay({
    nats: { servers: [nats.url] },
    nodeId,
    ...(links ? { peerListen: { listen: { host: "127.0.0.1", port: 0 }, advertise: { host: "127.0.0.1" } } } : {}),
  });

beforeAll(async () => {
  nats = await startNatsServer();
  [a, b, c] = await Promise.all([node("a", true), node("b", true), node("c")]);
  target = await startTestTarget("one");
  other = await startTestTarget("two");
});

afterAll(async () => {
  await Promise.all([a, b, c].map((r) => r?.close()));
  await target?.close();
  await other?.close();
  await nats?.close();
});

/** Cluster faults of a node whose reason mentions `about`. */
function faultCount(node: TestRelay, about: string): number {
  let n = 0;
  for (const f of node.relay.faults.faults().values()) if (f.source === "cluster" && f.reason.includes(about)) n += f.count;
  return n;
}

/** A tenant made on node A and a connector of it on `on`, serving target "app". */
async function tenantOn(tenant: string, on: TestRelay, extra: Parameters<typeof startTestConnector>[3] = {}): Promise<{ key: string; conn: Connector }> {
  await a.admin.createTenant({ name: tenant });
  const { secret } = await a.admin.createKey({ tenant });
  // The key was written on A; the node it connects to must have seen it.
  await eventually(() => on.relay.catalog.getKey(secret.split("_")[1]!) !== undefined, "key replicated");
  const conn = await startTestConnector(on.url, secret, { app: target.url }, extra);
  await eventually(async () => (await b.admin.listConnectors({ tenant })).connectors.length === 1, "connector visible on every node");
  return { key: secret, conn };
}

describe("cluster over NATS", () => {
  it("routes a request from any node to the node holding the connector, body and all", async () => {
    const { conn } = await tenantOn("route", c);
    try {
      for (const via of [a, b, c]) {
        const r = await request(`${via.url}/relay/route/app/echo`, { method: "POST", body: Buffer.from(`hello via ${via.relay.nodeId}`) });
        expect(r.status).toBe(200);
        expect(r.body.toString()).toBe(`hello via ${via.relay.nodeId}`);
        expect(r.headers["x-request-id"]).toBeTruthy();
      }
    } finally {
      await conn.stop();
    }
  });

  it("carries a WebSocket from one node to the connector on another, 1 MiB messages and close code included", async () => {
    const chat = await startWebSocketTarget();
    await a.admin.createTenant({ name: "wsx" });
    const { secret } = await a.admin.createKey({ tenant: "wsx" });
    await eventually(() => c.relay.catalog.getKey(secret.split("_")[1]!) !== undefined, "key replicated");
    const conn = await startTestConnector(c.url, secret, { chat: chat.url });
    try {
      await eventually(async () => (await a.admin.listConnectors({ tenant: "wsx" })).connectors.length === 1, "connector visible on A");
      const ws = await openWebSocket(`${a.url.replace(/^http/, "ws")}/relay/wsx/chat/ws/client/websocket`);
      ws.send("across nodes");
      expect((await nextMessage(ws)).data.toString()).toBe("across nodes");
      const big = randomBytes(1024 * 1024);
      ws.send(big);
      expect((await nextMessage(ws)).data.equals(big)).toBe(true);
      ws.send("close 4003 bye from the target");
      expect(await closed(ws)).toEqual({ code: 4003, reason: "bye from the target" });
      expect(chat.seen[0]!.url).toBe("/ws/client/websocket");
    } finally {
      await conn.stop();
      await chat.close();
    }
  });

  it("answers 503 at once when no node holds a connector, and 404 for a target no connector serves", async () => {
    await a.admin.createTenant({ name: "nobody" });
    await eventually(() => b.relay.catalog.getTenant("nobody") !== undefined, "tenant replicated");
    const r = await request(`${b.url}/relay/nobody/app/x`);
    expect(r.status).toBe(503);
    expect(r.headers["retry-after"]).toBe("5");
    expect(JSON.parse(r.body.toString()).error.code).toBe("no_connector");

    const { conn } = await tenantOn("half", c);
    try {
      const missing = await request(`${a.url}/relay/half/nope/x`);
      expect(missing.status).toBe(404);
      expect(JSON.parse(missing.body.toString()).error.code).toBe("target_not_found");
    } finally {
      await conn.stop();
    }
    // Gone everywhere: 503 again, from every node.
    await eventually(async () => (await request(`${a.url}/relay/half/app/x`)).status === 503, "503 once the connector left");
  });

  it("enforces a change made on node A on node C within a second", async () => {
    const { conn } = await tenantOn("policy", c);
    try {
      await a.admin.updateTenant({ tenant: { name: "policy", maxRequestBodyBytes: 10n }, updateMask: { paths: ["max_request_body_bytes"] } });
      await eventually(async () => (await request(`${c.url}/relay/policy/app/echo`, { method: "POST", body: Buffer.alloc(100) })).status === 413, "limit on C", 1_000);
      await a.admin.updateTenant({ tenant: { name: "policy", disabled: true }, updateMask: { paths: ["disabled"] } });
      // Disabled on A: C refuses its traffic and drops its tunnels.
      await eventually(async () => (await request(`${b.url}/relay/policy/app/echo`)).status === 403, "403 via B", 1_000);
      await eventually(() => c.relay.registry.tunnels("policy").length === 0, "tunnels on C closed", 1_000);
    } finally {
      await conn.stop();
    }
  });

  it("closes a tunnel on node C when its key is revoked on node A", async () => {
    const { key, conn } = await tenantOn("revoke", c);
    try {
      expect(c.relay.registry.tunnels("revoke").length).toBe(2);
      await a.admin.revokeKey({ tenant: "revoke", keyId: key.split("_")[1]! });
      await eventually(() => c.relay.registry.tunnels("revoke").length === 0, "tunnels on C closed", 1_000);
      expect((await request(`${a.url}/relay/revoke/app/x`)).status).toBe(503);
    } finally {
      await conn.stop();
    }
  });

  it("lists every node and every connector from any node, and disconnects a connector held elsewhere", async () => {
    const nodes = await b.admin.listNodes({});
    expect(nodes.nodes.map((n) => n.nodeId)).toEqual(["a", "b", "c"]);
    const { conn } = await tenantOn("seen", c);
    try {
      // Each tunnel's presence reaches every node on its own: wait for the second one too, on the nodes that list.
      await eventually(
        async () =>
          (await a.admin.listConnectors({ tenant: "seen" })).connectors[0]?.tunnels === 2 && (await b.admin.listTargets({ tenant: "seen" })).targets[0]?.tunnels === 2,
        "both tunnels seen on A and B",
      );
      const listed = await a.admin.listConnectors({ tenant: "seen" });
      expect(listed.connectors).toHaveLength(1);
      expect(listed.connectors[0]!.nodeIds).toEqual(["c"]);
      expect(listed.connectors[0]!.tunnels).toBe(2);
      expect(listed.connectors[0]!.targets).toEqual(["app"]);
      const targets = await b.admin.listTargets({ tenant: "seen" });
      expect(targets.targets.map((t) => [t.name, t.connectors, t.tunnels])).toEqual([["app", 1, 2]]);

      const kicked = await a.admin.disconnectConnector({ tenant: "seen", connectorId: listed.connectors[0]!.connectorId, reason: "test" });
      expect(kicked.tunnels).toBe(2);
      await eventually(() => c.relay.registry.tunnels("seen").length === 0 || conn.connectedTunnels < 2, "kicked on C");
    } finally {
      await conn.stop();
    }
  });

  it("shares a tenant's load between connectors held by different nodes", async () => {
    await a.admin.createTenant({ name: "shared" });
    const { secret } = await a.admin.createKey({ tenant: "shared" });
    await eventually(() => c.relay.catalog.getKey(secret.split("_")[1]!) !== undefined && a.relay.catalog.getKey(secret.split("_")[1]!) !== undefined, "key replicated");
    const one = await startTestConnector(a.url, secret, { app: target.url });
    const two = await startTestConnector(c.url, secret, { app: other.url });
    try {
      await eventually(async () => (await b.admin.listConnectors({ tenant: "shared" })).connectors.length === 2, "both visible");
      const served = new Set<string>();
      for (let i = 0; i < 40 && served.size < 2; i++) {
        const r = await request(`${b.url}/relay/shared/app/json`);
        expect(r.status).toBe(200);
        served.add(String(r.headers["x-target"]));
      }
      expect([...served].sort()).toEqual(["one", "two"]);
    } finally {
      await one.stop();
      await two.stop();
    }
  });

  it("lists audit events of every node from any node, newest first, paged", async () => {
    const { conn } = await tenantOn("audited", c);
    try {
      expect((await request(`${b.url}/relay/audited/app/json`)).status).toBe(200);
      // Made on A, the request served via B and the connector's connect on C: all visible from C.
      await eventually(async () => {
        const { events } = await c.admin.listAuditEvents({ tenant: "audited", pageSize: 100 });
        const actions = events.map((e) => e.action);
        // Both tunnels' connects, so nothing more arrives while the pages are walked.
        return actions.includes("tenant.create") && actions.includes("request") && actions.filter((x) => x === "connector.connect").length === 2;
      }, "events from every node");
      const { events } = await c.admin.listAuditEvents({ tenant: "audited", pageSize: 100 });
      const ids = events.map((e) => e.id);
      expect([...ids].sort((x, y) => (x < y ? 1 : -1))).toEqual(ids);
      expect(events.find((e) => e.action === "request")!.details).toMatchObject({ target: "app", method: "GET", path: "/json", status: 200 });

      // Paging: one event per page walks the same events in the same order (reading is audited too: those
      // admin.read events, new while we walk, are left out of the comparison).
      const changes = (list: typeof events) => list.filter((e) => e.action !== "admin.read").map((e) => e.id);
      const walked: typeof events = [];
      let pageToken = "";
      do {
        const page = await a.admin.listAuditEvents({ tenant: "audited", pageSize: 1, pageToken });
        walked.push(...page.events);
        pageToken = page.nextPageToken;
      } while (pageToken && walked.length < 100);
      expect(changes(walked)).toEqual(changes(events));
    } finally {
      await conn.stop();
    }
  });

  it("keeps both of two concurrent changes made on different nodes", async () => {
    await a.admin.createTenant({ name: "race" });
    await eventually(() => c.relay.catalog.getTenant("race") !== undefined, "tenant replicated");
    await Promise.all([
      a.admin.updateTenant({ tenant: { name: "race", displayName: "Race Inc" }, updateMask: { paths: ["display_name"] } }),
      c.admin.updateTenant({ tenant: { name: "race", description: "changed on C" }, updateMask: { paths: ["description"] } }),
      b.admin.updateTenant({ tenant: { name: "race", maxConcurrentExchanges: 7 }, updateMask: { paths: ["max_concurrent_exchanges"] } }),
    ]);
    await eventually(async () => {
      const t = (await b.admin.getTenant({ name: "race" })).tenant!;
      return t.displayName === "Race Inc" && t.description === "changed on C" && t.maxConcurrentExchanges === 7;
    }, "all three changes kept");
  });

  it("streams the exchanges every node finishes to a watcher on any one, and drops bad feed messages", async () => {
    const { conn } = await tenantOn("feed", c);
    const watching = new AbortController();
    const seen: ExchangeSummary[] = [];
    try {
      void (async () => {
        for await (const m of a.admin.watchExchanges({ tenant: "feed" }, { signal: watching.signal })) seen.push(...m.exchanges);
      })().catch(() => {});
      // The other nodes start publishing once they hear A's interest: ask until they have.
      let n = 0;
      for (const via of [b, c]) {
        await eventually(async () => {
          await request(`${via.url}/relay/feed/app/json`, { headers: { "x-request-id": `feed-${via.relay.nodeId}-${n++}` } });
          return seen.some((e) => e.nodeId === via.relay.nodeId);
        }, `an exchange from node ${via.relay.nodeId}`);
      }
      expect(seen.filter((e) => e.nodeId !== "a").every((e) => e.tenant === "feed" && e.target === "app" && e.status === 200)).toBe(true);

      // Anyone on NATS can publish there: what is not a summary of that tenant is counted and dropped.
      const raw = await connect({ servers: nats.url });
      const faultsBefore = faultCount(a, "exchange summary");
      raw.publish("ferry.feed.exchanges.feed", new Uint8Array([0xff, 0x01, 0x02]));
      raw.publish("ferry.feed.exchanges.feed", toBinary(ExchangeSummarySchema, create(ExchangeSummarySchema, { tenant: "other", nodeId: "x", method: "GET" })));
      raw.publish("ferry.feed.exchanges.feed", toBinary(ExchangeSummarySchema, create(ExchangeSummarySchema, { tenant: "feed", nodeId: "x", method: "GET", path: "/a\u001b[31m" })));
      await raw.flush();
      await raw.close();
      await eventually(() => faultCount(a, "exchange summary") >= faultsBefore + 3, "three bad summaries counted");
      expect(seen.some((e) => e.nodeId === "x")).toBe(false);
      await request(`${b.url}/relay/feed/app/json`, { headers: { "x-request-id": "feed-after" } });
      await eventually(() => seen.some((e) => e.requestId === "feed-after"), "the feed still works");
    } finally {
      watching.abort();
      await conn.stop();
    }
  });
});
