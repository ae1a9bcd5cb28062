import { BlockList, isIP, isIPv6 } from "node:net";
import { FerryError } from "../../core/errors.js";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { header } from "../../core/headers.js";
import { clientAddressOf } from "../auth/client-address.js";

/**
 * The headers in which the relay tells the target who the client is and how
 * it reached us: set by the relay on every request, the client's own dropped
 * (believed only from a --trust-proxy peer, and only as forwardingHeaders
 * reads them). Via is among them but the relay adds none of its own, as
 * nginx, Envoy and Traefik add none by default: origin servers turn
 * compression off for requests with Via (nginx's gzip_proxied, IIS's
 * noCompressionForProxies), which would cost every tunnel its gzip.
 */
export const FORWARDING_HEADERS: ReadonlySet<string> = new Set([
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-prefix",
  "via",
]);

export interface ForwardedInput {
  /** The socket's peer address. */
  remoteAddress: string;
  /** True when the client reached us over TLS. */
  encrypted: boolean;
  /**
   * The host name the relay itself vouches for: the host-routed name the client
   * used, or --public-host. Undefined when it knows none: the client's own Host
   * is then never repeated (it is whatever the client wrote, and apps build
   * links, redirects and password-reset mails from X-Forwarded-Host).
   */
  host: string | undefined;
  /** The client's own forwarding headers (used only when the peer is a trusted proxy). */
  incoming: { forwardedFor?: string; proto?: string; host?: string; via?: string };
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
    const m = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(entry);
    const type = m && isIP(m[1]!);
    const bits = m?.[2] === undefined ? undefined : Number(m[2]);
    if (!m || !type || (bits !== undefined && bits > (type === 4 ? 32 : 128))) {
      throw new FerryError("invalid_argument", "invalid_trust_proxy", `--trust-proxy "${entry}" is not an IP address or CIDR range`);
    }
    if (bits === undefined) list.addAddress(m[1]!, type === 4 ? "ipv4" : "ipv6");
    else list.addSubnet(m[1]!, bits, type === 4 ? "ipv4" : "ipv6");
  }
  return list;
}

/**
 * The client address, the host the target is told about, and the forwarding
 * headers to send on. Incoming X-Forwarded-* and Via are believed (and Via
 * passed on) only when
 * the socket peer is a trusted proxy; then the client is the right-most
 * address in X-Forwarded-For that is not itself a trusted proxy, and its
 * X-Forwarded-Host names the host. Without a host the relay can vouch for,
 * there is no X-Forwarded-Host and no host= in Forwarded.
 */
export function forwardingHeaders(
  input: ForwardedInput,
  trusted: BlockList | undefined,
): { clientAddress: string; host: string | undefined; headers: Header[] } {
  const { clientAddress, chain, peerTrusted } = clientAddressOf(input.remoteAddress, input.incoming.forwardedFor, trusted);
  let proto = input.encrypted ? "https" : "http";
  let host = input.host;
  let via: string | undefined;
  if (peerTrusted) {
    if (input.incoming.proto === "http" || input.incoming.proto === "https") proto = input.incoming.proto;
    if (input.incoming.host) host = input.incoming.host;
    via = input.incoming.via;
  }
  const forNode = isIPv6(clientAddress) ? `"[${clientAddress}]"` : clientAddress;
  const headers = [header("x-forwarded-for", chain.join(", ")), header("x-forwarded-proto", proto)];
  if (host !== undefined) headers.push(header("x-forwarded-host", host));
  // Host-routed requests keep their whole path: there is no prefix to announce.
  if (input.prefix) headers.push(header("x-forwarded-prefix", input.prefix));
  const hostParam = host === undefined ? "" : `;host="${host.replace(/["\\]/g, "")}"`;
  headers.push(header("forwarded", `for=${forNode};proto=${proto}${hostParam}`));
  if (via) headers.push(header("via", via));
  return { clientAddress, host, headers };
}
