import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { type CorsConfig, CorsConfigSchema } from "../../gen/ferry/config/v1/connector_config_pb.js";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { corsPolicy, type PreflightAnswer } from "../../clients/connector/cors.js";
import { durationFromMs } from "../../core/duration.js";
import { header } from "../../core/headers.js";

type Init = Partial<Omit<CorsConfig, "$typeName" | "maxAge">> & { maxAgeMs?: number };

function policy(init: Init) {
  const { maxAgeMs, ...rest } = init;
  return corsPolicy(create(CorsConfigSchema, { ...rest, maxAge: maxAgeMs === undefined ? undefined : durationFromMs(maxAgeMs) }));
}

/** Request headers as the forwarder hands them over: lower-case names. */
function hs(obj: Record<string, string>): Header[] {
  return Object.entries(obj).map(([n, v]) => header(n, v));
}

/** A header's values, all occurrences joined as a client would read them. */
function get(headers: readonly Header[], name: string): string | undefined {
  const values = headers.filter((h) => h.name === name).map((h) => h.value);
  return values.length ? values.join(", ") : undefined;
}

function preflight(p: ReturnType<typeof policy>, origin: string, method = "POST", requestHeaders?: string): PreflightAnswer | undefined {
  const h: Record<string, string> = { origin, "access-control-request-method": method };
  if (requestHeaders !== undefined) h["access-control-request-headers"] = requestHeaders;
  return p.preflight("OPTIONS", hs(h));
}

function refusal(answer: PreflightAnswer | undefined): string {
  expect(answer?.status).toBe(403);
  expect(get(answer!.headers, "content-type")).toBe("application/json");
  expect(get(answer!.headers, "access-control-allow-origin")).toBeUndefined();
  const body = JSON.parse(answer!.body!) as { error: { code: string; message: string } };
  expect(body.error.code).toBe("cors_refused");
  return body.error.message;
}

describe("corsPolicy origins", () => {
  it("allows an exact origin and echoes it, refusing its neighbours", () => {
    const p = policy({ allowedOrigins: ["https://app.example.com"] });
    const ok = preflight(p, "https://app.example.com");
    expect(ok?.status).toBe(204);
    expect(get(ok!.headers, "access-control-allow-origin")).toBe("https://app.example.com");
    for (const other of ["http://app.example.com", "https://app.example.com:8443", "https://evil.app.example.com", "https://app.example.com.evil.net"]) {
      expect(refusal(preflight(p, other))).toContain(`origin ${other} is not allowed`);
    }
  });

  it("matches origins case-insensitively and ignores a default port written in the config", () => {
    const p = policy({ allowedOrigins: ["https://App.Example.com:443", "http://localhost:80"] });
    expect(preflight(p, "https://app.example.com")?.status).toBe(204);
    expect(preflight(p, "http://localhost")?.status).toBe(204);
    expect(preflight(p, "http://localhost:8080")?.status).toBe(403);
  });

  it('answers "*" with a literal "*", whatever the origin', () => {
    const p = policy({ allowedOrigins: ["*"] });
    for (const origin of ["https://a.example", "http://127.0.0.1:5173", "null"]) {
      const ok = preflight(p, origin);
      expect(ok?.status).toBe(204);
      expect(get(ok!.headers, "access-control-allow-origin")).toBe("*");
    }
  });

  it("matches a wildcard first label only: one label, same scheme and port", () => {
    const p = policy({ allowedOrigins: ["https://*.example.com", "http://*.dev.local:3000"] });
    expect(get(preflight(p, "https://a.example.com")!.headers, "access-control-allow-origin")).toBe("https://a.example.com");
    expect(preflight(p, "https://team-1.example.com")?.status).toBe(204);
    expect(preflight(p, "http://x.dev.local:3000")?.status).toBe(204);
    for (const other of [
      "https://example.com",
      "https://a.b.example.com",
      "http://a.example.com",
      "https://a.example.com:8443",
      "https://aexample.com",
      "https://a.example.com.evil.net",
      "http://x.dev.local",
    ]) {
      expect(preflight(p, other)?.status, other).toBe(403);
    }
  });

  it.each([
    ["no origins", { allowedOrigins: [] }, /allowedOrigins is empty/],
    ['"*" with credentials', { allowedOrigins: ["*"], allowCredentials: true }, /"\*" cannot be combined with allowCredentials/],
    ["an origin with a path", { allowedOrigins: ["https://a.example/app"] }, /allowedOrigins "https:\/\/a\.example\/app" must be/],
    ["an origin without a scheme", { allowedOrigins: ["a.example"] }, /allowedOrigins "a\.example" must be/],
    ["a wildcard in the middle", { allowedOrigins: ["https://a.*.example"] }, /must be "\*" or scheme/],
    ["a bad method", { allowedOrigins: ["*"], allowedMethods: ["GET POST"] }, /allowedMethods "GET POST" is not an HTTP method/],
    ["a bad header name", { allowedOrigins: ["*"], allowedHeaders: ["x:y"] }, /allowedHeaders "x:y" is not a header name/],
    ["a bad exposed header", { allowedOrigins: ["*"], exposedHeaders: ["a b"] }, /exposedHeaders "a b" is not a header name/],
    ['exposed "*" with credentials', { allowedOrigins: ["https://a.example"], allowCredentials: true, exposedHeaders: ["*"] }, /exposedHeaders "\*"/],
  ] satisfies Array<[string, Init, RegExp]>)("refuses %s", (_what, init, message) => {
    expect(() => policy(init)).toThrow(message);
  });

  it("refuses a negative max age", () => {
    // durationFromMs clamps negatives, so the Duration is built by hand.
    const config = create(CorsConfigSchema, { allowedOrigins: ["*"], maxAge: { seconds: -5n, nanos: 0 } });
    expect(() => corsPolicy(config)).toThrow(/maxAge must not be negative/);
  });
});

describe("corsPolicy preflight", () => {
  it("leaves requests that are not preflights to the target", () => {
    const p = policy({ allowedOrigins: ["*"] });
    expect(p.preflight("OPTIONS", hs({ origin: "https://a.example" }))).toBeUndefined(); // no Access-Control-Request-Method
    expect(p.preflight("OPTIONS", hs({ "access-control-request-method": "POST" }))).toBeUndefined(); // no Origin
    expect(p.preflight("POST", hs({ origin: "https://a.example", "access-control-request-method": "POST" }))).toBeUndefined();
  });

  it("answers 204 with methods, the requested headers, max-age and Vary, and no body", () => {
    const p = policy({ allowedOrigins: ["https://a.example"] });
    const ok = preflight(p, "https://a.example", "POST", "Content-Type, connect-protocol-version,X-Grpc-Web")!;
    expect(ok.status).toBe(204);
    expect(ok.body).toBeUndefined();
    expect(get(ok.headers, "access-control-allow-methods")).toBe("GET, HEAD, POST, PUT, PATCH, DELETE");
    expect(get(ok.headers, "access-control-allow-headers")).toBe("content-type, connect-protocol-version, x-grpc-web");
    expect(get(ok.headers, "access-control-max-age")).toBe("7200");
    expect(get(ok.headers, "access-control-allow-credentials")).toBeUndefined();
    expect(get(ok.headers, "content-length")).toBe("0");
    const vary = get(ok.headers, "vary")!.split(",").map((v) => v.trim());
    expect(vary).toEqual(expect.arrayContaining(["origin", "access-control-request-method", "access-control-request-headers"]));
  });

  it("omits Allow-Headers when none were requested", () => {
    const ok = preflight(policy({ allowedOrigins: ["*"] }), "https://a.example", "GET")!;
    expect(ok.status).toBe(204);
    expect(get(ok.headers, "access-control-allow-headers")).toBeUndefined();
  });

  it("refuses a method outside allowedMethods, naming the allowed ones", () => {
    const p = policy({ allowedOrigins: ["*"], allowedMethods: ["post", "GET"] });
    expect(refusal(preflight(p, "https://a.example", "DELETE"))).toBe("method DELETE is not allowed (allowed: POST, GET)");
    const ok = preflight(p, "https://a.example", "POST")!;
    expect(get(ok.headers, "access-control-allow-methods")).toBe("POST, GET");
  });

  it("refuses request headers outside allowedHeaders, naming them", () => {
    const p = policy({ allowedOrigins: ["*"] });
    expect(refusal(preflight(p, "https://a.example", "POST", "content-type, x-secret, X-Other"))).toBe(
      "request header(s) x-secret, x-other not allowed",
    );
  });

  it("allows the CORS-safelisted header names besides an operator's own list", () => {
    const p = policy({ allowedOrigins: ["*"], allowedHeaders: ["X-Api-Key"] });
    const ok = preflight(p, "https://a.example", "POST", "content-type,x-api-key,accept")!;
    expect(ok.status).toBe(204);
    expect(get(ok.headers, "access-control-allow-headers")).toBe("content-type, x-api-key, accept");
    // The operator's list replaces the defaults.
    expect(preflight(p, "https://a.example", "POST", "connect-protocol-version")?.status).toBe(403);
  });

  it('allows any request header with allowedHeaders "*", naming them in the answer', () => {
    const p = policy({ allowedOrigins: ["https://a.example"], allowCredentials: true, allowedHeaders: ["*"] });
    const ok = preflight(p, "https://a.example", "POST", "x-anything, authorization")!;
    expect(ok.status).toBe(204);
    expect(get(ok.headers, "access-control-allow-headers")).toBe("x-anything, authorization");
  });

  it("allows the headers Connect and gRPC-Web clients send by default", () => {
    const p = policy({ allowedOrigins: ["*"] });
    const connect = "connect-protocol-version, connect-timeout-ms, content-type, authorization";
    const grpcWeb = "content-type, x-grpc-web, x-user-agent, grpc-timeout";
    expect(preflight(p, "https://a.example", "POST", connect)?.status).toBe(204);
    expect(preflight(p, "https://a.example", "POST", grpcWeb)?.status).toBe(204);
  });

  it("says Allow-Credentials: true when configured, with the echoed origin", () => {
    const p = policy({ allowedOrigins: ["https://a.example"], allowCredentials: true });
    const ok = preflight(p, "https://a.example")!;
    expect(get(ok.headers, "access-control-allow-origin")).toBe("https://a.example");
    expect(get(ok.headers, "access-control-allow-credentials")).toBe("true");
  });

  it("uses the configured max-age in whole seconds, 0 included", () => {
    expect(get(preflight(policy({ allowedOrigins: ["*"], maxAgeMs: 600_000 }), "https://a.example")!.headers, "access-control-max-age")).toBe("600");
    expect(get(preflight(policy({ allowedOrigins: ["*"], maxAgeMs: 0 }), "https://a.example")!.headers, "access-control-max-age")).toBe("0");
  });
});

describe("corsPolicy decorate", () => {
  const target = () => hs({ "content-type": "application/json", "access-control-allow-origin": "*", "access-control-allow-credentials": "true", "x-custom": "1" });

  it("replaces the target's Access-Control-* with the policy's for an allowed origin", () => {
    const p = policy({ allowedOrigins: ["https://a.example"], allowCredentials: true });
    const out = p.decorate(hs({ origin: "https://a.example" }), target());
    expect(out.filter((h) => h.name === "access-control-allow-origin").map((h) => h.value)).toEqual(["https://a.example"]);
    expect(get(out, "access-control-allow-credentials")).toBe("true");
    expect(get(out, "access-control-expose-headers")).toBe("grpc-status, grpc-message, grpc-status-details-bin, x-request-id");
    expect(get(out, "content-type")).toBe("application/json");
    expect(get(out, "x-custom")).toBe("1");
    expect(get(out, "vary")).toBe("origin");
  });

  it("drops the target's Access-Control-* and adds none for an origin not allowed", () => {
    const p = policy({ allowedOrigins: ["https://a.example"] });
    const out = p.decorate(hs({ origin: "https://evil.example" }), target());
    expect(out.some((h) => h.name.startsWith("access-control-"))).toBe(false);
    expect(get(out, "vary")).toBe("origin"); // a cache must not hand this answer to an allowed origin, nor the reverse
    expect(get(out, "x-custom")).toBe("1");
  });

  it("adds only Vary to a response to a request without Origin", () => {
    const out = policy({ allowedOrigins: ["*"] }).decorate(hs({}), hs({ "content-type": "text/plain" }));
    expect(out.map((h) => [h.name, h.value])).toEqual([
      ["content-type", "text/plain"],
      ["vary", "origin"],
    ]);
  });

  it("keeps the target's own Vary next to the policy's", () => {
    const out = policy({ allowedOrigins: ["*"] }).decorate(hs({ origin: "https://a.example" }), hs({ vary: "accept-encoding" }));
    expect(get(out, "vary")).toBe("accept-encoding, origin");
    expect(get(out, "access-control-allow-origin")).toBe("*");
  });

  it("exposes the configured headers instead of the defaults", () => {
    const p = policy({ allowedOrigins: ["*"], exposedHeaders: ["X-Echo-Header", "grpc-status"] });
    expect(get(p.decorate(hs({ origin: "https://a.example" }), []), "access-control-expose-headers")).toBe("x-echo-header, grpc-status");
  });
});
