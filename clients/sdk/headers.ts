import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";

/**
 * Fields that describe one hop, not the message, so a proxy must not forward
 * them: the hop-by-hop fields of RFC 9110 §7.6.1, plus Host (each hop names its
 * own authority; the original goes on as X-Forwarded-Host) and Expect (every
 * hop answers 100-continue itself). "te" is kept only as "te: trailers", which
 * gRPC needs end to end; upgrade fields are kept only for an upgrade exchange.
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
  "http2-settings",
  "host",
  "expect",
]);

/** Prefix of Ferry's own headers; never accepted from outside, never leaked. */
export const INTERNAL_PREFIX = "x-ferry-";

export interface FilterOptions {
  /** Keep Connection: upgrade and Upgrade (an upgrade exchange). */
  upgrade?: boolean;
  /** Extra lower-case names to drop. */
  drop?: ReadonlySet<string>;
}

/**
 * Turns Node's raw header list (name, value, name, value...) into end-to-end
 * headers: lower-case names, order and repeats kept, hop-by-hop fields and
 * every field named by Connection removed, HTTP/2 pseudo-headers skipped.
 */
export function endToEndHeaders(raw: readonly string[], options: FilterOptions = {}): Header[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === "connection") {
      for (const token of raw[i + 1]!.split(",")) named.add(token.trim().toLowerCase());
    }
  }
  const out: Header[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name.startsWith(":") || name.startsWith(INTERNAL_PREFIX) || options.drop?.has(name)) continue;
    if (name === "te") {
      if (value.toLowerCase().split(",").some((t) => t.trim() === "trailers")) out.push(header("te", "trailers"));
      continue;
    }
    if (options.upgrade && (name === "upgrade" || name === "connection")) {
      if (name === "connection") out.push(header("connection", "upgrade"));
      else out.push(header(name, value));
      continue;
    }
    if (HOP_BY_HOP.has(name) || named.has(name)) continue;
    out.push(header(name, value));
  }
  return out;
}

/** End-to-end headers from an undici or Node headers object (values may be arrays). */
export function headersFromObject(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>, options: FilterOptions = {}): Header[] {
  const raw: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) raw.push(name, v);
  }
  return endToEndHeaders(raw, options);
}

/** Headers for a Node response: repeated names become arrays (Set-Cookie must never be joined). */
export function toNodeHeaders(headers: readonly Header[]): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const { name, value } of headers) {
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

/** Flat [name, value, ...] list, the form undici takes without merging repeats. */
export function toFlatList(headers: readonly Header[]): string[] {
  const out: string[] = [];
  for (const { name, value } of headers) out.push(name, value);
  return out;
}

export function header(name: string, value: string): Header {
  return { $typeName: "ferry.tunnel.v1.Header", name, value };
}
