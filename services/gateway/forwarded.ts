import { BlockList, isIPv6 } from "node:net";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { header } from "../../clients/sdk/headers.js";

/** Headers that say who the client is; from an untrusted peer they are lies and are dropped. */
export const FORWARDING_HEADERS: ReadonlySet<string> = new Set([
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-prefix",
  "x-real-ip",
]);

export interface ForwardedInput {
  /** The socket's peer address. */
  remoteAddress: string;
  /** True when the client reached us over TLS. */
  encrypted: boolean;
  /** Host (HTTP/1.1) or :authority (HTTP/2) the client asked for. */
  host: string;
  /** The client's own forwarding headers (used only when the peer is a trusted proxy). */
  incoming: { forwardedFor?: string; proto?: string; host?: string };
  prefix: string;
}

/**
 * Parses `--trust-proxy` entries (addresses or CIDR ranges) into a BlockList.
 * Throws a message naming the bad entry.
 */
export function parseTrustedProxies(entries: readonly string[]): BlockList | undefined {
  if (entries.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split("/");
    const type = isIPv6(address ?? "") ? "ipv6" : "ipv4";
    try {
      if (bits === undefined) list.addAddress(address!, type);
      else list.addSubnet(address!, Number(bits), type);
    } catch {
      throw new Error(`--trust-proxy "${entry}" is not an IP address or CIDR range`);
    }
  }
  return list;
}

/**
 * The client address and the forwarding headers to send on. Incoming
 * X-Forwarded-* are believed only when the socket peer is a trusted proxy;
 * then the client is the right-most address in X-Forwarded-For that is not
 * itself a trusted proxy.
 */
export function forwardingHeaders(input: ForwardedInput, trusted: BlockList | undefined): { clientAddress: string; headers: Header[] } {
  const peer = unmapIPv4(input.remoteAddress);
  const peerTrusted = trusted !== undefined && matches(trusted, peer);
  let clientAddress = peer;
  let chain: string[] = [peer];
  let proto = input.encrypted ? "https" : "http";
  let host = input.host;
  if (peerTrusted) {
    const listed = (input.incoming.forwardedFor ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    chain = [...listed, peer];
    clientAddress = [...chain].reverse().find((a) => !matches(trusted, unmapIPv4(a))) ?? listed[0] ?? peer;
    if (input.incoming.proto === "http" || input.incoming.proto === "https") proto = input.incoming.proto;
    if (input.incoming.host) host = input.incoming.host;
  }
  const forNode = isIPv6(clientAddress) ? `"[${clientAddress}]"` : clientAddress;
  return {
    clientAddress,
    headers: [
      header("x-forwarded-for", chain.join(", ")),
      header("x-forwarded-proto", proto),
      header("x-forwarded-host", host),
      header("x-forwarded-prefix", input.prefix),
      header("forwarded", `for=${forNode};proto=${proto};host="${host.replace(/["\\]/g, "")}"`),
    ],
  };
}

function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

function matches(list: BlockList, address: string): boolean {
  try {
    return list.check(address, isIPv6(address) ? "ipv6" : "ipv4");
  } catch {
    return false; // not an address at all ("unknown", garbage): never a trusted proxy
  }
}
