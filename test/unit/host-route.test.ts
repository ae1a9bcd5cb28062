import { describe, expect, it } from "vitest";
import { FerryError } from "../../core/errors.js";
import { createHostRouting } from "../../services/gateway/host-route.js";

const routing = createHostRouting("Relay.Example.com");

describe("host routing", () => {
  it.each([
    ["app.acme.relay.example.com", true],
    ["app.acme.relay.example.com:8443", true],
    ["APP.Acme.RELAY.example.com.", true],
    ["x.y.acme.relay.example.com", true], // below the domain: the gateway owns it, and refuses it precisely
    ["relay.example.com", false],
    ["relay.example.com:443", false],
    ["evilrelay.example.com", false],
    ["app.acme.relay.example.com.evil.org", false],
    ["[::1]:8080", false],
    ["127.0.0.1:8080", false],
    [undefined, false],
    ["", false],
  ])("owns %s: %s", (authority, owned) => {
    expect(routing.owns(authority)).toBe(owned);
  });

  it("routes {target}.{tenant} with the whole path and query", () => {
    expect(routing.route("crm.acme.relay.example.com:443", "/auth/login?next=%2Fhome")).toEqual({
      tenant: "acme",
      target: "crm",
      path: "/auth/login",
      query: "next=%2Fhome",
      prefix: "",
    });
    expect(routing.route("crm.acme.relay.example.com", "/").path).toBe("/");
  });

  it.each([
    ["acme.relay.example.com", "/", "bad_host"],
    ["a.b.acme.relay.example.com", "/", "bad_host"],
    ["-x.acme.relay.example.com", "/", "bad_host"],
    ["crm.acme.relay.example.com", "/a/../../b", "bad_path"],
    ["crm.acme.relay.example.com", "/a%2fb", "bad_path"],
    ["crm.acme.relay.example.com", "http://elsewhere/x", "bad_path"],
  ])("refuses %s %s with %s", (authority, url, code) => {
    let error: unknown;
    try {
      routing.route(authority, url);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FerryError);
    expect((error as FerryError).code).toBe(code);
  });
});
