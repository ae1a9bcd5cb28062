import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// Finding 11: a tenant deleted and created again under the same name is another
// tenant; the new owner must not read the old one's trail (paths, client
// addresses, connector hosts).
let relay: TestRelay;
let target: TestTarget;

beforeAll(async () => {
  target = await startTestTarget("app");
  relay = await startTestRelay();
});
afterAll(async () => {
  await relay?.close();
  await target?.close();
});

const TENANT_ID = /^[0-9a-f]{32}$/;

describe("a tenant created again under the same name", () => {
  it("has a new id and none of the old tenant's audit trail, for its own token and for an admin's tenant filter", async () => {
    const first = (await relay.admin.createTenant({ name: "phoenix" })).tenant!;
    expect(first.id).toMatch(TENANT_ID);
    expect((await relay.admin.getTenant({ name: "phoenix" })).tenant?.id).toBe(first.id);
    const { secret: key } = await relay.admin.createKey({ tenant: "phoenix" });
    const connector = await startTestConnector(relay.url, key, { app: target.url });
    expect((await request(`${relay.url}/relay/phoenix/app/echo?secret-report`, { method: "POST", body: "x" })).status).toBe(200);
    await connector.stop();

    // The old tenant's trail: every event about it carries its id, request summaries included.
    const old = (await relay.admin.listAuditEvents({ tenant: "phoenix", pageSize: 1000 })).events;
    expect(old.map((e) => e.action)).toEqual(expect.arrayContaining(["tenant.create", "key.create", "connector.connect", "request"]));
    expect(old.every((e) => e.tenantId === first.id)).toBe(true);

    await relay.admin.deleteTenant({ name: "phoenix" });
    const second = (await relay.admin.createTenant({ name: "phoenix" })).tenant!;
    expect(second.id).toMatch(TENANT_ID);
    expect(second.id).not.toBe(first.id);

    const { secret } = await relay.admin.createToken({ role: "tenant:phoenix" });
    const owner = createAdminClient(relay.url, secret);
    const theirs = (await owner.listAuditEvents({ pageSize: 1000 })).events;
    const adminView = (await relay.admin.listAuditEvents({ tenant: "phoenix", pageSize: 1000 })).events;
    for (const events of [theirs, adminView]) {
      expect(events.length).toBeGreaterThan(0);
      expect(events.every((e) => e.tenantId === second.id)).toBe(true);
      expect(events.map((e) => e.action)).not.toContain("request");
      expect(events.map((e) => e.action)).not.toContain("connector.connect");
      expect(events.some((e) => e.action === "tenant.create" && e.tenantId === second.id)).toBe(true);
    }
    expect(theirs.filter((e) => e.action === "tenant.delete")).toEqual([]);

    // Unfiltered, an admin still sees everything, the deleted tenant's delete with that tenant's id.
    const all = (await relay.admin.listAuditEvents({ pageSize: 1000 })).events;
    expect(all.find((e) => e.action === "tenant.delete" && e.tenant === "phoenix")?.tenantId).toBe(first.id);
  });

  it("shows an admin the trail of a deleted tenant by its name while no tenant has it", async () => {
    const gone = (await relay.admin.createTenant({ name: "bygone" })).tenant!;
    await relay.admin.deleteTenant({ name: "bygone" });
    const events = (await relay.admin.listAuditEvents({ tenant: "bygone", action: "tenant.", pageSize: 1000 })).events;
    expect(events.map((e) => e.action)).toEqual(["tenant.delete", "tenant.create"]);
    expect(events.every((e) => e.tenantId === gone.id)).toBe(true);
  });
});
