import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Header } from "../gen/ferry/tunnel/v1/exchange_pb.js";

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

/**
 * Headers for a Node response: repeated names become arrays (Set-Cookie must
 * never be joined). No prototype: names come from peers, and on a plain object
 * "__proto__" would set the prototype and "constructor" would find a function.
 */
export function toNodeHeaders(headers: readonly Header[]): OutgoingHttpHeaders {
  const out = Object.create(null) as Record<string, string | string[]>;
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

/** A field name is a token (RFC 9110 §5.6.2): what Node and nghttp2 accept, so nothing else may reach them. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Node's rule for a field value (RFC 9110 §5.5 field-content in latin1): no control characters but tab, nothing above U+00FF. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

export function isFieldName(name: string): boolean {
  return TOKEN.test(name);
}

export function isFieldValue(value: string): boolean {
  return !INVALID_VALUE.test(value);
}

/**
 * Fields defined with a single value. HTTP/2 cannot carry one twice (Node
 * throws ERR_HTTP2_HEADER_SINGLE_VALUE); over HTTP/1.1 two of them are
 * ambiguous (which Content-Type, which Location?). This is Node's list.
 */
const SINGLE_VALUE = new Set([
  "access-control-allow-credentials",
  "access-control-max-age",
  "access-control-request-method",
  "age",
  "authorization",
  "content-encoding",
  "content-language",
  "content-length",
  "content-location",
  "content-md5",
  "content-range",
  "content-type",
  "date",
  "dnt",
  "etag",
  "expires",
  "from",
  "host",
  "if-match",
  "if-modified-since",
  "if-none-match",
  "if-range",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "range",
  "referer",
  "retry-after",
  "tk",
  "upgrade-insecure-requests",
  "user-agent",
  "x-content-type-options",
]);

/** Keeps the first of each repeated single-value field (lower-case names), every other field as it is. */
export function firstOfSingleValue(headers: Header[]): Header[] {
  let out: Header[] | undefined;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    // A scan back instead of a Set: heads are short, and most have a single-value field but no repeat.
    if (SINGLE_VALUE.has(h.name) && seenBefore(headers, i)) out ??= headers.slice(0, i);
    else out?.push(h);
  }
  return out ?? headers;
}

/** Whether a field of the same name comes before index `i`. */
function seenBefore(headers: Header[], i: number): boolean {
  const name = headers[i]!.name;
  for (let j = 0; j < i; j++) if (headers[j]!.name === name) return true;
  return false;
}

export function header(name: string, value: string): Header {
  return { $typeName: "ferry.tunnel.v1.Header", name, value };
}
