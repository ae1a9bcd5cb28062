import { type BlockList, isIP, isIPv6 } from "node:net";
import { unmapIPv4 } from "./source-key.js";

/**
 * Who the client is: the socket's peer, or, when that peer is a trusted proxy
 * (--trust-proxy), the right-most address in its X-Forwarded-For that is not
 * itself a trusted proxy. Every per-client decision uses it (limits, back-off,
 * audit), so a load balancer in front does not make all clients one.
 * `chain` is the forwarded chain as believed, the peer last.
 */
export function clientAddressOf(
  remoteAddress: string,
  forwardedFor: string | undefined,
  trusted: BlockList | undefined,
): { clientAddress: string; chain: string[]; peerTrusted: boolean } {
  const peer = unmapIPv4(remoteAddress);
  if (trusted === undefined || !isTrusted(trusted, peer)) return { clientAddress: peer, chain: [peer], peerTrusted: false };
  const listed = (forwardedFor ?? "").split(",").map((s) => unmapIPv4(s.trim())).filter(Boolean);
  const chain = [...listed, peer];
  // Walk from the nearest hop outwards past our own proxies; the first other hop is the client.
  // If that hop is not an address at all, the last hop we can vouch for stands in for it.
  let clientAddress = peer;
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = chain[i]!;
    if (isIP(hop) === 0) break;
    clientAddress = hop;
    if (!isTrusted(trusted, hop)) break;
  }
  return { clientAddress, chain, peerTrusted: true };
}

export function isTrusted(list: BlockList, address: string): boolean {
  try {
    return list.check(address, isIPv6(address) ? "ipv6" : "ipv4");
  } catch {
    return false; // not an address at all ("unknown", garbage): never a trusted proxy
  }
}
