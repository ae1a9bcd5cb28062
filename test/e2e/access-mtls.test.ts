import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { makeTestPki, type TestPki } from "../helpers/certs.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// Client certificates against the tenant's own CA, through a TLS relay that asks for them; and a relay without
// --trust-proxy that believes only the socket's address.

let server: TestPki;
let tenantCa: Pki;
let strangerCa: Pki;
let relay: TestRelay;
let app: TestTarget;
let connector: Connector;

beforeAll(async () => {
  server = makeTestPki("Relay CA");
  tenantCa = makePki("Acme Clients CA");
  strangerCa = makePki("Stranger CA");
  relay = await startTestRelay({ tlsCert: server.cert, tlsKey: server.key, ca: server.ca, clientCertificates: true });
  app = await startTestTarget("app");
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, { app: app.url }, { tunnels: 1, flags: { ca: server.ca } });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await app?.close();
});

function get(path: string, opts: { cert?: string; key?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${relay.url}${path}`,
      {
        ca: readFileSync(server.ca),
        ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key!) } : {}),
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("mtls rules", () => {
  it("takes a certificate the tenant's CA signed, and no other", async () => {
    await relay.admin.setAccessPolicy({
      tenant: "acme",
      policy: { rules: [{ targets: ["app"], require: ["mtls"] }], clientCaPem: readFileSync(tenantCa.root.cert, "utf8") },
    });
    const ours = tenantCa.issue({ cn: "plant-7", usage: "client", days: 30 });
    const theirs = strangerCa.issue({ cn: "plant-7", usage: "client", days: 30 });

    expect((await get("/relay/acme/app/json")).status).toBe(401);
    const wrong = await get("/relay/acme/app/json", theirs);
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body).error.code).toBe("certificate_invalid");
    const seen = app.seen.length;
    expect((await get("/relay/acme/app/json", ours)).status).toBe(200);
    expect(app.seen.length).toBe(seen + 1);
    // The identity the target gets says who: the certificate's subject.
    const identity = String(app.seen.at(-1)!.headers["x-ferry-identity"]);
    const claims = JSON.parse(Buffer.from(identity.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ auth: "mtls", sub: "plant-7", tenant: "acme", target: "app" });
  });

  it("believes X-Forwarded-For only from --trust-proxy addresses", async () => {
    await relay.admin.setAccessPolicy({ tenant: "acme", policy: { rules: [{ targets: ["app"], allowIps: ["203.0.113.0/24"] }] } });
    // This relay trusts no proxy: the header is the client's word, and the socket (127.0.0.1) is not allowed.
    const spoofed = await get("/relay/acme/app/json", { headers: { "x-forwarded-for": "203.0.113.7" } });
    expect(spoofed.status).toBe(403);
    expect(JSON.parse(spoofed.body).error.code).toBe("ip_not_allowed");
  });
});
