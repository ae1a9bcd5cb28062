import { FerryError } from "../../core/errors.js";
import { isDnsLabel } from "../../core/names.js";

/** Where a gateway request goes, parsed from `/relay/{tenant}/{target}/{path}?{query}`. */
export interface RelayPath {
  tenant: string;
  target: string;
  /** Path below the target, normalised and re-encoded; starts with "/". */
  path: string;
  /** Raw query without "?", passed through untouched. */
  query: string;
  /** "/relay/{tenant}/{target}", for X-Forwarded-Prefix. */
  prefix: string;
}

export const RELAY_PREFIX = "/relay/";

/**
 * Parses and normalises a request target. The path is decoded exactly once,
 * dot segments are resolved, and the result is re-encoded, so the target sees
 * one canonical form. Encoded "/" or "\", NUL and dot segments with path
 * parameters are refused (they smuggle path structure past proxies and WAF
 * rules), as is any ".." that would climb out of the target's prefix.
 */
export function parseRelayPath(url: string): RelayPath {
  const [rawPath, query] = splitUrl(url);
  if (!rawPath.startsWith(RELAY_PREFIX)) throw bad("the path must start with /relay/");
  refuseSmuggling(rawPath);
  const segments = rawPath.slice(RELAY_PREFIX.length).split("/");
  const tenant = segments[0] ?? "";
  const target = segments[1];
  if (!isDnsLabel(tenant)) throw bad(`"${tenant}" is not a tenant name: use /relay/{tenant}/{target}/{path}`);
  if (target === undefined || !isDnsLabel(target)) {
    throw bad(`"${target ?? ""}" is not a target name: use /relay/{tenant}/{target}/{path}`);
  }
  return { tenant, target, path: normaliseSegments(segments.slice(2)), query, prefix: `/relay/${tenant}/${target}` };
}

/**
 * The path of a host-routed request ({target}.{tenant}.<base domain>): all of
 * it goes to the target, normalised the same way, and ".." cannot climb above "/".
 */
export function parseHostPath(url: string, tenant: string, target: string): RelayPath {
  const [rawPath, query] = splitUrl(url);
  if (!rawPath.startsWith("/")) throw bad("the request target must be a path starting with '/'");
  refuseSmuggling(rawPath);
  return { tenant, target, path: normaliseSegments(rawPath.slice(1).split("/")), query, prefix: "" };
}

function splitUrl(url: string): [path: string, query: string] {
  const q = url.indexOf("?");
  return q < 0 ? [url, ""] : [url.slice(0, q), url.slice(q + 1)];
}

function refuseSmuggling(rawPath: string): void {
  // Raw control characters never pass Node's HTTP/1.1 parser; checked here too, as a path may come from elsewhere.
  if (/%(2f|5c|00)/i.test(rawPath) || rawPath.includes("\\") || /[\u0000-\u001f\u007f]/.test(rawPath)) {
    throw bad("the path contains an encoded '/', '\\' or NUL, a raw '\\' or a control character");
  }
}

/** Decodes each segment once, resolves dot segments, re-encodes: "/a/b" from ["a", "b"]. */
function normaliseSegments(rest: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    let segment: string;
    try {
      segment = decodeURIComponent(rest[i]!);
    } catch {
      throw bad("the path has malformed percent-encoding");
    }
    // "..;x" and ".;x" are dot segments to servlet containers (Tomcat, Jetty), which
    // strip path parameters before resolving: a classic way past proxy path rules.
    if (/^\.\.?;/.test(segment)) throw bad("the path has a dot segment with parameters (e.g. '..;')");
    if (segment === ".") {
      if (i === rest.length - 1) out.push("");
      continue;
    }
    if (segment === "..") {
      if (out.length === 0) throw bad("the path climbs out of the target with '..'");
      out.pop();
      if (i === rest.length - 1) out.push("");
      continue;
    }
    try {
      out.push(encodePathSegment(segment));
    } catch {
      // A lone surrogate (a request target is bytes, but a string may come from anywhere): not a path.
      throw bad("the path has characters that are not valid text");
    }
  }
  return `/${out.join("/")}`;
}

/** Percent-encodes a decoded segment, keeping the characters RFC 3986 allows in a segment. */
export function encodePathSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/%(21|24|26|27|28|29|2A|2B|2C|3B|3D|3A|40)/g, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16)),
  );
}

function bad(message: string): FerryError {
  return new FerryError("invalid_argument", "bad_path", message);
}
