import { describe, expect, it } from "vitest";
import { compileIpList, parseCidr } from "../../services/access/ip-rules.js";

const list = compileIpList(["203.0.113.0/24", "198.51.100.7", "2001:db8::/32", "::1", "10.0.0.0/8"]);

describe("IP rules", () => {
  it.each([
    ["203.0.113.1", true],
    ["203.0.113.255", true],
    ["203.0.114.1", false],
    ["198.51.100.7", true], // a bare address is one host
    ["198.51.100.8", false],
    ["::ffff:203.0.113.9", true], // an IPv4 client on a dual-stack listener
    ["::ffff:198.51.100.8", false],
    ["2001:db8::1", true],
    ["2001:0db8:0000::abcd", true], // another spelling of an address in the block
    ["2001:db9::1", false],
    ["::1", true],
    ["::2", false],
    ["10.255.255.255", true],
    ["", false], // a socket already gone: in no list
    ["unknown", false],
    ["fe80::1%eth0", false],
  ])("%s -> %s", (address, want) => {
    expect(list.has(address)).toBe(want);
  });

  it("takes host bits in a block as most tools do", () => {
    expect(compileIpList(["10.1.2.3/8"]).has("10.200.0.1")).toBe(true);
  });

  it("takes an IPv6 rule for v4-mapped addresses too", () => {
    expect(compileIpList(["::ffff:192.0.2.0/120"]).has("192.0.2.44")).toBe(true);
  });

  it.each([
    ["203.0.113.0/24", { address: "203.0.113.0", prefix: 24, family: "ipv4" }],
    ["198.51.100.7", { address: "198.51.100.7", prefix: 32, family: "ipv4" }],
    ["2001:db8::/32", { address: "2001:db8::", prefix: 32, family: "ipv6" }],
    ["::1", { address: "::1", prefix: 128, family: "ipv6" }],
    ["0.0.0.0/0", { address: "0.0.0.0", prefix: 0, family: "ipv4" }],
  ])("parses %s", (text, want) => {
    expect(parseCidr(text)).toEqual(want);
  });

  it.each(["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0.0/ 8", "1.2.3", "1.2.3.256", "fe80::1%eth0", "", "example.com"])(
    "refuses %j",
    (text) => {
      expect(typeof parseCidr(text)).toBe("string");
      expect(() => compileIpList([text])).toThrow();
    },
  );
});
