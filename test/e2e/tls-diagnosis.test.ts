import { readFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { createSecureServer } from "node:http2";
import type { AddressInfo, Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diagnoseTls } from "../../clients/connector/tls-diagnosis.js";
import { makeTestPki, type TestPki } from "../helpers/certs.js";

let pki: TestPki;
const servers: Server[] = [];

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

beforeAll(() => {
  pki = makeTestPki();
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

describe("diagnoseTls (shared with ferry doctor)", () => {
  it("reports protocol, ALPN h2 and the presented chain for a good HTTP/2 server", async () => {
    const port = await listen(createSecureServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }) as unknown as Server);
    const d = await diagnoseTls({ host: "127.0.0.1", port, ca: pki.ca });
    expect(d.ok).toBe(true);
    expect(d.alpn).toBe("h2");
    expect(d.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(d.chain.map((c) => c.subject)).toEqual(["CN=localhost", "CN=Ferry Test CA"]);
    expect(d.chain[0]!.issuer).toBe("CN=Ferry Test CA");
    expect(d.chain[0]!.san).toEqual(["localhost", "127.0.0.1"]);
    expect(Date.parse(d.chain[0]!.validTo)).toBeGreaterThan(Date.now());
    expect(d.problem).toBeUndefined();
  });

  it("names http/1.1 as the negotiated protocol when the server cannot do HTTP/2", async () => {
    const port = await listen(createHttpsServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }));
    const d = await diagnoseTls({ host: "127.0.0.1", port, ca: pki.ca });
    expect(d.ok).toBe(false);
    expect(d.alpn).toBe("http/1.1");
    expect(d.problem).toContain("does not speak HTTP/2 (negotiated http/1.1)");
  });

  it("says when the server is not speaking TLS at all", async () => {
    const { createServer } = await import("node:http");
    const port = await listen(createServer((_q, s) => s.end()));
    const d = await diagnoseTls({ host: "127.0.0.1", port, ca: pki.ca });
    expect(d.ok).toBe(false);
    expect(d.chain).toEqual([]);
    expect(d.fix).toContain("did not answer in TLS");
  });
});
