import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN } from "../helpers/processes.js";

// Finding 14 (the admin side): a tenant's deny list of connector certificate
// serials, set with UpdateTenant like any other setting. (The tunnel endpoint
// refusing them, and closing live tunnels, is tested with it.)
let relay: TestRelay;

beforeAll(async () => {
  relay = await startTestRelay();
});
afterAll(async () => {
  await relay?.close();
});

const deny = (name: string, deniedCertificateSerials: string[]) =>
  relay.admin.updateTenant({ tenant: { name, deniedCertificateSerials }, updateMask: { paths: ["denied_certificate_serials"] } });

describe("denied_certificate_serials", () => {
  it("is a setting: normalised to upper-case hex without separators, shown, and audited with before and after", async () => {
    await relay.admin.createTenant({ name: "pki" });
    const { tenant } = await deny("pki", ["0a:1b:2c", "serial=00FF", "DEADBEEF", "0A1B2C"]);
    expect(tenant?.deniedCertificateSerials).toEqual(["A1B2C", "FF", "DEADBEEF"]);
    expect((await relay.admin.getTenant({ name: "pki" })).tenant?.deniedCertificateSerials).toEqual(["A1B2C", "FF", "DEADBEEF"]);
    const listed = (await relay.admin.listTenants({})).tenants.find((t) => t.name === "pki");
    expect(listed?.deniedCertificateSerials).toEqual(["A1B2C", "FF", "DEADBEEF"]);
    // Other settings stay.
    await relay.admin.updateTenant({ tenant: { name: "pki", description: "internal CA" }, updateMask: { paths: ["description"] } });
    expect((await relay.admin.getTenant({ name: "pki" })).tenant).toMatchObject({ description: "internal CA", deniedCertificateSerials: ["A1B2C", "FF", "DEADBEEF"] });

    await deny("pki", ["FF"]);
    const [update] = (await relay.admin.listAuditEvents({ tenant: "pki", action: "tenant.update", pageSize: 1 })).events;
    expect(update?.details).toEqual({ fields: ["denied_certificate_serials"] });
    expect(update?.before?.deniedCertificateSerials).toEqual(["A1B2C", "FF", "DEADBEEF"]);
    expect(update?.after?.deniedCertificateSerials).toEqual(["FF"]);
  });

  it("takes the proto JSON name in a curl-style update mask, and CreateTenant takes it too", async () => {
    const res = await fetch(`${relay.url}/ferry.admin.v1.AdminService/CreateTenant`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ name: "curl-pki", settings: { deniedCertificateSerials: ["ab:cd"] } }),
    });
    expect(((await res.json()) as { tenant: unknown }).tenant).toMatchObject({ name: "curl-pki", deniedCertificateSerials: ["ABCD"] });
    const up = await fetch(`${relay.url}/ferry.admin.v1.AdminService/UpdateTenant`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ tenant: { name: "curl-pki", deniedCertificateSerials: [] }, updateMask: "deniedCertificateSerials" }),
    });
    expect(up.status).toBe(200);
    expect((await relay.admin.getTenant({ name: "curl-pki" })).tenant?.deniedCertificateSerials).toEqual([]);
  });

  it("refuses what is not a serial, and more than 1000 of them", async () => {
    await relay.admin.createTenant({ name: "strict" });
    for (const bad of ["xyz", "12-34", "", "0x12", "A".repeat(41)]) {
      await expect(deny("strict", [bad]), bad).rejects.toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringMatching(/^denied_certificate_serials entry .* is not a certificate serial/),
      });
    }
    const many = Array.from({ length: 1001 }, (_, i) => (i + 1).toString(16));
    await expect(deny("strict", many)).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: "denied_certificate_serials lists more than 1000 serials" });
    await expect(deny("strict", many.slice(0, 1000))).resolves.toBeDefined();
  });
});
