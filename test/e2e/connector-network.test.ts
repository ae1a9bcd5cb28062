import { readFileSync } from "node:fs";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createSecureServer, type Http2SecureServer } from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueCert, makeTestPki, type TestPki } from "../helpers/certs.js";
import { startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { type FerryProcess, type LogLine, startConnectorProcess } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { startTinyproxy, type Tinyproxy } from "../helpers/tinyproxy.js";

/** No proxy from the test runner's environment may leak into the connectors. */
const CLEAN_ENV = { HTTPS_PROXY: "", https_proxy: "", HTTP_PROXY: "", http_proxy: "", NO_PROXY: "", no_proxy: "", NODE_EXTRA_CA_CERTS: "" };

let pki: TestPki;
let foreign: TestPki;
let tlsRelay: TestRelay;
let plainRelay: TestRelay;
let target: TestTarget;
let proxy: Tinyproxy;
let authProxy: Tinyproxy;
const connectors: FerryProcess[] = [];
/** A well-formed key for servers that never get to check it. */
const FAKE_KEY = `fck_0123456789abcdef_${"a".repeat(43)}`;

function connector(relayUrl: string, key: string, args: string[], env: Record<string, string> = {}): FerryProcess {
  const c = startConnectorProcess(relayUrl, key, { app: target.url }, { args: ["--tunnels", "1", ...args], env: { ...CLEAN_ENV, ...env } });
  connectors.push(c);
  return c;
}

const failed = (l: LogLine) => l.msg === "tunnel failed";
/** The connector's explanation of a failed dial (the "cause" field of "tunnel failed"). */
const cause = (l: LogLine) => String(l.cause);

async function echoThrough(relay: TestRelay, body: string): Promise<string> {
  const res = await fetch(`${relay.url}/relay/acme/app/echo`, { method: "POST", body });
  return `${res.status}:${await res.text()}`;
}

beforeAll(async () => {
  pki = makeTestPki();
  foreign = makeTestPki("Someone Else's CA");
  target = await startTestTarget();
  tlsRelay = await startTestRelay({ tlsCert: pki.cert, tlsKey: pki.key, ca: pki.ca });
  plainRelay = await startTestRelay();
  proxy = await startTinyproxy();
  authProxy = await startTinyproxy({ user: "ferry", password: "s3cret" });
});

afterAll(async () => {
  await Promise.all(connectors.map((c) => c.stop()));
  await proxy?.close();
  await authProxy?.close();
  await tlsRelay?.close();
  await plainRelay?.close();
  await target?.close();
});

describe("connector through an HTTP CONNECT proxy (tinyproxy)", () => {
  it("reaches an http:// relay through the proxy (CONNECT, then h2c)", async () => {
    const key = await plainRelay.tenantWithKey("acme");
    const c = connector(plainRelay.url, key, ["--proxy", proxy.url]);
    await c.waitForCount("tunnel connected", 1);
    expect(proxy.connects()).toContain(new URL(plainRelay.url).host);
    expect(await echoThrough(plainRelay, "via proxy")).toBe("200:via proxy");
  });

  it("reaches an https:// relay through a proxy with basic auth, trusting --ca", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    const c = connector(tlsRelay.url, key, ["--proxy", authProxy.url, "--ca", pki.ca]);
    await c.waitForCount("tunnel connected", 1);
    expect(authProxy.connects()).toContain(new URL(tlsRelay.url).host);
  });

  it("takes the proxy from HTTPS_PROXY", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    const before = proxy.connects().length;
    const c = connector(tlsRelay.url, key, ["--ca", pki.ca], { HTTPS_PROXY: proxy.url });
    await c.waitForCount("tunnel connected", 1);
    expect(proxy.connects().length).toBeGreaterThan(before);
  });

  it("says the proxy refused, with the status and what to check, and opens no tunnel", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    const bad = new URL(authProxy.url);
    bad.password = "wrong";
    const c = connector(tlsRelay.url, key, ["--proxy", bad.href, "--ca", pki.ca]);
    const line = await c.waitFor(failed, "tunnel failed");
    const relayHost = new URL(tlsRelay.url).host;
    expect(cause(line)).toContain(`proxy 127.0.0.1:${authProxy.port} refused CONNECT to ${relayHost}: 401 Unauthorized`); // tinyproxy says 401, most proxies 407
    expect(cause(line)).toContain("check --proxy credentials");
    expect(cause(line)).not.toContain("wrong"); // the password stays out of the log
    expect(c.lines.some((l) => l.msg === "tunnel connected")).toBe(false);
  });

  it("says HTTP/2 is impossible when what answers behind the proxy speaks only HTTP/1.1 (h2c preface refused)", async () => {
    const { createServer } = await import("node:http");
    const server = createServer((_req, res) => res.end("hello"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const c = connector(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, FAKE_KEY, ["--proxy", proxy.url]);
      const line = await c.waitFor(failed, "tunnel failed");
      expect(cause(line)).toContain("the relay connection does not speak HTTP/2 (negotiated http/1.1)");
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("goes direct for hosts in NO_PROXY", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    // A proxy that does not exist: only bypassing it can connect.
    const c = connector(tlsRelay.url, key, ["--ca", pki.ca], { HTTPS_PROXY: "http://127.0.0.1:1", NO_PROXY: "example.com,127.0.0.1" });
    await c.waitForCount("tunnel connected", 1);
  });
});

describe("connector trust and certificates", () => {
  it("refuses a relay whose CA --ca does not hold, naming the issuer", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    const c = connector(tlsRelay.url, key, ["--ca", foreign.ca]);
    const line = await c.waitFor(failed, "tunnel failed");
    expect(cause(line)).toContain(`signed by "CN=Ferry Test CA", which --ca ${foreign.ca} does not trust`);
    expect(cause(line)).toContain("name checked: 127.0.0.1");
    expect(cause(line)).toContain("fix: give that CA's certificate with --ca FILE");
  });

  it("refuses an unknown CA with the system store by default", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    const c = connector(tlsRelay.url, key, []);
    const line = await c.waitFor(failed, "tunnel failed");
    expect(cause(line)).toContain("which the system store (and NODE_EXTRA_CA_CERTS) does not trust");
  });

  it("accepts any certificate with --insecure-skip-verify, and warns", async () => {
    const key = await tlsRelay.tenantWithKey("acme");
    const c = connector(tlsRelay.url, key, ["--insecure-skip-verify"]);
    await c.waitForCount("tunnel connected", 1);
    expect(c.lines.some((l) => l.level === 40 && String(l.msg).includes("--insecure-skip-verify"))).toBe(true);
  });

  it("says which names the certificate is for when the relay's host is not one of them", async () => {
    const other = issueCert(pki, { name: "relay.example.com", usage: "serverAuth", san: ["DNS:relay.example.com"] });
    const server = await h2Server({ cert: other.cert, key: other.key });
    try {
      const c = connector(server.url, FAKE_KEY, ["--ca", pki.ca]);
      const line = await c.waitFor(failed, "tunnel failed");
      expect(cause(line)).toContain("the certificate is for relay.example.com, not 127.0.0.1");
    } finally {
      await server.close();
    }
  });

  it("presents --tls-cert / --tls-key to a relay that asks for a client certificate", async () => {
    const client = issueCert(pki, { name: "connector-7", usage: "clientAuth" });
    const server = await h2Server({ cert: pki.cert, key: pki.key, requestCert: pki.ca });
    try {
      const c = connector(server.url, FAKE_KEY, ["--ca", pki.ca, "--tls-cert", client.cert, "--tls-key", client.key]);
      await c.waitFor(failed, "tunnel failed"); // no gRPC there: the dial fails after TLS
      expect(server.clientSubjects).toContain("connector-7");
    } finally {
      await server.close();
    }
  });

  it("says HTTP/2 is impossible when the TLS server speaks only HTTP/1.1", async () => {
    const server = await http1Server(pki);
    try {
      const c = connector(server.url, FAKE_KEY, ["--ca", pki.ca]);
      const line = await c.waitFor(failed, "tunnel failed");
      expect(cause(line)).toContain("the relay connection does not speak HTTP/2 (negotiated http/1.1): a TLS-inspecting proxy is probably in the way");
      expect(cause(line)).toContain("exempt the relay's host from TLS inspection");
    } finally {
      await new Promise((r) => server.server.close(r));
    }
  });
});

/** A TLS HTTP/2 server (no gRPC service) that records the client certificates it was shown. */
async function h2Server(opts: { cert: string; key: string; requestCert?: string }) {
  const clientSubjects: string[] = [];
  const server: Http2SecureServer = createSecureServer({
    cert: readFileSync(opts.cert),
    key: readFileSync(opts.key),
    ...(opts.requestCert ? { requestCert: true, rejectUnauthorized: false, ca: readFileSync(opts.requestCert) } : {}),
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    const cn = socket.getPeerCertificate().subject?.CN;
    if (cn) clientSubjects.push(String(cn));
  });
  server.on("stream", (stream) => stream.respond({ ":status": 404 }, { endStream: true }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    clientSubjects,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** An HTTPS server that speaks only HTTP/1.1, as a TLS-inspecting proxy does. */
async function http1Server(p: TestPki): Promise<{ url: string; server: HttpsServer }> {
  const server = createHttpsServer({ cert: readFileSync(p.cert), key: readFileSync(p.key) }, (_req, res) => res.end("hello"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
