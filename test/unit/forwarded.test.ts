import { describe, expect, it } from "vitest";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { type ForwardedInput, forwardingHeaders, parseTrustedProxies } from "../../services/gateway/forwarded.js";

function input(over: Partial<ForwardedInput> = {}): ForwardedInput {
  return { remoteAddress: "203.0.113.5", encrypted: false, host: "relay.example.com", incoming: {}, prefix: "/relay/acme/web", ...over };
}

function asMap(headers: Header[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers) {
    expect(out[h.name]).toBeUndefined(); // each forwarding header exactly once
    out[h.name] = h.value;
  }
  return out;
}

const spoof = { forwardedFor: "6.6.6.6, 7.7.7.7", proto: "https", host: "evil.example", via: "1.1 evil" };

describe("forwardingHeaders from an untrusted peer", () => {
  it.each([
    ["no trust list", undefined],
    ["a trust list without the peer", parseTrustedProxies(["10.0.0.0/8", "192.0.2.1"])],
  ])("ignores spoofed forwarding headers (%s)", (_name, trusted) => {
    const { clientAddress, headers } = forwardingHeaders(input({ incoming: spoof }), trusted);
    expect(clientAddress).toBe("203.0.113.5");
    expect(asMap(headers)).toEqual({
      "x-forwarded-for": "203.0.113.5",
      "x-forwarded-proto": "http",
      "x-forwarded-host": "relay.example.com",
      "x-forwarded-prefix": "/relay/acme/web",
      forwarded: 'for=203.0.113.5;proto=http;host="relay.example.com"',
    });
  });

  it("names no host when the relay knows none: the client's own Host is never repeated", () => {
    const { host, headers } = forwardingHeaders(input({ host: undefined, incoming: spoof }), undefined);
    expect(host).toBeUndefined();
    const h = asMap(headers);
    expect(h["x-forwarded-host"]).toBeUndefined();
    expect(h.forwarded).toBe("for=203.0.113.5;proto=http");
  });

  it("returns the host it vouches for, for the exchange's authority", () => {
    expect(forwardingHeaders(input({ host: "app.acme.relay.example.com:8443" }), undefined).host).toBe("app.acme.relay.example.com:8443");
  });


  it("takes the proto from the socket", () => {
    const { headers } = forwardingHeaders(input({ encrypted: true, incoming: { proto: "http" } }), undefined);
    const h = asMap(headers);
    expect(h["x-forwarded-proto"]).toBe("https");
    expect(h.forwarded).toContain(";proto=https;");
  });

  it("unmaps an IPv4-mapped IPv6 peer", () => {
    const { clientAddress, headers } = forwardingHeaders(input({ remoteAddress: "::ffff:127.0.0.1" }), undefined);
    expect(clientAddress).toBe("127.0.0.1");
    expect(asMap(headers)["x-forwarded-for"]).toBe("127.0.0.1");
    expect(asMap(headers).forwarded).toMatch(/^for=127\.0\.0\.1;/);
  });

  it.each([
    ["::1", 'for="[::1]";'],
    ["2001:db8::7", 'for="[2001:db8::7]";'],
  ])("quotes and brackets an IPv6 client in Forwarded (%s)", (address, expected) => {
    const { clientAddress, headers } = forwardingHeaders(input({ remoteAddress: address }), undefined);
    expect(clientAddress).toBe(address);
    const h = asMap(headers);
    expect(h.forwarded?.startsWith(expected)).toBe(true);
    expect(h["x-forwarded-for"]).toBe(address);
  });

  it("strips quotes and backslashes from the host in Forwarded", () => {
    const { headers } = forwardingHeaders(input({ host: 'a"b\\c:8080' }), undefined);
    expect(asMap(headers).forwarded).toBe('for=203.0.113.5;proto=http;host="abc:8080"');
  });
});

describe("forwardingHeaders from a trusted proxy", () => {
  it("believes X-Forwarded-* from an exactly listed proxy and appends the peer to the chain", () => {
    const trusted = parseTrustedProxies(["10.0.0.1"]);
    const { clientAddress, headers } = forwardingHeaders(
      input({ remoteAddress: "10.0.0.1", incoming: { forwardedFor: "6.6.6.6, 198.51.100.9", proto: "https", host: "app.example", via: "1.1 lb" } }),
      trusted,
    );
    expect(clientAddress).toBe("198.51.100.9");
    expect(asMap(headers)).toEqual({
      "x-forwarded-for": "6.6.6.6, 198.51.100.9, 10.0.0.1",
      "x-forwarded-proto": "https",
      "x-forwarded-host": "app.example",
      "x-forwarded-prefix": "/relay/acme/web",
      forwarded: 'for=198.51.100.9;proto=https;host="app.example"',
      via: "1.1 lb",
    });
  });

  it("takes a trusted proxy's X-Forwarded-Host even when the relay knows no host itself", () => {
    const trusted = parseTrustedProxies(["10.0.0.1"]);
    const { host } = forwardingHeaders(input({ remoteAddress: "10.0.0.1", host: undefined, incoming: { host: "app.example" } }), trusted);
    expect(host).toBe("app.example");
  });

  it("skips every trusted hop in a CIDR range to find the right-most untrusted address", () => {
    const trusted = parseTrustedProxies(["10.0.0.0/8"]);
    const { clientAddress, headers } = forwardingHeaders(
      input({ remoteAddress: "10.0.0.2", incoming: { forwardedFor: "198.51.100.1,203.0.113.7 , 10.9.9.9" } }),
      trusted,
    );
    expect(clientAddress).toBe("203.0.113.7");
    expect(asMap(headers)["x-forwarded-for"]).toBe("198.51.100.1, 203.0.113.7, 10.9.9.9, 10.0.0.2");
  });

  it("falls back to the left-most address when every hop is trusted", () => {
    const trusted = parseTrustedProxies(["10.0.0.0/8"]);
    const { clientAddress } = forwardingHeaders(input({ remoteAddress: "10.0.0.2", incoming: { forwardedFor: "10.1.1.1, 10.2.2.2" } }), trusted);
    expect(clientAddress).toBe("10.1.1.1");
  });

  it("uses the peer when a trusted proxy sends no X-Forwarded-For", () => {
    const trusted = parseTrustedProxies(["10.0.0.0/8"]);
    const { clientAddress, headers } = forwardingHeaders(input({ remoteAddress: "10.0.0.2" }), trusted);
    expect(clientAddress).toBe("10.0.0.2");
    expect(asMap(headers)["x-forwarded-for"]).toBe("10.0.0.2");
  });

  it("does not throw on garbage entries and never treats them as trusted hops", () => {
    const trusted = parseTrustedProxies(["10.0.0.0/8"]);
    const run = () =>
      forwardingHeaders(input({ remoteAddress: "10.0.0.2", incoming: { forwardedFor: "unknown, 198.51.100.4, , not an ip, 10.3.3.3" } }), trusted);
    expect(run).not.toThrow();
    const { clientAddress, headers } = run();
    // Garbage stops the walk; the last hop we can vouch for (the proxy that reported it) stands in.
    expect(clientAddress).toBe("10.3.3.3");
    expect(asMap(headers).forwarded).toMatch(/^for=10\.3\.3\.3;/);
    expect(asMap(headers)["x-forwarded-for"]).toBe("unknown, 198.51.100.4, not an ip, 10.3.3.3, 10.0.0.2");

    const left = forwardingHeaders(input({ remoteAddress: "10.0.0.2", incoming: { forwardedFor: "unknown, 198.51.100.4" } }), trusted);
    expect(left.clientAddress).toBe("198.51.100.4");
  });

  it("matches an IPv4-mapped IPv6 peer against IPv4 trust entries", () => {
    const trusted = parseTrustedProxies(["127.0.0.1"]);
    const { clientAddress, headers } = forwardingHeaders(input({ remoteAddress: "::ffff:127.0.0.1", incoming: { forwardedFor: "198.51.100.4" } }), trusted);
    expect(clientAddress).toBe("198.51.100.4");
    expect(asMap(headers)["x-forwarded-for"]).toBe("198.51.100.4, 127.0.0.1");
  });

  it("trusts IPv6 entries and brackets an IPv6 client", () => {
    const trusted = parseTrustedProxies(["fd00::/8", "::1"]);
    const { clientAddress, headers } = forwardingHeaders(input({ remoteAddress: "::1", incoming: { forwardedFor: "2001:db8::9, fd00::5" } }), trusted);
    expect(clientAddress).toBe("2001:db8::9");
    expect(asMap(headers).forwarded?.startsWith('for="[2001:db8::9]";')).toBe(true);
  });

  it("believes only http or https as the forwarded proto", () => {
    const trusted = parseTrustedProxies(["10.0.0.1"]);
    const { headers } = forwardingHeaders(input({ remoteAddress: "10.0.0.1", encrypted: true, incoming: { proto: "ftp" } }), trusted);
    expect(asMap(headers)["x-forwarded-proto"]).toBe("https");
  });
});

describe("parseTrustedProxies", () => {
  it("returns undefined for no entries", () => {
    expect(parseTrustedProxies([])).toBeUndefined();
  });

  it("accepts addresses and CIDR ranges of both families", () => {
    const list = parseTrustedProxies(["192.0.2.1", "10.0.0.0/8", "::1", "fd00::/8"])!;
    expect(list.check("192.0.2.1", "ipv4")).toBe(true);
    expect(list.check("192.0.2.2", "ipv4")).toBe(false);
    expect(list.check("10.255.0.1", "ipv4")).toBe(true);
    expect(list.check("11.0.0.1", "ipv4")).toBe(false);
    expect(list.check("::1", "ipv6")).toBe(true);
    expect(list.check("fd12::1", "ipv6")).toBe(true);
    expect(list.check("2001:db8::1", "ipv6")).toBe(false);
  });

  it.each(["", "not-an-ip", "1.2.3", "300.1.1.1", "10.0.0.0/33", "10.0.0.0/abc", "::1/129", "10.0.0.0/-1"])(
    "rejects %j with a message naming the entry",
    (entry) => {
      expect(() => parseTrustedProxies(["10.0.0.1", entry])).toThrow(`--trust-proxy "${entry}" is not an IP address or CIDR range`);
    },
  );

  // BUG: services/gateway/forwarded.ts:39 passes Number("") === 0 as the prefix
  // length, so "10.0.0.0/" (a typo) is accepted as 10.0.0.0/0 and trusts every
  // IPv4 address, letting any client spoof X-Forwarded-For.
  it("rejects a CIDR entry with an empty prefix length ('10.0.0.0/')", () => {
    expect(() => parseTrustedProxies(["10.0.0.0/"])).toThrow('--trust-proxy "10.0.0.0/"');
  });

  // BUG: services/gateway/forwarded.ts:35 keeps only the first two "/" parts, so
  // "10.0.0.0/8/9" is silently accepted as 10.0.0.0/8.
  it("rejects an entry with more than one '/'", () => {
    expect(() => parseTrustedProxies(["10.0.0.0/8/9"])).toThrow('--trust-proxy "10.0.0.0/8/9"');
  });
});
