import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { credentials, Metadata } from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcClientConstructor } from "../helpers/grpc-client.js";
import { ConnectRequestSchema, type ConnectResponse, TunnelService } from "../../gen/ferry/tunnel/v1/tunnel_service_pb.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type Issued, makePki, type Pki } from "../helpers/pki.js";
import { startConnectorProcess } from "../helpers/processes.js";
import { startTestTarget } from "../helpers/targets.js";

let server: Pki;
let connectors: Pki;
let foreign: Pki;
let relay: TestRelay;
let acmeKey: string;
const certs: Record<string, Issued> = {};

beforeAll(async () => {
  server = makePki("Ferry Server CA");
  connectors = makePki("Ferry Connector CA");
  foreign = makePki("Someone Else's CA");
  const leaf = server.issue({ cn: "localhost", sans: ["DNS:localhost", "IP:127.0.0.1"] });
  relay = await startTestRelay({ tlsCert: leaf.chain, tlsKey: leaf.key, ca: server.root.cert, connectorCa: connectors.root.cert });
  acmeKey = await relay.tenantWithKey("acme");
  await relay.tenantWithKey("beta");
  certs.acme = connectors.issue({ cn: "acme", usage: "client" });
  certs.beta = connectors.issue({ cn: "whatever", sans: ["DNS:beta"], usage: "client" });
  certs.edge = connectors.issue({ cn: "edge-1.acme", sans: ["DNS:edge-1.acme"], usage: "client" });
  certs.ghost = connectors.issue({ cn: "ghost", usage: "client" });
  certs.foreign = foreign.issue({ cn: "acme", usage: "client" });
});
afterAll(async () => {
  await relay?.close();
});

const Client = grpcClientConstructor(TunnelService);
type Call = import("@grpc/grpc-js").ClientDuplexStream<ReturnType<typeof create<typeof ConnectRequestSchema>>, ConnectResponse>;

/** Opens a raw tunnel with an optional client certificate and key; resolves with the Welcome or the refusal. */
async function tunnel(opts: { cert?: Issued; key?: string; connectorId?: string }) {
  const creds = credentials.createSsl(
    readFileSync(server.root.cert),
    opts.cert ? readFileSync(opts.cert.key) : null,
    opts.cert ? readFileSync(opts.cert.chain) : null,
  );
  const client = new Client(new URL(relay.url).host, creds);
  const metadata = new Metadata();
  if (opts.key) metadata.set("authorization", `Bearer ${opts.key}`);
  const call = (client as unknown as { connect(m: Metadata): Call }).connect(metadata);
  const outcome = new Promise<{ tenant?: string; tunnelId?: string; code?: number; details?: string }>((resolve) => {
    call.on("error", (e: { code: number; details: string }) => resolve({ code: e.code, details: e.details }));
    call.once("data", (m: ConnectResponse) => {
      if (m.message.case === "welcome") resolve({ tenant: m.message.value.tenant, tunnelId: m.message.value.tunnelId });
    });
  });
  call.write(
    create(ConnectRequestSchema, {
      message: { case: "hello", value: { protocolVersion: 1, connectorId: opts.connectorId ?? "test", targets: [{ name: "app" }] } },
    }),
  );
  const result = await outcome;
  call.cancel();
  client.close();
  return result;
}

async function audit() {
  return (await relay.admin.listAuditEvents({ pageSize: 1000 })).events;
}

describe("connector client certificates (mTLS)", () => {
  it("a real connector process authenticates with its certificate alone and carries traffic", async () => {
    const target = await startTestTarget();
    const connector = startConnectorProcess(relay.url, "", { app: target.url }, {
      args: ["--ca", server.root.cert, "--tls-cert", certs.acme!.chain, "--tls-key", certs.acme!.key, "--tunnels", "1"],
    });
    try {
      await connector.waitForCount("tunnel connected", 1);
      // The relay knows when the certificate ends: the tunnel closes then, not at the next reconnect.
      const [t] = relay.relay.registry.tunnels("acme").filter((x) => x.info.keyId === "");
      const notAfter = new X509Certificate(readFileSync(certs.acme!.chain)).validTo;
      expect(t!.info.certificateExpires?.getTime()).toBe(Date.parse(notAfter));
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        httpsRequest(`${relay.url}/relay/acme/app/echo`, { method: "POST", ca: readFileSync(server.root.cert) }, (r) => {
          let body = "";
          r.on("data", (c) => (body += c));
          r.on("end", () => resolve({ status: r.statusCode!, body }));
        })
          .on("error", reject)
          .end("via mTLS");
      });
      expect(res).toEqual({ status: 200, body: "via mTLS" });
    } finally {
      await connector.stop();
      await target.close();
    }
  });

  it("a certificate alone authenticates its tenant, audited as such", async () => {
    const r = await tunnel({ cert: certs.acme });
    expect(r.tenant).toBe("acme");
    const connect = (await audit()).find((e) => e.action === "connector.connect" && e.details?.tunnel === r.tunnelId);
    expect(connect).toMatchObject({ actor: "connector-cert:acme", tenant: "acme" });
    expect(connect?.details).toMatchObject({ auth: "certificate", certificate: "acme" });
  });

  it("a certificate with a key of the same tenant is accepted", async () => {
    const r = await tunnel({ cert: certs.acme, key: acmeKey });
    expect(r.tenant).toBe("acme");
    const connect = (await audit()).find((e) => e.action === "connector.connect" && e.details?.tunnel === r.tunnelId);
    expect(connect?.details).toMatchObject({ auth: "certificate+key" });
  });

  it("refuses a certificate for one tenant with a key of another", async () => {
    const r = await tunnel({ cert: certs.beta, key: acmeKey });
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.details).toContain('names tenant "beta"');
    expect((await audit()).some((e) => e.action === "connector.refused" && e.details?.reason === "certificate and key name different tenants")).toBe(true);
  });

  it("refuses a certificate from another CA presented alone", async () => {
    const r = await tunnel({ cert: certs.foreign });
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.details).toContain("client certificate not accepted");
    expect((await audit()).some((e) => e.action === "connector.refused" && e.details?.reason === "untrusted certificate")).toBe(true);
  });

  it("treats a certificate from another CA as absent when a key is sent", async () => {
    expect((await tunnel({ cert: certs.foreign, key: acmeKey })).tenant).toBe("acme");
  });

  it("still takes a key without any certificate", async () => {
    expect((await tunnel({ key: acmeKey })).tenant).toBe("acme");
  });

  it("holds a connector-id certificate to its connector id", async () => {
    const wrong = await tunnel({ cert: certs.edge, connectorId: "edge-2" });
    expect(wrong.code).toBe(Code.PermissionDenied);
    expect(wrong.details).toContain("--id edge-1");
    expect((await tunnel({ cert: certs.edge, connectorId: "edge-1" })).tenant).toBe("acme");
  });

  it("refuses a certificate for a tenant that does not exist or is disabled", async () => {
    expect(await tunnel({ cert: certs.ghost })).toMatchObject({ code: Code.Unauthenticated });
    await relay.admin.updateTenant({ tenant: { name: "beta", disabled: true }, updateMask: { paths: ["disabled"] } });
    expect(await tunnel({ cert: certs.beta })).toMatchObject({ code: Code.PermissionDenied });
  });

  it("does not require a certificate from browsers and other clients", async () => {
    const status = await new Promise<number>((resolve, reject) =>
      httpsRequest(`${relay.url}/healthz`, { ca: readFileSync(server.root.cert) }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on("error", reject)
        .end(),
    );
    expect(status).toBe(200);
  });
});
