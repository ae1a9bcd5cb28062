import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { json, request } from "../helpers/http.js";
import { ADMIN_TOKEN } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually, until } from "../helpers/wait.js";

// The admin API the way scripts use it: Connect JSON over HTTP/1.1 with a bearer token, like curl.
let relay: TestRelay;
let target: TestTarget;
const connectors: Connector[] = [];

beforeAll(async () => {
  target = await startTestTarget("app");
  relay = await startTestRelay();
});
afterAll(async () => {
  await Promise.all(connectors.map((c) => c.stop()));
  await relay?.close();
  await target?.close();
});

/** POST /ferry.admin.v1.AdminService/<method> with a JSON body, as curl would. */
async function rpc(method: string, body: unknown = {}, token = ADMIN_TOKEN): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${relay.url}/ferry.admin.v1.AdminService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function ok(method: string, body: unknown = {}): Promise<Record<string, unknown>> {
  const r = await rpc(method, body);
  expect(r, `${method} ${JSON.stringify(r.body)}`).toMatchObject({ status: 200 });
  return r.body;
}

async function connector(key: string, targets: Record<string, string> = { app: target.url }): Promise<Connector> {
  const c = await startTestConnector(relay.url, key, targets, { tunnels: 2 });
  connectors.push(c);
  return c;
}

describe("every RPC over Connect JSON", () => {
  it("manages a tenant, keys, tokens, connectors, targets, stats, audit and nodes", async () => {
    // Tenants
    const created = await ok("CreateTenant", { name: "json", settings: { displayName: "JSON Inc", maxConcurrentExchanges: 50 } });
    expect(created.tenant).toMatchObject({ name: "json", displayName: "JSON Inc", maxConcurrentExchanges: 50 });
    expect((await ok("GetTenant", { name: "json" })).tenant).toMatchObject({ name: "json", displayName: "JSON Inc" });
    const listed = (await ok("ListTenants", {})).tenants as Array<{ name: string }>;
    expect(listed.map((t) => t.name)).toContain("json");
    const updated = await ok("UpdateTenant", {
      tenant: { name: "json", description: "updated by curl", allowedTargets: ["app"] },
      updateMask: "description,allowedTargets",
    });
    expect(updated.tenant).toMatchObject({ description: "updated by curl", allowedTargets: ["app"], displayName: "JSON Inc" });

    // Keys
    const key = await ok("CreateKey", { tenant: "json", description: "site A" });
    const secret = key.secret as string;
    const keyId = (key.key as { keyId: string }).keyId;
    expect(secret).toMatch(new RegExp(`^fck_${keyId}_`));
    expect(((await ok("ListKeys", { tenant: "json" })).keys as unknown[]).length).toBe(1);
    const rotated = await ok("RotateKey", { tenant: "json", keyId, grace: "3600s" });
    expect(rotated.oldKey).toMatchObject({ keyId, replacedBy: (rotated.key as { keyId: string }).keyId });
    expect((rotated.oldKey as { expireTime?: string }).expireTime).toBeDefined();
    const again = await rpc("RotateKey", { tenant: "json", keyId });
    expect(again.body).toMatchObject({ code: "failed_precondition", message: expect.stringContaining("already rotated") });
    const revoked = await ok("RevokeKey", { tenant: "json", keyId });
    expect((revoked.key as { revokeTime?: string }).revokeTime).toBeDefined();

    // Connectors and targets
    const c = await connector(rotated.secret as string);
    const conns = (await ok("ListConnectors", { tenant: "json" })).connectors as Array<Record<string, unknown>>;
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({ tenant: "json", tunnels: 2, targets: ["app"], remoteAddresses: ["127.0.0.1"] });
    expect((conns[0]!.nodeIds as string[]).length).toBe(1);
    expect((await ok("ListTargets", { tenant: "json" })).targets).toEqual([{ name: "app", connectors: 1, tunnels: 2, allowed: true }]);

    // Traffic, then statistics
    for (let i = 0; i < 5; i++) expect((await request(`${relay.url}/relay/json/app/echo`, { method: "POST", body: "12345" })).status).toBe(200);
    const stats = (await ok("GetStats", { tenant: "json" })).entries as Array<{ target?: string; total: { requests: string; bytesIn: string } }>;
    // Proto JSON leaves out default values: the tenant total's target "" is absent.
    expect(stats.map((e) => e.target ?? "")).toEqual(["", "app"]);
    expect(Number(stats[1]!.total.requests)).toBe(5);
    expect(Number(stats[1]!.total.bytesIn)).toBe(25);

    // Disconnect: the tunnels close and the connector comes back by itself.
    const kicked = await ok("DisconnectConnector", { tenant: "json", connectorId: conns[0]!.connectorId, reason: "maintenance" });
    expect(kicked.tunnels).toBe(2);
    await c.waitConnected(2);

    // Tokens
    const token = await ok("CreateToken", { role: "viewer", description: "dashboard" });
    const tokenId = (token.token as { tokenId: string }).tokenId;
    expect(token.secret).toMatch(new RegExp(`^fat_${tokenId}_`));
    expect(((await ok("ListTokens", {})).tokens as Array<{ tokenId: string }>).map((t) => t.tokenId)).toContain(tokenId);
    expect((await rpc("ListTenants", {}, token.secret as string)).status).toBe(200);
    expect(((await ok("RevokeToken", { tokenId })).token as { revokeTime?: string }).revokeTime).toBeDefined();
    expect((await rpc("ListTenants", {}, token.secret as string)).status).toBe(401);

    // Nodes
    const nodes = (await ok("ListNodes", {})).nodes as Array<Record<string, unknown>>;
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ nodeId: relay.relay.nodeId, address: relay.url, version: expect.any(String) });

    // Audit: each change above, with who and before/after.
    const events = (await ok("ListAuditEvents", { tenant: "json", pageSize: 1000 })).events as Array<Record<string, unknown>>;
    const actions = new Set(events.map((e) => e.action));
    for (const a of ["tenant.create", "tenant.update", "key.create", "key.rotate", "key.revoke", "connector.connect", "connector.disconnect", "connector.kick", "request"]) {
      expect(actions, a).toContain(a);
    }
    const update = events.find((e) => e.action === "tenant.update")!;
    expect(update).toMatchObject({ actor: "admin:bootstrap", before: { displayName: "JSON Inc" }, after: { description: "updated by curl", allowedTargets: ["app"] } });
    expect((update.before as Record<string, unknown>).description).toBeUndefined(); // it was empty
    const summary = events.find((e) => e.action === "request")!;
    expect(summary.details).toMatchObject({ target: "app", method: "POST", path: "/echo", status: 200, bytesIn: 5 });
    expect(String(summary.actor)).toMatch(/^client:/);
    const tokenEvents = (await ok("ListAuditEvents", { action: "token." })).events as Array<{ action: string }>;
    expect(tokenEvents.map((e) => e.action)).toEqual(["token.revoke", "token.create"]);

    // Delete
    await ok("DeleteTenant", { name: "json" });
    expect((await rpc("GetTenant", { name: "json" })).body).toMatchObject({ code: "not_found" });
  });

  it("answers bad input with invalid_argument naming the field", async () => {
    expect((await rpc("CreateTenant", { name: "Not A Label" })).body).toMatchObject({ code: "invalid_argument", message: expect.stringContaining('tenant "Not A Label"') });
    await ok("CreateTenant", { name: "valid" });
    const cases: Array<[unknown, string]> = [
      [{ tenant: { name: "valid", maxConcurrentExchanges: 1_000_000 }, updateMask: "maxConcurrentExchanges" }, "max_concurrent_exchanges"],
      [{ tenant: { name: "valid", requestTimeout: "7200s" }, updateMask: "requestTimeout" }, "request_timeout"],
      [{ tenant: { name: "valid", allowedTargets: ["Bad!"] }, updateMask: "allowedTargets" }, "allowed_targets"],
      [{ tenant: { name: "valid", displayName: "x" }, updateMask: "" }, "update_mask"],
      [{ tenant: { name: "valid" }, updateMask: "name" }, 'update_mask path "name"'],
    ];
    for (const [body, field] of cases) {
      const r = await rpc("UpdateTenant", body);
      expect(r.body, JSON.stringify(body)).toMatchObject({ code: "invalid_argument", message: expect.stringContaining(field) });
    }
    expect((await rpc("CreateToken", { role: "root" })).body).toMatchObject({ code: "invalid_argument", message: expect.stringContaining('role "root"') });
    expect((await rpc("ListTenants", { pageSize: 5000 })).body).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("page_size") });
    expect((await rpc("ListAuditEvents", { pageToken: "bogus" })).body).toMatchObject({ code: "invalid_argument" });
  });

  it("refuses to revoke the last admin token", async () => {
    const r = await rpc("RevokeToken", { tokenId: "bootstrap" });
    expect(r.body).toMatchObject({ code: "failed_precondition", message: expect.stringContaining("last admin token") });
  });
});

describe("tenant settings are enforced", () => {
  it("a disabled tenant gets 403, its connectors are disconnected and refused, until it is enabled again", async () => {
    const key = await relay.tenantWithKey("switch");
    const c = await connector(key);
    expect((await request(`${relay.url}/relay/switch/app/echo`)).status).toBe(200);

    await ok("UpdateTenant", { tenant: { name: "switch", disabled: true }, updateMask: "disabled" });
    const res = await request(`${relay.url}/relay/switch/app/echo`);
    expect(res.status).toBe(403);
    expect(json<{ error: { code: string } }>(res).error.code).toBe("tenant_disabled");
    expect(relay.relay.registry.tunnels("switch")).toHaveLength(0);
    await eventually(() => c.connectedTunnels === 0, "the connector to see its tunnels closed");
    // It tries again and is refused while the tenant stays disabled.
    await eventually(async () => {
      const events = ((await ok("ListAuditEvents", { tenant: "switch", action: "connector.refused" })).events ?? []) as Array<{ details: { reason: string } }>;
      return events.some((e) => e.details.reason === "tenant disabled");
    }, "a refused reconnect");

    await ok("UpdateTenant", { tenant: { name: "switch", disabled: false }, updateMask: "disabled" });
    await c.waitConnected(2);
    expect((await request(`${relay.url}/relay/switch/app/echo`)).status).toBe(200);
  });

  it("beyond max_concurrent_exchanges: 503 with Retry-After, and room again when one finishes", async () => {
    const key = await relay.tenantWithKey("narrow");
    await connector(key);
    await ok("UpdateTenant", { tenant: { name: "narrow", maxConcurrentExchanges: 2 }, updateMask: "maxConcurrentExchanges" });
    const hung = [0, 1].map(() => {
      const ctl = new AbortController();
      const p = request(`${relay.url}/relay/narrow/app/hang`, { signal: ctl.signal }).catch(() => undefined);
      return { ctl, p };
    });
    await until(() => target.seen.filter((s) => s.url === "/hang").length >= 2);
    const third = await request(`${relay.url}/relay/narrow/app/echo`);
    expect(third.status).toBe(503);
    expect(json<{ error: { code: string } }>(third).error.code).toBe("tenant_busy");
    expect(third.headers["retry-after"]).toBe("1");
    hung[0]!.ctl.abort();
    await hung[0]!.p;
    await eventually(async () => (await request(`${relay.url}/relay/narrow/app/echo`)).status === 200, "a free slot");
    hung[1]!.ctl.abort();
  });

  it("bodies over max_request_body_bytes get 413, declared or streamed", async () => {
    const key = await relay.tenantWithKey("small");
    await connector(key);
    await ok("UpdateTenant", { tenant: { name: "small", maxRequestBodyBytes: "1000" }, updateMask: "maxRequestBodyBytes" });
    expect((await request(`${relay.url}/relay/small/app/echo`, { method: "POST", body: "x".repeat(1000) })).status).toBe(200);
    const declared = await request(`${relay.url}/relay/small/app/echo`, { method: "POST", body: "x".repeat(1001) });
    expect(declared.status).toBe(413);
    expect(json<{ error: { code: string } }>(declared).error.code).toBe("body_too_large");
    // Chunked, no Content-Length: caught while streaming, before the target answered.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${relay.url}/relay/small/app/sink`, { method: "POST" }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on("error", reject);
      req.write("y".repeat(800));
      req.end("y".repeat(800));
    });
    expect(streamed).toBe(413);
  });

  it("only allowed targets can be reached, and the tenant's request timeout applies", async () => {
    const key = await relay.tenantWithKey("picky");
    await connector(key, { app: target.url, other: target.url });
    await ok("UpdateTenant", { tenant: { name: "picky", allowedTargets: ["app"], requestTimeout: "0.3s" }, updateMask: "allowedTargets,requestTimeout" });
    const other = await request(`${relay.url}/relay/picky/other/echo`);
    expect(other.status).toBe(403);
    expect(json<{ error: { code: string } }>(other).error.code).toBe("target_not_allowed");
    expect((await ok("ListTargets", { tenant: "picky" })).targets).toEqual([
      { name: "app", connectors: 1, tunnels: 2, allowed: true },
      { name: "other", connectors: 1, tunnels: 2 }, // allowed: false is the default, left out of JSON
    ]);
    const slow = await request(`${relay.url}/relay/picky/app/slow?ms=5000`);
    expect(slow.status).toBe(504);
  });

  it("a rotated key keeps working for its grace period, then its tunnels close", async () => {
    const oldKey = await relay.tenantWithKey("rotor");
    const c = await connector(oldKey);
    const keyId = oldKey.split("_")[1]!;
    await ok("RotateKey", { tenant: "rotor", keyId, grace: "1s" });
    // Still connected and serving on the old key during the grace period.
    expect((await request(`${relay.url}/relay/rotor/app/echo`)).status).toBe(200);
    await eventually(() => relay.relay.registry.tunnels("rotor").length === 0, "the old key's tunnels to close");
    await eventually(() => c.connectedTunnels === 0, "the connector to see them closed");
    const expired = (await ok("ListAuditEvents", { tenant: "rotor", action: "connector.disconnect" })).events as Array<{ details: { reason: string } }>;
    expect(expired.some((e) => e.details.reason.includes("expired"))).toBe(true);
  });
});
