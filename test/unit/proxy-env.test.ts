import { describe, expect, it } from "vitest";
import { proxyFor } from "../../clients/doctor/proxy-env.js";

const relay = new URL("https://relay.example.com");
const plain = new URL("http://relay.example.com:8080");

describe("proxyFor", () => {
  it("prefers the explicit proxy", () => {
    expect(proxyFor(relay, new URL("http://p:1"), { HTTPS_PROXY: "http://q:2" })?.host).toBe("p:1");
  });

  it("takes HTTPS_PROXY for https:// relays and HTTP_PROXY for http:// ones, either case", () => {
    expect(proxyFor(relay, undefined, { HTTPS_PROXY: "http://q:2", HTTP_PROXY: "http://h:3" })?.host).toBe("q:2");
    expect(proxyFor(relay, undefined, { https_proxy: "q:2" })?.href).toBe("http://q:2/");
    expect(proxyFor(plain, undefined, { HTTPS_PROXY: "http://q:2", http_proxy: "http://h:3" })?.host).toBe("h:3");
    expect(proxyFor(relay, undefined, {})).toBeUndefined();
  });

  it.each([
    ["*", true],
    ["relay.example.com", true],
    [".example.com", true],
    ["example.com", true],
    ["*.example.com", true],
    ["example.com:443", true],
    ["example.com:8443", false],
    ["ample.com", false],
    ["other.org, localhost", false],
    ["other.org,relay.example.com", true],
  ])("NO_PROXY=%s bypasses the proxy: %s", (noProxy, bypass) => {
    expect(proxyFor(relay, undefined, { HTTPS_PROXY: "http://q:2", NO_PROXY: noProxy }) === undefined).toBe(bypass);
  });
});
