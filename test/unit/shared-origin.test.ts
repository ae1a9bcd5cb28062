import { describe, expect, it } from "vitest";
import { header } from "../../core/headers.js";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { scopeSetCookie } from "../../services/gateway/cookie-scope.js";
import { crossTenantRefusal, isolatePathRouted } from "../../services/gateway/shared-origin.js";

const PREFIX = "/relay/acme/crm";
const pairs = (headers: Header[]) => headers.map((h) => [h.name, h.value]);

describe("scopeSetCookie", () => {
  it.each([
    ["no Path", "sid=1", "sid=1; Path=/relay/acme/crm/"],
    ["Path=/", "sid=1; Path=/", "sid=1; Path=/relay/acme/crm/"],
    ["the target's own path", "sid=1; Path=/api", "sid=1; Path=/relay/acme/crm/api"],
    ["a path inside the prefix", "sid=1; Path=/relay/acme/crm/api", "sid=1; Path=/relay/acme/crm/api"],
    ["the prefix itself", "sid=1; path=/relay/acme/crm", "sid=1; Path=/relay/acme/crm"],
    ["another target's prefix", "sid=1; Path=/relay/acme/wiki/", "sid=1; Path=/relay/acme/crm/relay/acme/wiki/"],
    ["another tenant's prefix", "sid=1; Path=/relay/other/", "sid=1; Path=/relay/acme/crm/relay/other/"],
    ["a prefix look-alike", "sid=1; Path=/relay/acme/crmx", "sid=1; Path=/relay/acme/crm/relay/acme/crmx"],
    ["a relative path", "sid=1; Path=api", "sid=1; Path=/relay/acme/crm/"],
    ["an empty path", "sid=1; Path=", "sid=1; Path=/relay/acme/crm/"],
    ["dot segments", "sid=1; Path=/relay/acme/crm/../../other", "sid=1; Path=/relay/acme/crm/"],
    ["several paths (the last counts for browsers)", "sid=1; Path=/relay/acme/crm/a; Path=/", "sid=1; Path=/relay/acme/crm/"],
  ])("scopes a cookie with %s", (_what, value, expected) => {
    expect(scopeSetCookie(value, PREFIX)).toBe(expected);
  });

  it("drops Domain, keeps every other attribute as written", () => {
    expect(scopeSetCookie("sid=a=b; Domain=.example.com; Secure; HttpOnly; SameSite=Lax; Max-Age=60; domain=x", PREFIX)).toBe(
      "sid=a=b; Secure; HttpOnly; SameSite=Lax; Max-Age=60; Path=/relay/acme/crm/",
    );
  });

  it("keeps __Secure- cookies and drops __Host- ones (they must have Path=/, which cannot be allowed here)", () => {
    expect(scopeSetCookie("__Secure-id=1; Secure; Path=/", PREFIX)).toBe("__Secure-id=1; Secure; Path=/relay/acme/crm/");
    expect(scopeSetCookie("__Host-id=1; Secure; Path=/", PREFIX)).toBeUndefined();
    expect(scopeSetCookie("__host-id=1; Secure; Path=/", PREFIX)).toBeUndefined();
  });
});

describe("isolatePathRouted", () => {
  it("scopes every Set-Cookie and leaves other headers alone", () => {
    const out = isolatePathRouted([header("set-cookie", "a=1"), header("x-a", "1"), header("set-cookie", "__Host-b=2; Path=/; Secure"), header("set-cookie", "c=3; Path=/x")], PREFIX);
    expect(pairs(out)).toEqual([
      ["set-cookie", "a=1; Path=/relay/acme/crm/"],
      ["x-a", "1"],
      ["set-cookie", "c=3; Path=/relay/acme/crm/x"],
    ]);
  });

  it.each([
    ["no-referrer", "same-origin"],
    ["origin", "same-origin"],
    ["strict-origin", "same-origin"],
    ["No-Referrer", "same-origin"],
    ["no-referrer, strict-origin-when-cross-origin", "same-origin, strict-origin-when-cross-origin"],
    ["strict-origin-when-cross-origin", "strict-origin-when-cross-origin"],
    ["same-origin", "same-origin"],
    ["origin-when-cross-origin", "origin-when-cross-origin"],
    ["unsafe-url", "unsafe-url"],
    ["no-referrer-when-downgrade", "no-referrer-when-downgrade"],
  ])("turns Referrer-Policy %s into %s (the same origin gets the path)", (value, expected) => {
    expect(pairs(isolatePathRouted([header("referrer-policy", value)], PREFIX))).toEqual([["referrer-policy", expected]]);
  });

  it("scopes Service-Worker-Allowed to the prefix and drops Clear-Site-Data (both would reach every tenant)", () => {
    const out = isolatePathRouted([header("service-worker-allowed", "/"), header("clear-site-data", '"cookies", "storage"'), header("x-a", "1")], PREFIX);
    expect(pairs(out)).toEqual([
      ["service-worker-allowed", "/relay/acme/crm/"],
      ["x-a", "1"],
    ]);
    expect(pairs(isolatePathRouted([header("service-worker-allowed", "/relay/acme/crm/app/")], PREFIX))).toEqual([["service-worker-allowed", "/relay/acme/crm/app/"]]);
  });

  it("returns the same list when there is nothing to change", () => {
    const list = [header("content-type", "text/html")];
    expect(isolatePathRouted(list, PREFIX)).toBe(list);
  });
});

describe("crossTenantRefusal", () => {
  const check = (headers: Record<string, string>) => crossTenantRefusal(headers, "acme");

  it.each([
    ["no Fetch Metadata (not a browser, or an old one)", {}],
    ["a navigation the user started", { "sec-fetch-site": "none" }],
    ["a request from another site (it cannot read the answer)", { "sec-fetch-site": "cross-site", referer: "https://evil.example/" }],
    ["a request from a sibling host", { "sec-fetch-site": "same-site" }],
    ["a page of the same tenant", { "sec-fetch-site": "same-origin", referer: "https://relay.example.com/relay/acme/crm/index.html" }],
    ["a page of another target of the same tenant", { "sec-fetch-site": "same-origin", referer: "https://relay.example.com/relay/acme/wiki/" }],
    ["a WebSocket (never has a Referer)", { "sec-fetch-site": "same-origin", "sec-fetch-mode": "websocket" }],
  ])("lets through %s", (_what, headers) => {
    expect(check(headers)).toBeUndefined();
  });

  it.each([
    ["a page of another tenant", { "sec-fetch-site": "same-origin", referer: "https://relay.example.com/relay/other/app/" }],
    ["a tenant look-alike", { "sec-fetch-site": "same-origin", referer: "https://relay.example.com/relay/acme-evil/app/" }],
    ["the tenant's name without a path", { "sec-fetch-site": "same-origin", referer: "https://relay.example.com/relay/acme" }],
    ["a page outside /relay/", { "sec-fetch-site": "same-origin", referer: "https://relay.example.com/acme/" }],
    ["no Referer", { "sec-fetch-site": "same-origin" }],
    ["a Referer that is not a URL", { "sec-fetch-site": "same-origin", referer: "not a url" }],
  ])("refuses %s with 403 cross_tenant_request", (_what, headers) => {
    expect(check(headers)).toMatchObject({ kind: "permission_denied", code: "cross_tenant_request" });
  });
});
