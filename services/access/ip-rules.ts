import { BlockList, isIP, isIPv6 } from "node:net";
import { unmapIPv4 } from "../auth/source-key.js";

/** One CIDR block of an access rule: "203.0.113.0/24", "2001:db8::/32", or a bare address (one host). */
export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/**
 * Parses a CIDR block, or says what is wrong with it (for the policy check's
 * message). Host bits may be set ("10.1.2.3/8" is 10.0.0.0/8), as most tools
 * take it; a zone index ("fe80::1%eth0") is refused: it names an interface of
 * the relay, not a client.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const version = address.includes("%") ? 0 : isIP(address);
  if (version === 0) return "is not an IPv4 or IPv6 address or CIDR block (examples: 203.0.113.0/24, 2001:db8::/32, 198.51.100.7)";
  const max = version === 4 ? 32 : 128;
  if (slash < 0) return { address, prefix: max, family: version === 4 ? "ipv4" : "ipv6" };
  const bits = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `has a prefix length that is not 0-${max}`;
  return { address, prefix: Number(bits), family: version === 4 ? "ipv4" : "ipv6" };
}

/** A compiled CIDR list; `has` is what a request pays. */
export interface IpList {
  has(address: string): boolean;
}

/**
 * Compiles a (validated) CIDR list into a node:net BlockList. Throws on a
 * block that does not parse: the policy check has refused those already, so
 * one here is a bug, and compiling is where the policy engine catches it.
 */
export function compileIpList(cidrs: readonly string[]): IpList {
  const list = new BlockList();
  for (const text of cidrs) {
    const cidr = parseCidr(text);
    if (typeof cidr === "string") throw new Error(`"${text}" ${cidr}`);
    list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return {
    has(address) {
      // A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d; an IPv4 rule must still take it.
      const plain = unmapIPv4(address);
      if (isIP(plain) === 0) return false; // no address (a socket already gone), or garbage: in no list
      try {
        return list.check(plain, isIPv6(plain) ? "ipv6" : "ipv4");
      } catch {
        return false;
      }
    },
  };
}
