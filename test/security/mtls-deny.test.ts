import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type Issued, makePki, type Pki } from "../helpers/pki.js";
import { eventually } from "../helpers/wait.js";
import { openRawTunnel, type RawTunnel, tunnelAttempt } from "./raw-tunnel.js";

// Finding 14 (mTLS): a connector certificate could not be revoked short of disabling its tenant. A tenant's
// denied_certificate_serials now refuses it like an untrusted certificate and closes its live tunnels.
let server: Pki;
let connectors: Pki;
let relay: TestRelay;
let ca: Buffer;
let stolen: Issued;
let kept: Issued;
let many: Issued;
const UNAUTHENTICATED = 16;
const RESOURCE_EXHAUSTED = 8;

beforeAll(async () => {
  server = makePki("Ferry Server CA");
  connectors = makePki("Ferry Connector CA");
  const leaf = server.issue({ cn: "localhost", sans: ["DNS:localhost", "IP:127.0.0.1"] });
  relay = await startTestRelay({
    tlsCert: leaf.chain,
    tlsKey: leaf.key,
    ca: server.root.cert,
    connectorCa: connectors.root.cert,
    limits: { maxTunnelsPerKey: 2 },
  });
  ca = readFileSync(server.root.cert);
  await relay.tenantWithKey("acme");
  stolen = connectors.issue({ cn: "acme", usage: "client" });
  kept = connectors.issue({ cn: "edge-1.acme", usage: "client" });
  many = connectors.issue({ cn: "many.acme", usage: "client" });
});

afterAll(async () => {
  await relay?.close();
});

const withCert = (cert: Issued, hello: { connectorId?: string } = {}) => ({
  tls: { ca, cert: readFileSync(cert.chain), key: readFileSync(cert.key) },
  hello: { connectorId: hello.connectorId ?? "c" },
});

/** Sets the tenant's deny list through the admin API, as an operator does. */
async function denySerials(tenant: string, serials: string[]): Promise<void> {
  await relay.admin.updateTenant({ tenant: { name: tenant, deniedCertificateSerials: serials }, updateMask: { paths: ["denied_certificate_serials"] } });
}

async function refusals() {
  return (await relay.admin.listAuditEvents({ pageSize: 1000 })).events.filter((e) => e.action === "connector.refused");
}

describe("denied connector certificate serials", () => {
  it("close the live tunnels of a denied certificate, refuse it from then on, and leave other certificates alone", async () => {
    const live: RawTunnel = openRawTunnel(relay.url, "", withCert(stolen));
    expect((await live.answer).status).toBe("welcome");
    const other = openRawTunnel(relay.url, "", withCert(kept, { connectorId: "edge-1" }));
    expect((await other.answer).status).toBe("welcome");
    expect(relay.relay.registry.tunnels("acme").map((t) => t.info.certificateSerial).sort()).toEqual([stolen.serial, kept.serial].sort());

    await denySerials("acme", [stolen.serial]);
    expect(await live.ended).toEqual({ status: UNAUTHENTICATED, message: "connector certificate was denied" });
    await eventually(() => relay.relay.registry.tunnels("acme").length === 1, "the denied tunnel to go");
    expect(relay.relay.registry.tunnels("acme")[0]!.info.certificateSerial).toBe(kept.serial);

    const again = await tunnelAttempt(relay.url, "", withCert(stolen));
    expect(again.status).toBe(UNAUTHENTICATED);
    expect(again.message).toMatch(/client certificate not accepted \(its serial is on the tenant's deny list\)/);
    const refused = (await refusals()).find((e) => e.details?.reason === "certificate denied");
    expect(refused?.details).toMatchObject({ serial: stolen.serial, remoteAddress: "127.0.0.1" });
    other.close();
    live.close();
  });

  it("count certificate-only tunnels per certificate name against maxTunnelsPerKey", async () => {
    const first = openRawTunnel(relay.url, "", withCert(many, { connectorId: "many" }));
    const second = openRawTunnel(relay.url, "", withCert(many, { connectorId: "many" }));
    expect([(await first.answer).status, (await second.answer).status]).toEqual(["welcome", "welcome"]);
    const third = await tunnelAttempt(relay.url, "", withCert(many, { connectorId: "many" }));
    expect(third).toMatchObject({ status: RESOURCE_EXHAUSTED, message: expect.stringMatching(/already has 2 tunnels/) });
    // Another certificate of the same tenant has its own count.
    const another = openRawTunnel(relay.url, "", withCert(kept, { connectorId: "edge-1" }));
    expect((await another.answer).status).toBe("welcome");
    for (const t of [first, second, another]) t.close();
  });
});
