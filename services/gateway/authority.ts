import { FerryError } from "../../core/errors.js";
import type { NodeRequest } from "../http/http-error.js";

/**
 * uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in
 * brackets, or a reg-name (an IPv4 address is one too); no userinfo, no path.
 */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d{0,5})?$/;

export function isAuthority(value: string): boolean {
  return value.length <= 255 + 6 && AUTHORITY.test(value);
}

/**
 * The authority a request addressed, or undefined when it names none (an
 * HTTP/1.0 request without Host). Ambiguous ones are refused with 400 bad_host
 * (RFC 9112 §3.2, RFC 9113 §8.3.1): more than one Host, a Host that is not a
 * host[:port], or on HTTP/2 an :authority and a Host that differ. Which of two
 * names a request is for must never depend on which one a component reads.
 */
export function requestAuthority(req: NodeRequest): string | undefined {
  let host: string | undefined;
  let hosts = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === "host") {
      hosts++;
      host = raw[i + 1]!;
    }
  }
  if (hosts > 1) throw badHost("the request has more than one Host header");
  const h2Authority = "stream" in req ? req.headers[":authority"] : undefined;
  const authority = typeof h2Authority === "string" ? h2Authority : undefined;
  if (authority !== undefined && host !== undefined && canonicalAuthority(authority) !== canonicalAuthority(host)) {
    throw badHost("the request's :authority and Host name different hosts");
  }
  const value = authority ?? host;
  if (value !== undefined && !isAuthority(value)) throw badHost("the request's Host is not a host name with an optional port");
  return value;
}

/** The authority as routing reads it, never throwing (the gateway refuses an ambiguous one). */
export function authorityOf(req: NodeRequest): string | undefined {
  try {
    return requestAuthority(req);
  } catch {
    return undefined;
  }
}

/** One spelling of a name: lower case, no trailing dot ("App.Example.com.:8443" → "app.example.com:8443"). */
export function canonicalAuthority(authority: string): string {
  return authority.toLowerCase().replace(/\.(?=:\d*$|$)/, "");
}

function badHost(message: string): FerryError {
  return new FerryError("invalid_argument", "bad_host", message);
}
