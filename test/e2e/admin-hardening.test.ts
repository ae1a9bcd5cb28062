import { constants as h2 } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import { h2c, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { eventually } from "../helpers/wait.js";

// The ways a client, a tenant or a racing operator could bend the relay's books, and why they cannot.
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

async function tenantWithConnector(name: string, settings: Record<string, unknown> = {}): Promise<void> {
  await relay.admin.createTenant({ name, settings });
  const { secret } = await relay.admin.createKey({ tenant: name });
  connectors.push(await startTestConnector(relay.url, secret, { app: target.url }));
}

async function metricsText(): Promise<string> {
  const res = await fetch(`${relay.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  return res.text();
}

async function inFlight(): Promise<number> {
  const { nodes } = await relay.admin.listNodes({});
  return nodes.reduce((sum, n) => sum + n.inFlight, 0);
}

describe("a client that resets its HTTP/2 stream together with the request", () => {
  it("holds no exchange and no concurrency slot", async () => {
    // A long timeout, so a leaked exchange would still be holding its slot when we look.
    await tenantWithConnector("resets", { maxConcurrentExchanges: 2, requestTimeout: { seconds: 600n } });
    const session = h2c(relay.url);
    await new Promise((resolve) => session.once("connect", resolve));
    try {
      for (let i = 0; i < 20; i++) {
        const stream = session.request({ ":method": "GET", ":path": "/relay/resets/app/hang" }, { endStream: true });
        stream.on("error", () => {});
        // Same tick as the request: HEADERS and RST_STREAM leave in one write.
        stream.close(h2.NGHTTP2_CANCEL);
      }
      // The relay answers a PING after the frames before it: by then it has seen every request.
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      await eventually(async () => (await inFlight()) === 0, "no exchange left in flight");
      // Both slots are free: two requests at once succeed.
      const replies = await Promise.all([0, 1].map(() => request(`${relay.url}/relay/resets/app/echo`, { method: "POST", body: "ok" })));
      expect(replies.map((r) => r.status)).toEqual([200, 200]);
      expect(replies.map((r) => r.body.toString())).toEqual(["ok", "ok"]);
    } finally {
      session.close();
    }
  });
});

describe("names a client invents", () => {
  it("are counted under (other), never as their own series or statistics", async () => {
    await tenantWithConnector("inventive");
    for (let i = 0; i < 5; i++) {
      expect((await request(`${relay.url}/relay/inventive/made-up-${i}/x`)).status).toBe(404);
    }
    expect((await request(`${relay.url}/relay/inventive/app/echo`, { method: "POST", body: "x" })).status).toBe(200);
    const text = await metricsText();
    expect(text).not.toMatch(/made-up-/);
    expect(text).toContain('ferry_requests_total{tenant="inventive",target="(other)",status_class="4xx"} 5');
    expect(text).toContain('ferry_requests_total{tenant="inventive",target="app",status_class="2xx"} 1');
    const { entries } = await relay.admin.getStats({ tenant: "inventive" });
    // "" is the tenant as a whole.
    expect(entries.map((e) => e.target).sort()).toEqual(["", "(other)", "app"]);
    expect(entries.find((e) => e.target === "(other)")!.total!.requests).toBe(5n);
    const other = await relay.admin.getStats({ tenant: "inventive", target: "(other)" });
    expect(other.entries.map((e) => e.target)).toEqual(["(other)"]);
  });
});

describe("a tenant token's trail", () => {
  it("keeps its reads and refusals in its own tenant's trail, never another's", async () => {
    await relay.admin.createTenant({ name: "trail-a" });
    await relay.admin.createTenant({ name: "trail-b" });
    const { token, secret } = await relay.admin.createToken({ role: "tenant:trail-a" });
    const a = createAdminClient(relay.url, secret);
    const actor = `admin:${token!.tokenId}`;
    const own = await a.listAuditEvents({ pageSize: 1000 });
    expect(own.events.every((e) => e.tenant === "trail-a")).toBe(true);
    await expect(a.listAuditEvents({ tenant: "trail-b" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    await expect(a.getStats({ tenant: "trail-b" })).rejects.toMatchObject({ code: Code.PermissionDenied });

    const ofB = await relay.admin.listAuditEvents({ tenant: "trail-b", pageSize: 1000 });
    expect(ofB.events.filter((e) => e.actor === actor)).toEqual([]);
    const ofA = await relay.admin.listAuditEvents({ tenant: "trail-a", pageSize: 1000 });
    const mine = ofA.events.filter((e) => e.actor === actor).map((e) => `${e.action} ${String(e.details?.rpc)}`);
    expect(mine).toEqual(expect.arrayContaining(["admin.read ListAuditEvents", "admin.denied ListAuditEvents", "admin.denied GetStats"]));
  });
});

describe("deleting a tenant", () => {
  it("revokes its tokens, so a new tenant of the same name is not theirs", async () => {
    await relay.admin.createTenant({ name: "reborn" });
    const { token, secret } = await relay.admin.createToken({ role: "tenant:reborn" });
    const old = createAdminClient(relay.url, secret);
    expect((await old.getTenant({ name: "reborn" })).tenant?.name).toBe("reborn");
    await relay.admin.deleteTenant({ name: "reborn" });
    await relay.admin.createTenant({ name: "reborn" });
    await expect(old.getTenant({ name: "reborn" })).rejects.toMatchObject({ code: Code.Unauthenticated });
    const listed = (await relay.admin.listTokens({})).tokens.find((t) => t.tokenId === token!.tokenId);
    expect(listed?.revokeTime).toBeDefined();
  });

  it("drops its metric series and statistics", async () => {
    await tenantWithConnector("short-lived");
    expect((await request(`${relay.url}/relay/short-lived/app/echo`, { method: "POST", body: "x" })).status).toBe(200);
    expect(await metricsText()).toContain('tenant="short-lived"');
    await Promise.all(connectors.splice(-1).map((c) => c.stop()));
    await relay.admin.deleteTenant({ name: "short-lived" });
    await eventually(async () => !(await metricsText()).includes('tenant="short-lived"'), "no series of the deleted tenant");
    // A tenant of the same name starts with a clean slate.
    await relay.admin.createTenant({ name: "short-lived" });
    expect((await relay.admin.getStats({ tenant: "short-lived" })).entries.every((e) => e.total?.requests === 0n)).toBe(true);
  });
});

describe("operators racing each other", () => {
  it("concurrent updates of different fields are all applied", async () => {
    await relay.admin.createTenant({ name: "racy" });
    await Promise.all([
      relay.admin.updateTenant({ tenant: { name: "racy", disabled: true }, updateMask: { paths: ["disabled"] } }),
      relay.admin.updateTenant({ tenant: { name: "racy", description: "both" }, updateMask: { paths: ["description"] } }),
      relay.admin.updateTenant({ tenant: { name: "racy", displayName: "Racy" }, updateMask: { paths: ["display_name"] } }),
    ]);
    expect((await relay.admin.getTenant({ name: "racy" })).tenant).toMatchObject({ disabled: true, description: "both", displayName: "Racy" });
  });

  it("two rotations of one key: exactly one wins, the other is told why", async () => {
    await relay.admin.createTenant({ name: "rotating" });
    const { key } = await relay.admin.createKey({ tenant: "rotating" });
    const results = await Promise.allSettled([0, 1].map(() => relay.admin.rotateKey({ tenant: "rotating", keyId: key!.keyId })));
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(ConnectError.from(lost[0]!.reason).code).toBe(Code.FailedPrecondition);
    const { keys } = await relay.admin.listKeys({ tenant: "rotating" });
    // The original and one replacement: no orphaned second replacement.
    expect(keys).toHaveLength(2);
  });
});
