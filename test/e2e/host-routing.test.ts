import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { h2c, h2request, json, request } from "../helpers/http.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { tempDir } from "../helpers/processes.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// An app with root context paths (/auth, /rest, /webclient) and absolute links, served by
// Python's http.server (nobody here wrote it): it works through host routing, not under a prefix.
const INDEX = `<html><body>
<a href="/auth/login.html">log in</a>
<script src="/webclient/app.js"></script>
<a href="/rest/data.json">data</a>
</body></html>`;

let relay: TestRelay;
let connector: Connector;
let target: TestTarget;
let python: { url: string; close(): Promise<void> };
let port: number;
const hostOf = (name: string) => `${name}.relay.test:${port}`;

beforeAll(async () => {
  [target, python] = await Promise.all([startTestTarget(), startStaticSite()]);
  relay = await startTestRelay({ baseDomain: "Relay.Test" });
  port = relay.server.port;
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, {
    crm: python.url,
    app: target.url,
    orig: { url: target.url, hostHeader: "original" },
    fixed: { url: target.url, hostHeader: "crm.internal:8443" },
  });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await Promise.all([target?.close(), python?.close()]);
});

describe("host-based routing", () => {
  it("serves an app with absolute links and root context paths at its own host name", async () => {
    const page = await request(`${relay.url}/`, { headers: { host: hostOf("crm.acme") } });
    expect(page.status).toBe(200);
    const links = [...page.body.toString().matchAll(/(?:href|src)="([^"]+)"/g)].map((m) => m[1]!);
    expect(links).toEqual(["/auth/login.html", "/webclient/app.js", "/rest/data.json"]);
    for (const link of links) {
      const res = await request(`${relay.url}${link}`, { headers: { host: hostOf("crm.acme") } });
      expect(res.status, link).toBe(200);
      expect(res.body.toString()).toBe(`content of ${link}`);
    }
    // Under a path prefix the same absolute links miss the app: the reason host routing exists.
    expect((await request(`${relay.url}/auth/login.html`)).status).toBe(404);
  });

  it("passes the path and query untouched, with no prefix header, and the target's own Host by default", async () => {
    const res = await request(`${relay.url}/json/a%20b/c?x=1&y=%2F`, { headers: { host: hostOf("app.acme") } });
    expect(res.status).toBe(404); // the test target's own answer for a path it does not serve
    const seen = target.seen.at(-1)!;
    expect(seen.url).toBe("/json/a%20b/c?x=1&y=%2F");
    expect(seen.headers.host).toBe(new URL(target.url).host);
    expect(seen.headers["x-forwarded-host"]).toBe(hostOf("app.acme"));
    expect(seen.headers["x-forwarded-prefix"]).toBeUndefined();
  });

  it("shows the target the original Host, or a fixed one, when its settings ask", async () => {
    await request(`${relay.url}/json`, { headers: { host: hostOf("orig.acme") } });
    expect(target.seen.at(-1)!.headers.host).toBe(hostOf("orig.acme"));
    await request(`${relay.url}/json`, { headers: { host: hostOf("fixed.acme") } });
    expect(target.seen.at(-1)!.headers.host).toBe("crm.internal:8443");
    // Path routing with the original Host, on a relay without --public-host: it knows no name of its own to
    // vouch for, and the client's Host is the client's word, so the target gets its own.
    await request(`${relay.url}/relay/acme/orig/json`, { headers: { host: "evil.example" } });
    expect(target.seen.at(-1)!.headers.host).toBe(new URL(target.url).host);
    expect(target.seen.at(-1)!.headers["x-forwarded-host"]).toBeUndefined();
  });

  it("routes HTTP/2 requests by :authority", async () => {
    const session = h2c(relay.url);
    try {
      const res = await h2request(session, "/json?via=h2", { headers: { ":authority": hostOf("app.acme") } });
      expect(res.status).toBe(200);
      expect(target.seen.at(-1)!.url).toBe("/json?via=h2");
    } finally {
      session.close();
    }
  });

  it("gives every path of a host-routed name to the target, the relay's own included", async () => {
    await request(`${relay.url}/healthz`, { headers: { host: hostOf("app.acme") } });
    expect(target.seen.at(-1)!.url).toBe("/healthz");
    await request(`${relay.url}/relay/acme/app/x`, { headers: { host: hostOf("app.acme") } });
    expect(target.seen.at(-1)!.url).toBe("/relay/acme/app/x");
    // The base domain itself, and names outside it, are the relay's.
    const health = await request(`${relay.url}/healthz`, { headers: { host: `relay.test:${port}` } });
    expect(json(health)).toMatchObject({ status: "ok" });
  });

  it.each([
    ["a name with one label", "acme.relay.test", 404, "bad_host"],
    ["a name with three labels", "a.app.acme.relay.test", 404, "bad_host"],
    ["a label that is not a DNS label", "app_1.acme.relay.test", 404, "bad_host"],
    ["an unknown tenant", "app.nobody.relay.test", 404, "tenant_not_found"],
    ["an unknown target", "nothing.acme.relay.test", 404, "target_not_found"],
  ])("answers %s with a precise error", async (_what, host, status, code) => {
    const res = await request(`${relay.url}/x`, { headers: { host } });
    expect(res.status).toBe(status);
    expect(json<{ error: { code: string } }>(res).error.code).toBe(code);
  });

  it("normalises the path and refuses climbing above the root", async () => {
    const res = await request(`${relay.url}/a/../../etc/passwd`, { headers: { host: hostOf("app.acme") } });
    expect(res.status).toBe(400);
    expect(json<{ error: { code: string } }>(res).error.code).toBe("bad_path");
    await request(`${relay.url}/json/./a/../b`, { headers: { host: hostOf("app.acme") } });
    expect(target.seen.at(-1)!.url).toBe("/json/b");
  });

  it("matches host names case-insensitively, with or without a trailing dot", async () => {
    await request(`${relay.url}/json/case`, { headers: { host: `APP.Acme.relay.TEST.:${port}` } });
    expect(target.seen.at(-1)!.url).toBe("/json/case");
  });
});

/** `python3 -m http.server` on port 0 over a directory with the app's files. */
async function startStaticSite(): Promise<{ url: string; close(): Promise<void> }> {
  const root = tempDir("ferry-site-");
  writeFileSync(join(root, "index.html"), INDEX);
  for (const file of ["/auth/login.html", "/webclient/app.js", "/rest/data.json"]) {
    mkdirSync(join(root, file, ".."), { recursive: true });
    writeFileSync(join(root, file), `content of ${file}`);
  }
  const child: ChildProcess = spawn("/usr/bin/python3", ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", root], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`python3 http.server exited with ${code}`)));
    createInterface({ input: child.stdout! }).on("line", (l) => {
      if (l.includes("port")) resolve(l);
    });
  });
  const portMatch = /port (\d+)/.exec(line)!;
  return {
    url: `http://127.0.0.1:${portMatch[1]}`,
    async close() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await exited;
    },
  };
}
