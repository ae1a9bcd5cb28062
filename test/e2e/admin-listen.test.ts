import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect as http2Connect } from "node:http2";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import { makeTestPki } from "../helpers/certs.js";
import { h2request, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN, ROOT, runFerry, startConnectorProcess, startRelayProcess, tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// Management off the internet: the admin API, the console and /metrics on an internal port only.
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;
let adminUrl: string;
const consoleDir = tempDir();
const INDEX = '<!doctype html><title>Ferry</title><script src="app.js"></script>';

beforeAll(async () => {
  writeFileSync(join(consoleDir, "index.html"), INDEX);
  writeFileSync(join(consoleDir, "app.js"), "console.log('ferry');");
  writeFileSync(join(consoleDir, "notes.md"), "not a console file type");
  mkdirSync(join(consoleDir, "assets"));
  writeFileSync(join(consoleDir, "assets", "logo.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>");
  // A link out of the directory is not served, even with a console file type.
  symlinkSync(join(ROOT, "package.json"), join(consoleDir, "linked.json"));
  target = await startTestTarget();
  relay = await startTestRelay({ adminListen: { host: "127.0.0.1", port: 0 }, publicAdmin: false, consoleDir });
  adminUrl = relay.adminUrl!;
  const admin = createAdminClient(adminUrl, ADMIN_TOKEN);
  await admin.createTenant({ name: "acme" });
  const { secret } = await admin.createKey({ tenant: "acme" });
  connector = await startTestConnector(relay.url, secret, { app: target.url });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

describe("--admin-listen with --no-public-admin", () => {
  it("serves the admin API on the admin port and refuses it on the public one", async () => {
    expect((await createAdminClient(adminUrl, ADMIN_TOKEN).listTenants({})).tenants.map((t) => t.name)).toEqual(["acme"]);
    // A Connect client reads the 404 as "no such method here".
    await expect(createAdminClient(relay.url, ADMIN_TOKEN).listTenants({})).rejects.toMatchObject({ code: Code.Unimplemented });
    const refused = await request(`${relay.url}/ferry.admin.v1.AdminService/ListTenants`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: "{}",
    });
    expect(refused.status).toBe(404);
    expect(JSON.parse(refused.body.toString()).error).toEqual({
      code: "not_served_here",
      message: "the admin API is not served on this port: operators use the relay's admin port (--admin-listen)",
    });
    // Nor does it tell the internet where the admin port is.
    expect(refused.body.toString()).not.toContain(new URL(adminUrl).port);
  });

  it("keeps clients and connectors on the public port, and off the admin port", async () => {
    expect((await request(`${relay.url}/relay/acme/app/json`)).status).toBe(200);
    expect((await request(`${relay.url}/.well-known/ferry/jwks.json`)).status).toBe(200);
    const onAdmin = await request(`${adminUrl}/relay/acme/app/json`);
    expect(onAdmin.status).toBe(404);
    expect(JSON.parse(onAdmin.body.toString()).error.message).toMatch(/admin API only/);
    // No tunnel, no WebSocket, no identity keys on the admin port either.
    const tunnel = await request(`${adminUrl}/ferry.tunnel.v1.TunnelService/Connect`, { method: "POST", headers: { "content-type": "application/grpc" }, body: "" });
    expect(tunnel.headers["grpc-status"]).toBe("12"); // UNIMPLEMENTED: a 404 to a gRPC client
    expect(String(tunnel.headers["grpc-message"])).toContain("not_served_here");
    const upgrade = await request(`${adminUrl}/relay/acme/app/ws`, { headers: { connection: "upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" } });
    expect(upgrade.status).toBe(404);
    expect((await request(`${adminUrl}/.well-known/ferry/jwks.json`)).status).toBe(404);
    for (const base of [relay.url, adminUrl]) {
      expect((await request(`${base}/healthz`)).status).toBe(200);
      expect((await request(`${base}/readyz`)).status).toBe(200);
    }
  });

  it("moves /metrics and the console to the admin port", async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const metrics = await request(`${adminUrl}/metrics`, { headers: auth });
    expect(metrics.status).toBe(200);
    expect(metrics.body.toString()).toContain("ferry_requests_total");
    // Still guarded by a token on the admin port.
    expect((await request(`${adminUrl}/metrics`)).status).toBe(401);
    const publicMetrics = await request(`${relay.url}/metrics`, { headers: auth });
    expect(publicMetrics.status).toBe(404);
    expect(JSON.parse(publicMetrics.body.toString()).error.message).toMatch(/^\/metrics is not served on this port/);
    expect((await request(`${adminUrl}/console/`)).status).toBe(200);
    const publicConsole = await request(`${relay.url}/console/`);
    expect(publicConsole.status).toBe(404);
    expect(JSON.parse(publicConsole.body.toString()).error.message).toMatch(/^the web console is not served on this port/);
    expect((await request(`${relay.url}/console/app.js`)).status).toBe(404);
  });
});

describe("/console/", () => {
  it("serves the built files with a strict CSP, nosniff and no framing", async () => {
    const page = await request(`${adminUrl}/console/`);
    expect(page.status).toBe(200);
    expect(page.body.toString()).toBe(INDEX);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toMatch(/^default-src 'none'; script-src 'self'; style-src 'self';/);
    expect(page.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.headers["x-frame-options"]).toBe("DENY");
    expect(page.headers["referrer-policy"]).toBe("no-referrer");
    expect(page.headers["cache-control"]).toBe("no-cache");
    expect((await request(`${adminUrl}/console/index.html`)).body.toString()).toBe(INDEX);
    expect((await request(`${adminUrl}/console/?from=bookmark`)).body.toString()).toBe(INDEX);
    const script = await request(`${adminUrl}/console/app.js`);
    expect(script.body.toString()).toBe("console.log('ferry');");
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(script.headers["content-security-policy"]).toBe(page.headers["content-security-policy"]);
    const logo = await request(`${adminUrl}/console/assets/logo.svg`);
    expect(logo.status).toBe(200);
    expect(logo.headers["content-type"]).toBe("image/svg+xml");
    const head = await request(`${adminUrl}/console/app.js`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe(String(script.body.length));
    expect(head.body.length).toBe(0);
  });

  it("answers 304 to a matching If-None-Match, as a list or weak, and the file to another", async () => {
    const etag = String((await request(`${adminUrl}/console/app.js`)).headers.etag);
    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const again = await request(`${adminUrl}/console/app.js`, { headers: { "if-none-match": inm } });
      expect(again.status, inm).toBe(304);
      expect(again.body.length).toBe(0);
      expect(again.headers.etag).toBe(etag);
    }
    const changed = await request(`${adminUrl}/console/app.js`, { headers: { "if-none-match": '"other"' } });
    expect(changed.status).toBe(200);
    expect(changed.body.toString()).toBe("console.log('ferry');");
  });

  it("redirects /console, and answers 404 for unknown files and any way out of the directory, 405 for writes", async () => {
    const redirect = await request(`${adminUrl}/console`);
    expect(redirect.status).toBe(308);
    expect(redirect.headers.location).toBe("/console/");
    const traversals = [
      "/console/../package.json",
      "/console/%2e%2e/package.json",
      "/console/%2E%2E/package.json",
      "/console/..%2fpackage.json",
      "/console/..%5cpackage.json",
      "/console/assets/../../package.json",
      "/console/assets/%2e%2e/app.js",
      "/console//etc/passwd",
      "/console/%2fetc%2fpasswd",
      "/console/linked.json",
    ];
    for (const path of ["/console/missing.js", "/console/notes.md", "/console/assets", "/console/assets/", ...traversals]) {
      const r = await request(`${adminUrl}${path}`);
      expect(r.status, path).toBe(404);
      expect(r.headers["content-type"], path).toBe("application/json");
      expect(r.body.toString()).not.toContain('"name": "ferry"');
    }
    for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
      for (const path of ["/console/", "/console", "/console/app.js"]) {
        const r = await request(`${adminUrl}${path}`, { method, body: method === "POST" ? "x" : undefined });
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(r.headers.allow).toBe("GET, HEAD");
      }
    }
  });

  it("is off with --no-console, and says so when it is not built", async () => {
    const off = await startTestRelay({ console: false });
    try {
      const r = await request(`${off.url}/console/`);
      expect(r.status).toBe(404);
      expect(JSON.parse(r.body.toString()).error.code).toBe("console_off");
    } finally {
      await off.close();
    }
    const unbuilt = await startTestRelay({ consoleDir: join(tempDir(), "not-there") });
    try {
      const r = await request(`${unbuilt.url}/console/`);
      expect(r.status).toBe(404);
      expect(JSON.parse(r.body.toString()).error).toMatchObject({ code: "console_not_built", message: "the console is not built: run npm run build" });
      // The relay itself serves on.
      expect((await unbuilt.admin.listTenants({})).tenants).toEqual([]);
    } finally {
      await unbuilt.close();
    }
  });

  it("refuses a directory of more than 5 MB at start, with a log line, and serves on", async () => {
    const big = tempDir();
    writeFileSync(join(big, "index.html"), INDEX);
    writeFileSync(join(big, "app.js"), Buffer.alloc(5 * 1024 * 1024 + 1, 0x20));
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const oversized = await startTestRelay({ consoleDir: big, log });
    try {
      expect(lines.find((l) => String(l.msg).includes("more than 5 MB"))).toMatchObject({ dir: big, level: 50 });
      for (const path of ["/console/", "/console/app.js"]) {
        const r = await request(`${oversized.url}${path}`);
        expect(r.status).toBe(404);
        expect(JSON.parse(r.body.toString()).error.code).toBe("console_unusable");
      }
      expect((await oversized.admin.listTenants({})).tenants).toEqual([]);
    } finally {
      await oversized.close();
    }
  });
});

describe("ferry relay", () => {
  it("refuses --no-public-admin without --admin-listen, from the flag or the config file", async () => {
    const refused = await runFerry(["relay", "--listen", "127.0.0.1:0", "--data", tempDir(), "--no-public-admin"], { FERRY_ADMIN_TOKEN: ADMIN_TOKEN });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--no-public-admin needs --admin-listen HOST:PORT .*nothing would serve the admin API/);
    const config = join(tempDir(), "relay.yaml");
    writeFileSync(config, "publicAdmin: false\n");
    const fromFile = await runFerry(["relay", "--listen", "127.0.0.1:0", "--data", tempDir(), "--config", config], { FERRY_ADMIN_TOKEN: ADMIN_TOKEN });
    expect(fromFile.code).toBe(1);
    expect(fromFile.stderr).toMatch(/publicAdmin: false needs --admin-listen/);
  });

  it("describes the flags in --help", async () => {
    const help = await runFerry(["relay", "--help"]);
    expect(help.code).toBe(0);
    for (const flag of ["--admin-listen <host:port>", "--no-public-admin", "--no-console"]) expect(help.stdout).toContain(flag);
  });

  it("serves the admin port with the main port's TLS, over HTTP/1.1 and HTTP/2, while connectors and clients use the public one", async () => {
    const pki = makeTestPki();
    const ca = readFileSync(pki.ca);
    const proc = await startRelayProcess({ args: ["--tls-cert", pki.cert, "--tls-key", pki.key, "--admin-listen", "127.0.0.1:0", "--no-public-admin", "--no-console"] });
    const tlsTarget = await startTestTarget();
    let connectorProc: ReturnType<typeof startConnectorProcess> | undefined;
    const session = { current: undefined as ReturnType<typeof http2Connect> | undefined };
    try {
      const line = await proc.waitFor((l) => l.msg === "admin listening", "admin listening");
      expect(line.publicAdmin).toBe(false);
      const adminTls = String(line.url);
      expect(adminTls).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(adminTls).not.toBe(proc.url);
      const admin = createAdminClient(adminTls, ADMIN_TOKEN, { ca });
      await admin.createTenant({ name: "acme" });
      const { secret } = await admin.createKey({ tenant: "acme" });
      await expect(createAdminClient(proc.url, ADMIN_TOKEN, { ca }).listTenants({})).rejects.toMatchObject({ code: Code.Unimplemented });

      connectorProc = startConnectorProcess(proc.url, secret, { app: tlsTarget.url }, { env: { NODE_EXTRA_CA_CERTS: pki.ca } });
      await connectorProc.waitFor((l) => l.msg === "tunnel connected", "tunnel connected");
      const viaGateway = await new Promise<string>((resolve, reject) => {
        httpsRequest(`${proc.url}/relay/acme/app/echo`, { method: "POST", ca }, (res) => {
          let text = `${res.statusCode}:`;
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve(text));
        })
          .on("error", reject)
          .end("through the public port");
      });
      expect(viaGateway).toBe("200:through the public port");

      // HTTP/2 by ALPN on the admin port, as on the main one.
      session.current = http2Connect(adminTls, { ca });
      const listed = await h2request(session.current, "/ferry.admin.v1.AdminService/ListConnectors", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify({ tenant: "acme" }),
      });
      expect(session.current.alpnProtocol).toBe("h2");
      expect(listed.status).toBe(200);
      expect((JSON.parse(listed.body) as { connectors: unknown[] }).connectors).toHaveLength(1);
      const offConsole = await h2request(session.current, "/console/");
      expect(offConsole.status).toBe(404);
      expect(JSON.parse(offConsole.body).error.code).toBe("console_off");
    } finally {
      session.current?.close();
      await connectorProc?.stop();
      await proc.stop();
      await tlsTarget.close();
    }
  });
});
