import { isIPv6 } from "node:net";

/**
 * What counts as one client source for per-source limits: an IPv4 address, or
 * an IPv6 /64. One IPv6 host usually holds a whole /64 (SLAAC, privacy
 * addresses), so a per-address limit would give it 2^64 shares.
 */
export function sourceKey(address: string): string {
  const unmapped = unmapIPv4(address);
  // No colon, no IPv6: skips Node's address regex on every IPv4 request.
  if (!unmapped.includes(":") || !isIPv6(unmapped)) return unmapped;
  return `${expandIPv6(unmapped).slice(0, 4).join(":")}::/64`;
}

/** A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: one client, one address, whichever way it came. */
export function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** The eight 16-bit groups of an IPv6 address, "::" expanded, without leading zeros. */
function expandIPv6(address: string): string[] {
  const bare = address.replace(/%.*$/, ""); // zone index
  const [head = "", tail] = bare.split("::", 2);
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  // An embedded IPv4 tail (::1.2.3.4) counts as two groups; only the first four matter here.
  const width = right.some((g) => g.includes(".")) ? 7 : 8;
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, width - left.length - right.length)).fill("0"), ...right];
  return groups.map((g) => (g.includes(".") ? g : (parseInt(g, 16) || 0).toString(16)));
}
