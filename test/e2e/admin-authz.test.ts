import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminClient, createAdminClient } from "../../clients/cli/admin-client.js";
import { AdminService } from "../../gen/ferry/admin/v1/admin_service_pb.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";

// Who may do what: admin everything, viewer reads only, tenant:NAME only that tenant's objects.
let relay: TestRelay;
const as: Record<string, AdminClient> = {};
let tokenIdOfViewer = "";
let keyOfA = "";
let keyOfB = "";
let clientKeyOfB = "";

beforeAll(async () => {
  relay = await startTestRelay();
  const admin = relay.admin;
  for (const name of ["tenant-a", "tenant-b"]) await admin.createTenant({ name });
  keyOfA = (await admin.createKey({ tenant: "tenant-a" })).key!.keyId;
  keyOfB = (await admin.createKey({ tenant: "tenant-b" })).key!.keyId;
  clientKeyOfB = (await admin.createClientKey({ tenant: "tenant-b" })).key!.keyId;
  as.admin = admin;
  const viewer = await admin.createToken({ role: "viewer" });
  tokenIdOfViewer = viewer.token!.tokenId;
  as.viewer = createAdminClient(relay.url, viewer.secret);
  as.tenantA = createAdminClient(relay.url, (await admin.createToken({ role: "tenant:tenant-a" })).secret);
});
afterAll(async () => {
  await relay?.close();
});

type Call = (c: AdminClient) => Promise<unknown>;

/** [description, call, who may] — every RPC, about tenant a and about tenant b. */
const matrix: Array<[string, Call, Array<"admin" | "viewer" | "tenantA">]> = [
  ["CreateTenant", (c) => c.createTenant({ name: `t${Math.random().toString(36).slice(2, 8)}` }), ["admin"]],
  ["GetTenant a", (c) => c.getTenant({ name: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["GetTenant b", (c) => c.getTenant({ name: "tenant-b" }), ["admin", "viewer"]],
  ["ListTenants", (c) => c.listTenants({}), ["admin", "viewer", "tenantA"]],
  ["UpdateTenant a", (c) => c.updateTenant({ tenant: { name: "tenant-a", description: "x" }, updateMask: { paths: ["description"] } }), ["admin"]],
  ["DeleteTenant b", (c) => c.deleteTenant({ name: "no-such" }), ["admin"]],
  ["CreateKey a", (c) => c.createKey({ tenant: "tenant-a" }), ["admin", "tenantA"]],
  ["CreateKey b", (c) => c.createKey({ tenant: "tenant-b" }), ["admin"]],
  ["ListKeys a", (c) => c.listKeys({ tenant: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["ListKeys b", (c) => c.listKeys({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["RevokeKey b", (c) => c.revokeKey({ tenant: "tenant-b", keyId: "0000000000000000" }), ["admin"]],
  ["RotateKey b", (c) => c.rotateKey({ tenant: "tenant-b", keyId: keyOfB }), ["admin"]],
  ["RotateKey a", (c) => c.rotateKey({ tenant: "tenant-a", keyId: keyOfA }), ["admin", "tenantA"]],
  ["ListConnectors b", (c) => c.listConnectors({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["DisconnectConnector a", (c) => c.disconnectConnector({ tenant: "tenant-a", connectorId: "none" }), ["admin", "tenantA"]],
  ["DisconnectConnector b", (c) => c.disconnectConnector({ tenant: "tenant-b", connectorId: "none" }), ["admin"]],
  ["ListTargets b", (c) => c.listTargets({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["GetStats a", (c) => c.getStats({ tenant: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["GetStats b", (c) => c.getStats({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["ListAuditEvents", (c) => c.listAuditEvents({}), ["admin", "viewer", "tenantA"]],
  ["ListAuditEvents b", (c) => c.listAuditEvents({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["CreateToken", (c) => c.createToken({ role: "viewer" }), ["admin"]],
  ["ListTokens", (c) => c.listTokens({}), ["admin", "viewer"]],
  ["RevokeToken", (c) => c.revokeToken({ tokenId: "no-such-token" }), ["admin"]],
  ["ListNodes", (c) => c.listNodes({}), ["admin", "viewer"]],
  ["GetAccessPolicy a", (c) => c.getAccessPolicy({ tenant: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["GetAccessPolicy b", (c) => c.getAccessPolicy({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["SetAccessPolicy a", (c) => c.setAccessPolicy({ tenant: "tenant-a", policy: { rules: [{ targets: ["app"] }] } }), ["admin", "tenantA"]],
  ["SetAccessPolicy b", (c) => c.setAccessPolicy({ tenant: "tenant-b", policy: {} }), ["admin"]],
  // Neither tenant has a login rule: a permitted call is not_found, a refused one permission_denied.
  ["EndLoginSessions a", (c) => c.endLoginSessions({ tenant: "tenant-a" }), ["admin", "tenantA"]],
  ["EndLoginSessions b", (c) => c.endLoginSessions({ tenant: "tenant-b" }), ["admin"]],
  ["CreateClientKey a", (c) => c.createClientKey({ tenant: "tenant-a" }), ["admin", "tenantA"]],
  ["CreateClientKey b", (c) => c.createClientKey({ tenant: "tenant-b" }), ["admin"]],
  ["ListClientKeys a", (c) => c.listClientKeys({ tenant: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["ListClientKeys b", (c) => c.listClientKeys({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["RevokeClientKey a", (c) => c.revokeClientKey({ tenant: "tenant-a", keyId: "0000000000000000" }), ["admin", "tenantA"]],
  ["RevokeClientKey b", (c) => c.revokeClientKey({ tenant: "tenant-b", keyId: clientKeyOfB }), ["admin"]],
  ["WatchExchanges a", (c) => firstOf(c.watchExchanges({ tenant: "tenant-a" })), ["admin", "viewer", "tenantA"]],
  ["WatchExchanges b", (c) => firstOf(c.watchExchanges({ tenant: "tenant-b" })), ["admin", "viewer"]],
  ["GetTrafficHistory a", (c) => c.getTrafficHistory({ tenant: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["GetTrafficHistory b", (c) => c.getTrafficHistory({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["StartCapture a", (c) => c.startCapture({ tenant: "tenant-a", target: `t${Math.random().toString(36).slice(2, 8)}` }), ["admin", "tenantA"]],
  ["StartCapture b", (c) => c.startCapture({ tenant: "tenant-b", target: "app" }), ["admin"]],
  ["StopCapture", (c) => c.stopCapture({ captureId: "nobody-000000000000" }), ["admin", "tenantA"]],
  ["ListCaptures a", (c) => c.listCaptures({ tenant: "tenant-a" }), ["admin", "viewer", "tenantA"]],
  ["ListCaptures b", (c) => c.listCaptures({ tenant: "tenant-b" }), ["admin", "viewer"]],
  ["GetCapture", (c) => c.getCapture({ captureId: "nobody-000000000000" }), ["admin", "viewer", "tenantA"]],
  ["ReplayExchange", (c) => c.replayExchange({ captureId: "nobody-000000000000", exchangeId: "x" }), ["admin"]],
  ["GetCaller", (c) => c.getCaller({}), ["admin", "viewer", "tenantA"]],
];

/** The first message of a stream (the watch is in place), then the stream is let go. */
async function firstOf(stream: AsyncIterable<unknown>): Promise<unknown> {
  for await (const m of stream) return m;
  return undefined;
}

it("the matrix names every RPC of the admin API", () => {
  const covered = new Set(matrix.map(([name]) => name.split(" ")[0]));
  expect(AdminService.methods.map((m) => m.name).filter((name) => !covered.has(name))).toEqual([]);
});

describe("authorisation matrix", () => {
  for (const [name, call, allowed] of matrix) {
    for (const who of ["admin", "viewer", "tenantA"] as const) {
      const may = allowed.includes(who);
      it(`${who} ${may ? "may" : "may not"} call ${name}`, async () => {
        const err = await call(as[who]!).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (may) {
          // Allowed calls may still fail for their own reasons (not found), never for permission.
          if (err !== undefined) expect(ConnectError.from(err).code).not.toBe(Code.PermissionDenied);
        } else {
          expect(err).toBeInstanceOf(ConnectError);
          expect((err as ConnectError).code).toBe(Code.PermissionDenied);
        }
      });
    }
  }
});

describe("tenant-bound tokens see only their tenant", () => {
  it("lists only its own tenant and only its own audit events", async () => {
    const { tenants } = await as.tenantA!.listTenants({});
    expect(tenants.map((t) => t.name)).toEqual(["tenant-a"]);
    const { events } = await as.tenantA!.listAuditEvents({ pageSize: 1000 });
    expect(events.length).toBeGreaterThan(0);
    expect(new Set(events.map((e) => e.tenant))).toEqual(new Set(["tenant-a"]));
  });

  it("another tenant's client key is not found through its own tenant's name", async () => {
    const { key } = await relay.admin.createClientKey({ tenant: "tenant-b" });
    const err = await as.tenantA!.revokeClientKey({ tenant: "tenant-a", keyId: key!.keyId }).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
    expect((await relay.admin.listClientKeys({ tenant: "tenant-b" })).keys.find((k) => k.keyId === key!.keyId)?.revokeTime).toBeUndefined();
  });

  it("refusals are audited with who tried what", async () => {
    await as.viewer!.createTenant({ name: "nope" }).catch(() => {});
    const { events } = await relay.admin.listAuditEvents({ action: "admin.denied", pageSize: 1000 });
    expect(events.some((e) => e.actor === `admin:${tokenIdOfViewer}` && e.details?.rpc === "CreateTenant")).toBe(true);
  });

  it("a revoked token stops working at once", async () => {
    const t = await relay.admin.createToken({ role: "viewer" });
    const client = createAdminClient(relay.url, t.secret);
    await client.listTenants({});
    await relay.admin.revokeToken({ tokenId: t.token!.tokenId });
    const err = await client.listTenants({}).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Unauthenticated);
  });
});
