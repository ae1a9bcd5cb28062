import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../clients/connector/connector.js";
import { startTestConnector, startTestRelay, type TestRelay } from "../helpers/in-process.js";
import { json, type Reply, request } from "../helpers/http.js";
import { startTestTarget, type TestTarget } from "../helpers/targets.js";

// CORS as plain HTTP clients see it through the relay: one target with a policy ("api"), the same
// target without one ("plain"). Node's http client, unlike a browser, lets the test set Origin.
const APP = "https://app.example.com";
let relay: TestRelay;
let target: TestTarget;
let connector: Connector;

beforeAll(async () => {
  target = await startTestTarget();
  relay = await startTestRelay();
  const key = await relay.tenantWithKey("acme");
  connector = await startTestConnector(relay.url, key, {
    api: {
      url: target.url,
      cors: { allowedOrigins: [APP], allowedMethods: ["GET", "POST"], exposedHeaders: ["x-target", "x-request-id"], allowCredentials: true, maxAge: "10m" },
    },
    plain: target.url,
  });
});

afterAll(async () => {
  await connector?.stop();
  await relay?.close();
  await target?.close();
});

const url = (targetName: string, path: string) => `${relay.url}/relay/acme/${targetName}${path}`;

function preflight(targetName: string, origin: string, method = "POST", headers = "content-type, connect-protocol-version"): Promise<Reply> {
  return request(url(targetName, "/json"), {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": method, "access-control-request-headers": headers },
  });
}

const corsHeaders = (reply: Reply) => Object.keys(reply.headers).filter((h) => h.startsWith("access-control-"));
const optionsSeen = () => target.seen.filter((r) => r.method === "OPTIONS");

describe("preflight on a target with a CORS policy", () => {
  it("is answered 204 by the connector with the policy's headers, without reaching the target", async () => {
    const before = optionsSeen().length;
    const reply = await preflight("api", APP);
    expect(reply.status).toBe(204);
    expect(reply.headers).toMatchObject({
      "access-control-allow-origin": APP,
      "access-control-allow-credentials": "true",
      "access-control-allow-methods": "GET, POST",
      "access-control-allow-headers": "content-type, connect-protocol-version",
      "access-control-max-age": "600",
    });
    expect(reply.headers.vary).toContain("origin");
    expect(reply.headers["x-request-id"]).toBeTruthy(); // the relay's own, so the answer is traceable
    expect(reply.body.length).toBe(0);
    // The preflight was answered before the reply came back; a forwarded one would be in `seen` by now.
    expect(optionsSeen().length).toBe(before);
  });

  it.each([
    ["an origin not allowed", "https://evil.example", "POST", "content-type", "origin https://evil.example is not allowed to call this target"],
    ["a method not allowed", APP, "DELETE", "content-type", "method DELETE is not allowed (allowed: GET, POST)"],
    ["a header not allowed", APP, "POST", "content-type, x-secret", "request header(s) x-secret not allowed"],
  ])("is refused 403 with a JSON reason for %s", async (_what, origin, method, headers, message) => {
    const before = optionsSeen().length;
    const reply = await preflight("api", origin, method, headers);
    expect(reply.status).toBe(403);
    expect(reply.headers["content-type"]).toBe("application/json");
    expect(corsHeaders(reply)).toEqual([]);
    expect(json(reply)).toEqual({ error: { code: "cors_refused", message } });
    expect(optionsSeen().length).toBe(before);
  });
});

describe("actual requests on a target with a CORS policy", () => {
  it("carry Allow-Origin, credentials and Expose-Headers for an allowed origin", async () => {
    const reply = await request(url("api", "/json"), { method: "POST", headers: { origin: APP, "content-type": "application/json" }, body: "{}" });
    expect(reply.status).toBe(200);
    expect(reply.headers).toMatchObject({
      "access-control-allow-origin": APP,
      "access-control-allow-credentials": "true",
      "access-control-expose-headers": "x-target, x-request-id",
      "x-target": "target",
    });
    expect(reply.headers.vary).toContain("origin");
    // The Origin reaches the target: it may still make its own decisions.
    expect(json(reply)).toMatchObject({ method: "POST", headers: { origin: APP } });
  });

  it("carry no Access-Control-* for another origin or none, yet are answered", async () => {
    for (const headers of [{ origin: "https://evil.example" }, {} as Record<string, string>]) {
      const reply = await request(url("api", "/json"), { headers });
      expect(reply.status).toBe(200);
      expect(corsHeaders(reply)).toEqual([]);
      expect(reply.headers.vary).toContain("origin");
    }
  });
});

describe("a target without a CORS setting", () => {
  it("gets preflights passed through, and its answer comes back untouched", async () => {
    const before = optionsSeen().length;
    const reply = await preflight("plain", APP, "PUT", "x-anything");
    // The test target answers OPTIONS /json like any request: 200 with what it saw.
    expect(reply.status).toBe(200);
    expect(corsHeaders(reply)).toEqual([]);
    expect(json(reply)).toMatchObject({
      method: "OPTIONS",
      url: "/json",
      headers: { origin: APP, "access-control-request-method": "PUT", "access-control-request-headers": "x-anything" },
    });
    expect(optionsSeen().length).toBe(before + 1);
  });
});
