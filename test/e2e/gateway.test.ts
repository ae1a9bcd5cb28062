import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { h2c, h2request, json, request } from "../helpers/http.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";
import { until } from "../helpers/wait.js";

const execFileAsync = promisify(execFile);

// One relay, one connector with target "app", exercised the way plain clients use it.
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;
let base: string;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, { app: target.url, down: "http://127.0.0.1:9" });
  base = `${relay.url}/relay/acme/app`;
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

describe("methods and bodies", () => {
  it.each(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])("forwards %s with its body", async (method) => {
    const body = method === "GET" || method === "OPTIONS" ? undefined : `body of ${method}`;
    const res = await fetch(`${base}/echo?q=1`, { method, body });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-method")).toBe(method);
    expect(await res.text()).toBe(body ?? "");
    expect(target.seen.at(-1)).toMatchObject({ method, url: "/echo?q=1" });
  });

  it("serves an h2c upgrade request (curl --http2 on http://) as HTTP/1.1, body included", async () => {
    const body = randomBytes(200_000);
    const res = await request(`${base}/echo`, {
      method: "POST",
      headers: { upgrade: "h2c", connection: "Upgrade, HTTP2-Settings", "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA" },
      body,
    });
    expect(res.status).toBe(200);
    expect(res.body.equals(body)).toBe(true);
    const seen = target.seen.at(-1)!;
    expect(seen.headers.upgrade).toBeUndefined();
    expect(seen.headers["http2-settings"]).toBeUndefined();
    // And the real thing, from Debian's curl.
    // Not spawnSync: the relay runs in this process and must answer while curl waits.
    const curl = await execFileAsync("curl", ["-sS", "-m", "20", "--http2", "--data-binary", "hello from curl", `${base}/echo`]);
    expect(curl.stdout).toBe("hello from curl");
  });

  it("forwards HEAD without a body", async () => {
    const res = await fetch(`${base}/bytes?size=5000`, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("5000");
    expect(await res.text()).toBe("");
  });

  it("streams a chunked upload and a 20 MB body both ways intact", async () => {
    const data = randomBytes(20 * 1024 * 1024);
    const res = await fetch(`${base}/echo`, { method: "POST", body: data });
    const back = Buffer.from(await res.arrayBuffer());
    expect(res.status).toBe(200);
    expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
  });

  it("is full duplex: the response flows while the request body is still being sent", async () => {
    const req = httpRequest(`${base}/stream-echo`, { method: "POST", headers: { "transfer-encoding": "chunked" } });
    const response = new Promise<import("node:http").IncomingMessage>((resolve) => req.on("response", resolve));
    const echoed: string[] = [];
    const nextChunk = (res: import("node:http").IncomingMessage) =>
      new Promise<string>((resolve) => res.once("data", (c: Buffer) => resolve(c.toString())));
    req.write("first;");
    const res = await response;
    echoed.push(await nextChunk(res));
    // The request is still open here: the echo of part one came back before part two was sent.
    req.write("second;");
    echoed.push(await nextChunk(res));
    req.end();
    await new Promise((r) => res.on("end", r).resume());
    expect(echoed).toEqual(["first;", "second;"]);
  });

  it("passes trailers, repeated Set-Cookie and the query string", async () => {
    const t = await request(`${base}/trailers`);
    expect(t.body.toString()).toBe("part one;part two");
    expect(t.trailers).toMatchObject({ "x-checksum": "abc123", "x-status": "done" });
    const c = await fetch(`${base}/cookies`);
    // Path routing shares the relay's origin between tenants: each cookie is kept to its own target's prefix.
    expect(c.headers.getSetCookie()).toEqual(["a=1; Path=/relay/acme/app/", "b=2; HttpOnly; Path=/relay/acme/app/"]);
    const q = json(await request(`${base}/json?a=1&b=%20x&a=2`));
    expect(q.url).toBe("/json?a=1&b=%20x&a=2");
  });

  it("serves HTTP/2 (h2c) clients, trailers included", async () => {
    const session = h2c(relay.url);
    try {
      const get = await h2request(session, "/relay/acme/app/echo", { method: "POST", body: "over h2" });
      expect(get.status).toBe(200);
      expect(get.body).toBe("over h2");
      const t = await h2request(session, "/relay/acme/app/trailers");
      expect(t.trailers).toMatchObject({ "x-checksum": "abc123" });
    } finally {
      session.close();
    }
  });

  it("handles 200 concurrent requests", async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const res = await fetch(`${base}/echo`, { method: "POST", body: `request ${i}` });
        return res.text();
      }),
    );
    expect(results).toEqual(Array.from({ length: 200 }, (_, i) => `request ${i}`));
  });
});

describe("headers", () => {
  it("strips hop-by-hop request headers, keeps end-to-end ones, and sets forwarding headers", async () => {
    const seen = json<{ headers: Record<string, string> }>(
      await request(`${base}/json`, {
        headers: {
          connection: "keep-alive, x-per-hop",
          "x-per-hop": "secret",
          "keep-alive": "timeout=5",
          "proxy-authorization": "Basic Zm9vOmJhcg==",
          te: "trailers, deflate",
          "x-ferry-internal": "spoofed",
          "x-end-to-end": "yes",
          "x-forwarded-for": "6.6.6.6",
          "x-real-ip": "6.6.6.6",
          forwarded: "for=6.6.6.6",
          "x-forwarded-host": "evil.example",
          "x-forwarded-port": "443",
          "x-original-url": "/admin",
          "true-client-ip": "6.6.6.6",
          via: "1.1 evil",
        },
      }),
    ).headers;
    expect(seen["x-per-hop"]).toBeUndefined();
    expect(seen["keep-alive"]).toBeUndefined();
    expect(seen["proxy-authorization"]).toBeUndefined();
    expect(seen["x-ferry-internal"]).toBeUndefined();
    expect(seen["x-real-ip"]).toBeUndefined();
    expect(seen.te).toBe("trailers");
    expect(seen["x-end-to-end"]).toBe("yes");
    // Spoofed forwarding headers from an untrusted client are replaced by what the socket says.
    expect(seen["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen["x-forwarded-proto"]).toBe("http");
    expect(seen["x-forwarded-prefix"]).toBe("/relay/acme/app");
    expect(seen["x-forwarded-port"]).toBeUndefined();
    expect(seen["x-original-url"]).toBeUndefined();
    expect(seen["true-client-ip"]).toBeUndefined();
    expect(seen.via).toBeUndefined();
    // Without --public-host the relay knows no name for itself: none is claimed (never the client's own Host).
    expect(seen["x-forwarded-host"]).toBeUndefined();
    expect(seen.forwarded).toBe("for=127.0.0.1;proto=http");
    // The target is addressed by its own authority, not the relay's.
    expect(seen.host).toBe(new URL(target.url).host);
  });

  it("strips hop-by-hop response headers", async () => {
    const res = await request(`${base}/hop`);
    expect(res.status).toBe(200);
    expect(res.headers["x-hop-secret"]).toBeUndefined();
    expect(res.headers["proxy-authenticate"]).toBeUndefined();
    expect(res.headers["keep-alive"]).not.toBe("timeout=5");
    expect(res.headers["x-end-to-end"]).toBe("kept");
  });

  it("names --public-host in X-Forwarded-Host and Forwarded, whatever Host the client sent", async () => {
    const named = await startTestRelay({ publicHost: "relay.example.com" });
    const targets = { app: target.url, orig: { url: target.url, hostHeader: "original" } };
    const c = await startTestConnector(named.url, await named.tenantWithKey("acme"), targets, { tunnels: 1 });
    try {
      const seen = json<{ headers: Record<string, string> }>(await request(`${named.url}/relay/acme/app/json`, { headers: { host: "evil.example" } })).headers;
      expect(seen["x-forwarded-host"]).toBe("relay.example.com");
      expect(seen.forwarded).toBe('for=127.0.0.1;proto=http;host="relay.example.com"');
      // A target that wants the original Host gets the same name, never the client's.
      const orig = json<{ headers: Record<string, string> }>(await request(`${named.url}/relay/acme/orig/json`, { headers: { host: "evil.example" } })).headers;
      expect(orig.host).toBe("relay.example.com");
    } finally {
      await c.stop();
      await named.close();
    }
  });

  it("believes X-Forwarded-For only from a configured proxy", async () => {
    const trusting = await startTestRelay({ trustedProxies: ["127.0.0.0/8"] });
    const c = await startTestConnector(trusting.url, await trusting.tenantWithKey("acme"), { app: target.url }, { tunnels: 1 });
    try {
      const seen = json<{ headers: Record<string, string> }>(
        await request(`${trusting.url}/relay/acme/app/json`, {
          headers: { "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", "x-forwarded-host": "app.example" },
        }),
      ).headers;
      expect(seen["x-forwarded-for"]).toBe("203.0.113.7, 127.0.0.1");
      expect(seen["x-forwarded-proto"]).toBe("https");
      expect(seen["x-forwarded-host"]).toBe("app.example");
      expect(seen.forwarded).toBe('for=203.0.113.7;proto=https;host="app.example"');
    } finally {
      await c.stop();
      await trusting.close();
    }
  });
});

describe("paths", () => {
  it.each([
    ["/relay/acme/app/x/./y/../z/%41b%20c?k=%2F", "/x/z/Ab%20c?k=%2F"],
    ["/relay/acme/app/a/%252e%252e/b", "/a/%252e%252e/b"],
    ["/relay/acme/app/a/b/..", "/a/"],
    ["/relay/acme/app/@:!$&'()*+,;=", "/@:!$&'()*+,;="],
    ["/relay/acme/app", "/"],
    ["/relay/acme/app/", "/"],
  ])("normalises %s to %s after one decode", async (path, expected) => {
    await request(`${relay.url}${path}`);
    expect(target.seen.at(-1)!.url).toBe(expected);
  });

  it.each([
    ["encoded slash", "/relay/acme/app/a%2f..%2f..%2fx"],
    ["encoded backslash", "/relay/acme/app/a%5cb"],
    ["dot-dot out of the target", "/relay/acme/app/../other/x"],
    ["dot-dot out of the tenant", "/relay/acme/app/a/../../../x"],
    ["NUL", "/relay/acme/app/a%00b"],
    ["bad tenant name", "/relay/ACME/app/x"],
    ["missing target", "/relay/acme"],
    ["malformed escape", "/relay/acme/app/%zz"],
    ["dot segment with parameters", "/relay/acme/app/..;/x"],
  ])("rejects %s with 400", async (_, path) => {
    const res = await request(`${relay.url}${path}`);
    expect(res.status).toBe(400);
    expect(json<{ error: { code: string } }>(res).error.code).toBe("bad_path");
  });

  it("answers unknown paths with a JSON 404", async () => {
    const res = await request(`${relay.url}/nothing-here`);
    expect(res.status).toBe(404);
    expect(json<{ error: { code: string } }>(res).error.code).toBe("not_found");
  });
});

describe("errors", () => {
  const errorOf = (r: { body: Buffer }) => json<{ error: { code: string; message: string } }>(r as never).error;

  it("404 for an unknown tenant or target", async () => {
    const t = await request(`${relay.url}/relay/nobody/app/x`);
    expect(t.status).toBe(404);
    expect(errorOf(t).code).toBe("tenant_not_found");
    const g = await request(`${relay.url}/relay/acme/nothing/x`);
    expect(g.status).toBe(404);
    expect(errorOf(g).code).toBe("target_not_found");
  });

  it("503 with Retry-After at once when the tenant has no connector", async () => {
    await relay.admin.createTenant({ name: "lonely" });
    const started = Date.now();
    const res = await request(`${relay.url}/relay/lonely/app/x`);
    expect(res.status).toBe(503);
    expect(errorOf(res).code).toBe("no_connector");
    expect(res.headers["retry-after"]).toBeDefined();
    // "At once": nowhere near the 100 s request timeout.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("502 when the target is unreachable", async () => {
    const res = await request(`${relay.url}/relay/acme/down/x`);
    expect(res.status).toBe(502);
    expect(errorOf(res)).toEqual({ code: "target_unreachable", message: 'target "down" refused the connection' });
  });

  it("delivers a target's early answer (413 before reading the body) instead of an error", async () => {
    const res = await fetch(`${base}/early`, { method: "POST", body: Buffer.alloc(20 * 1024 * 1024) }).catch((e: Error) => e);
    expect(res).toBeInstanceOf(Response);
    expect((res as Response).status).toBe(413);
    expect(await (res as Response).text()).toBe("too big");
  });

  it("passes the target's own error statuses through untouched", async () => {
    const res = await request(`${base}/no-such-endpoint`);
    expect(res.status).toBe(404);
    expect(res.body.toString()).toBe("no /no-such-endpoint");
  });

  it("aborts the target's request when the client goes away", async () => {
    const controller = new AbortController();
    const pending = request(`${base}/hang`, { signal: controller.signal }).catch((e: Error) => e);
    const aborted = target.nextAbort();
    // Wait until the target has the request before the client gives up.
    await until(() => target.seen.some((s) => s.url === "/hang"));
    controller.abort();
    expect(await aborted).toBe("/hang");
    expect(await pending).toBeInstanceOf(Error);
  });

  it("aborts the target's request when the client dies mid-upload", async () => {
    const req = httpRequest(`${base}/sink`, { method: "POST", headers: { "content-length": "10000000" } });
    req.on("error", () => {});
    req.write(Buffer.alloc(1_000_000));
    const aborted = target.nextAbort();
    await until(() => target.seen.some((s) => s.url === "/sink" && s.headers["content-length"] === "10000000"));
    req.destroy();
    expect(await aborted).toBe("/sink");
  });
});

describe("timeouts", () => {
  it("504 when the target is slower than the request timeout", async () => {
    const impatient = await startTestRelay({ requestTimeoutMs: 300 });
    const c = await startTestConnector(impatient.url, await impatient.tenantWithKey("acme"), { app: target.url }, { tunnels: 1 });
    try {
      const aborted = target.nextAbort();
      const res = await request(`${impatient.url}/relay/acme/app/slow?ms=30000`);
      expect(res.status).toBe(504);
      expect(json<{ error: { code: string } }>(res).error.code).toBe("timeout");
      // The target's request is cancelled too, not left running.
      expect(await aborted).toBe("/slow?ms=30000");
    } finally {
      await c.stop();
      await impatient.close();
    }
  });
});
