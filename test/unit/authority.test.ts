import { describe, expect, it } from "vitest";
import { authorityOf, isAuthority, requestAuthority } from "../../services/gateway/authority.js";
import type { NodeRequest } from "../../services/http/http-error.js";

/** Just what requestAuthority reads of a request: its raw header list, and on HTTP/2 its :authority. */
function h1(...raw: string[]): NodeRequest {
  return { rawHeaders: raw, headers: {} } as unknown as NodeRequest;
}
function h2(authority: string | undefined, ...raw: string[]): NodeRequest {
  return { rawHeaders: raw, headers: authority === undefined ? {} : { ":authority": authority }, stream: {} } as unknown as NodeRequest;
}

describe("requestAuthority", () => {
  it.each([
    [h1("Host", "relay.example.com"), "relay.example.com"],
    [h1("host", "relay.example.com:8443", "Accept", "*/*"), "relay.example.com:8443"],
    [h1("Host", "[2001:db8::1]:443"), "[2001:db8::1]:443"],
    [h1("Host", "203.0.113.7"), "203.0.113.7"],
    [h1("Accept", "*/*"), undefined],
    [h2("app.acme.example.com"), "app.acme.example.com"],
    [h2("app.acme.example.com", "host", "App.Acme.Example.com."), "app.acme.example.com"],
    [h2(undefined, "host", "relay.example.com"), "relay.example.com"],
  ])("reads %#", (req, expected) => {
    expect(requestAuthority(req)).toBe(expected);
  });

  it.each([
    ["two Host headers", h1("Host", "a.example", "Host", "b.example")],
    ["two equal Host headers", h1("Host", "a.example", "host", "a.example")],
    [":authority and a different host", h2("a.example", "host", "b.example")],
    ["a Host with a path", h1("Host", "a.example/x")],
    ["a Host with userinfo", h1("Host", "user@a.example")],
    ["a Host with a space", h1("Host", "a example")],
    ["a port that is not a number", h1("Host", "a.example:http")],
    ["an :authority with a path", h2("a.example/x")],
  ])("refuses %s with 400 bad_host", (_what, req) => {
    expect(() => requestAuthority(req)).toThrow(expect.objectContaining({ kind: "invalid_argument", code: "bad_host" }));
    expect(authorityOf(req)).toBeUndefined();
  });

  it("bounds the length of a name", () => {
    expect(isAuthority(`${"a".repeat(255)}:443`)).toBe(true);
    expect(isAuthority("a".repeat(300))).toBe(false);
  });
});
