import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { endToEndHeaders, firstOfSingleValue, isFieldName, isFieldValue, toFlatList } from "../../core/headers.js";

/**
 * Fields that cannot be trailers: a recipient needs them before the content
 * (RFC 9110 §6.5.1; the list is RFC 7230 §4.1.2's): framing, routing, request
 * modifiers, authentication, response control data and how to process the
 * content. A client that merges trailers into the header section (some do)
 * must not get a late Set-Cookie, Location or Content-Type.
 */
const NOT_TRAILERS: ReadonlySet<string> = new Set([
  "transfer-encoding",
  "content-length",
  "trailer",
  "host",
  "cache-control",
  "expect",
  "max-forwards",
  "pragma",
  "range",
  "te",
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
  "if-range",
  "authorization",
  "proxy-authenticate",
  "proxy-authorization",
  "www-authenticate",
  "set-cookie",
  "cookie",
  "age",
  "expires",
  "date",
  "location",
  "retry-after",
  "vary",
  "warning",
  "content-encoding",
  "content-type",
  "content-range",
  "x-request-id",
]);

/**
 * The connector's trailers as the client may get them, on either protocol:
 * never thrown on, only dropped or reduced. An invalid name or value (which
 * Node's writers throw on, e.g. a pseudo-header or CR/LF) is dropped and
 * reported through `invalid` (a connector fault: an ordinary target behind
 * our connector cannot produce one); fields that cannot be trailers, hop-by-hop
 * and Ferry's own are dropped; a repeated single-value field keeps its first
 * value (HTTP/2 cannot carry two).
 */
export function clientTrailers(trailers: readonly Header[], invalid: () => void): Header[] {
  if (trailers.length === 0) return [];
  const valid = trailers.filter((t) => isFieldName(t.name) && isFieldValue(t.value));
  if (valid.length < trailers.length) invalid();
  return firstOfSingleValue(endToEndHeaders(toFlatList(valid), { drop: NOT_TRAILERS }));
}
