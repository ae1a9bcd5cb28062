import { connect, type KV, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// Two cluster nodes on a real nats-server. What reaches a node from the state
// bucket and the audit stream is as hostile as any peer input: records that do
// not decode are skipped (findings 5), and the shared audit trail is scoped to
// the tenant as it exists now (finding 11).
let nats: NatsServer;
let nc: NatsConnection;
let kv: KV;
let a: TestRelay;
let b: TestRelay;
let target: TestTarget;
const connectors: Connector[] = [];

const node = (nodeId: string) => startTestRelay({ nats: { servers: [nats.url] }, nodeId });

beforeAll(async () => {
  nats = await startNatsServer();
  [a, b] = await Promise.all([node("a"), node("b")]);
  target = await startTestTarget("app");
  nc = await connect({ servers: nats.url });
  kv = await nc.jetstream().views.kv("ferry_state", { bindOnly: true });
});
afterAll(async () => {
  await Promise.all(connectors.map((c) => c.stop()));
  await nc?.close();
  await Promise.all([a, b].map((r) => r?.close()));
  await target?.close();
  await nats?.close();
});

/** A tenant with a connector on node B; requests go in through node A. */
async function tenantWithConnector(name: string): Promise<void> {
  await a.admin.createTenant({ name });
  const { secret } = await a.admin.createKey({ tenant: name });
  await eventually(() => b.relay.catalog.getKey(secret.split("_")[1]!) !== undefined, "key replicated to B");
  connectors.push(await startTestConnector(b.url, secret, { app: target.url }));
  await eventually(async () => (await request(`${a.url}/relay/${name}/app/echo`, { method: "POST", body: "x" })).status === 200, "served through A");
}

describe("hostile records in the state bucket", () => {
  it("are skipped on every node: other tenants keep working, listings leave them out, a replaced tenant fails closed", async () => {
    await tenantWithConnector("steady");
    await tenantWithConnector("victim");
    const hostile: Array<[string, string]> = [
      ["tenant.garbage", "not json {"],
      ["tenant.liar", JSON.stringify({ name: "steady", createTime: "2025-01-01T00:00:00Z" })],
      ["tenant.typed", JSON.stringify({ name: "typed", maxConcurrentExchanges: "lots" })],
      ["tenant.huge", JSON.stringify({ name: "huge", maxConcurrentExchanges: 4_000_000_000 })],
      ["tenant.nulled", "null"],
      ["key.0123456789abcdef", JSON.stringify({ keyId: "other", tenant: "steady", secretSha256: "AAAA" })],
      ["admin-token.evil", JSON.stringify({ tokenId: "evil", role: "root", secretSha256: "AAAA", createTime: "2025-01-01T00:00:00Z" })],
      // A tenant that exists, replaced by bytes no node can read.
      ["tenant.victim", "\u0000\u00ff garbage"],
    ];
    for (const [key, value] of hostile) await kv.put(key, new TextEncoder().encode(value));
    const last = await kv.get("tenant.victim");
    for (const r of [a, b]) await eventually(() => r.relay.catalog.getTenant("victim") === undefined, `node ${r.relay.nodeId} saw the last put (rev ${last?.revision})`);

    for (const r of [a, b]) {
      expect((await r.admin.listTenants({})).tenants.map((t) => t.name).sort()).toEqual(["steady"]);
      expect((await r.admin.listTokens({})).tokens.map((t) => t.tokenId)).not.toContain("evil");
      expect((await r.admin.listKeys({ tenant: "steady" })).keys).toHaveLength(1);
      for (const name of ["garbage", "liar", "typed", "huge", "nulled", "victim"]) {
        const res = await request(`${r.url}/relay/${name}/app/echo`);
        expect(res.status, name).toBe(404);
        expect(JSON.parse(res.body.toString()).error.code).toBe("tenant_not_found");
      }
      expect((await request(`${r.url}/relay/steady/app/echo`, { method: "POST", body: "still here" })).body.toString()).toBe("still here");
      expect((await fetch(`${r.url}/readyz`)).status).toBe(200);
    }
    // The unreadable record counts as gone: the victim's connector was disconnected (its key no longer finds a tenant).
    await eventually(() => b.relay.registry.tunnels("victim").length === 0, "victim's tunnels closed");
    // An operator recovers by creating the tenant again; it gets a new id.
    const again = (await a.admin.createTenant({ name: "victim" })).tenant!;
    await eventually(() => b.relay.catalog.getTenant("victim")?.tenantId === again.id, "recreated tenant replicated");
  });
});

describe("the cluster's audit stream", () => {
  it("gives a recreated tenant none of the old one's events, on any node", async () => {
    await tenantWithConnector("reborn");
    const first = (await a.admin.getTenant({ name: "reborn" })).tenant!;
    await eventually(async () => (await b.admin.listAuditEvents({ tenant: "reborn", action: "request", pageSize: 10 })).events.length > 0, "request in the stream");
    const old = (await b.admin.listAuditEvents({ tenant: "reborn", pageSize: 1000 })).events;
    expect(old.every((e) => e.tenantId === first.id)).toBe(true);

    await Promise.all(connectors.splice(-1).map((c) => c.stop()));
    await a.admin.deleteTenant({ name: "reborn" });
    const second = (await a.admin.createTenant({ name: "reborn" })).tenant!;
    await eventually(() => b.relay.catalog.getTenant("reborn")?.tenantId === second.id, "new tenant replicated");
    const { secret } = await a.admin.createToken({ role: "tenant:reborn" });
    await eventually(() => b.relay.catalog.checkAdminToken(secret) !== undefined, "token replicated");
    for (const client of [createAdminClient(b.url, secret), b.admin]) {
      const list = async () => (await client.listAuditEvents({ tenant: "reborn", pageSize: 1000 })).events;
      // Node a publishes its events in batches, within 20 ms (docs/cluster.md).
      await eventually(async () => (await list()).some((e) => e.action === "tenant.create"), "the new tenant's creation in the stream");
      const events = await list();
      expect(events.every((e) => e.tenantId === second.id)).toBe(true);
      expect(events.map((e) => e.action)).not.toContain("request");
    }
  });
});
