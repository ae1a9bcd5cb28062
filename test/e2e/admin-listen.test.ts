import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminClient } from "../../clients/cli/admin-client.js";
import type { Connector } from "../../clients/connector/connector.js";
import { request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { ADMIN_TOKEN, runFerry, startRelayProcess, tempDir } from "../helpers/processes.js";
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
    expect(JSON.parse(refused.body.toString()).error.message).toMatch(/not served on this port/);
  });

  it("keeps clients and connectors on the public port, and off the admin port", async () => {
    expect((await request(`${relay.url}/relay/acme/app/json`)).status).toBe(200);
    expect((await request(`${relay.url}/.well-known/ferry/jwks.json`)).status).toBe(200);
    const onAdmin = await request(`${adminUrl}/relay/acme/app/json`);
    expect(onAdmin.status).toBe(404);
    expect(JSON.parse(onAdmin.body.toString()).error.message).toMatch(/admin API only/);
    for (const base of [relay.url, adminUrl]) expect((await request(`${base}/healthz`)).status).toBe(200);
  });

  it("moves /metrics and the console to the admin port", async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    expect((await request(`${adminUrl}/metrics`, { headers: auth })).status).toBe(200);
    expect((await request(`${relay.url}/metrics`, { headers: auth })).status).toBe(404);
    expect((await request(`${adminUrl}/console/`)).status).toBe(200);
    expect((await request(`${relay.url}/console/`)).status).toBe(404);
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
    const script = await request(`${adminUrl}/console/app.js`);
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    // Revalidated cheaply.
    const again = await request(`${adminUrl}/console/app.js`, { headers: { "if-none-match": String(script.headers.etag) } });
    expect(again.status).toBe(304);
  });

  it("redirects /console, and answers 404 for unknown files and any way out of the directory, 405 for writes", async () => {
    const redirect = await request(`${adminUrl}/console`);
    expect(redirect.status).toBe(308);
    expect(redirect.headers.location).toBe("/console/");
    for (const path of ["/console/missing.js", "/console/notes.md", "/console/../package.json", "/console/%2e%2e/package.json", "/console/..%2fpackage.json", "/console//etc/passwd"]) {
      const r = await request(`${adminUrl}${path}`);
      expect(r.status, path).toBe(404);
      expect(r.body.toString()).not.toContain('"name": "ferry"');
    }
    const post = await request(`${adminUrl}/console/`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD");
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
    const unbuilt = await startTestRelay({ consoleDir: tempDir() });
    try {
      const r = await request(`${unbuilt.url}/console/`);
      expect(JSON.parse(r.body.toString()).error).toMatchObject({ code: "console_not_built", message: "the console is not built: run npm run build" });
    } finally {
      await unbuilt.close();
    }
  });
});

describe("ferry relay", () => {
  it("refuses --no-public-admin without --admin-listen, and logs the admin URL with it", async () => {
    const refused = await runFerry(["relay", "--listen", "127.0.0.1:0", "--data", tempDir(), "--no-public-admin"], { FERRY_ADMIN_TOKEN: ADMIN_TOKEN });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--no-public-admin needs --admin-listen/);
    const proc = await startRelayProcess({ args: ["--admin-listen", "127.0.0.1:0", "--no-public-admin"] });
    try {
      const line = await proc.waitFor((l) => l.msg === "admin listening", "admin listening");
      expect(line.publicAdmin).toBe(false);
      expect((await createAdminClient(String(line.url), ADMIN_TOKEN).listTenants({})).tenants).toEqual([]);
    } finally {
      await proc.stop();
    }
  });
});
