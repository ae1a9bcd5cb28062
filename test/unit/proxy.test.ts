import { describe, expect, it } from "vitest";
import { bypassesProxy, proxyFor } from "../../clients/connector/proxy.js";

const https = new URL("https://relay.corp.example:443");
const http = new URL("http://relay.example.com:8080");

describe("proxyFor", () => {
  it("takes HTTPS_PROXY for https:// relays and HTTP_PROXY for http:// ones, lower case first", () => {
    const env = { HTTPS_PROXY: "http://upper:3128", https_proxy: "http://lower:3128", HTTP_PROXY: "http://plain:3128" };
    expect(proxyFor(https, undefined, env)?.host).toBe("lower:3128");
    expect(proxyFor(http, undefined, env)?.host).toBe("plain:3128");
    expect(proxyFor(http, undefined, { HTTPS_PROXY: "http://upper:3128" })).toBeUndefined();
  });

  it("treats an empty variable as unset and accepts host:port without a scheme", () => {
    expect(proxyFor(https, undefined, { https_proxy: "", HTTPS_PROXY: "proxy.corp:3128" })?.href).toBe("http://proxy.corp:3128/");
  });

  it("prefers the configured proxy, but NO_PROXY still applies to it", () => {
    const configured = new URL("http://user:pw@configured:8080");
    expect(proxyFor(https, configured, { HTTPS_PROXY: "http://env:3128" })?.host).toBe("configured:8080");
    expect(proxyFor(https, configured, { NO_PROXY: ".example" })).toBeUndefined();
  });

  it("refuses a proxy URL that is not http://", () => {
    expect(() => proxyFor(https, undefined, { HTTPS_PROXY: "socks5://p:1080" })).toThrow(/must be an http:\/\/ proxy/);
  });
});

describe("bypassesProxy (NO_PROXY)", () => {
  it.each([
    ["*", true],
    ["relay.corp.example", true],
    ["corp.example", true], // a bare domain covers its subdomains, as curl does
    [".corp.example", true],
    ["*.corp.example", true],
    [".example", true],
    ["other.example", false],
    ["orp.example", false], // a suffix must end at a label boundary
    ["relay.corp.example:443", true],
    ["relay.corp.example:8443", false],
    ["localhost, 10.0.0.1 ,relay.corp.example", true],
    ["", false],
  ])("%j -> %s", (noProxy, expected) => {
    expect(bypassesProxy(https, noProxy)).toBe(expected);
  });

  it("matches IP addresses and the default port of the scheme", () => {
    expect(bypassesProxy(new URL("http://127.0.0.1:7000"), "127.0.0.1")).toBe(true);
    expect(bypassesProxy(new URL("http://127.0.0.1"), "127.0.0.1:80")).toBe(true);
    expect(bypassesProxy(new URL("https://[::1]:443"), "[::1]:443")).toBe(true);
  });
});
