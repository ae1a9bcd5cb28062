import type { CorsConfig } from "../../gen/ferry/config/v1/connector_config_pb.js";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { msFromDuration } from "../../core/duration.js";
import { header } from "../../core/headers.js";

const DEFAULT_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/** What Connect, gRPC-Web and common JSON APIs send from browsers. */
const DEFAULT_HEADERS = [
  "authorization",
  "content-type",
  "x-requested-with",
  "connect-protocol-version",
  "connect-timeout-ms",
  "connect-content-encoding",
  "connect-accept-encoding",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
];
/** Response headers Connect and gRPC-Web clients must read; X-Request-Id for support tickets. */
const DEFAULT_EXPOSED = ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"];
const DEFAULT_MAX_AGE_S = 7200;
/**
 * Request headers a preflight may list that are always allowed: the
 * CORS-safelisted names. Browsers still list them when the value is unusual
 * (Content-Type: application/json is), and an operator who lists only their
 * own headers means "besides these".
 */
const SAFELISTED_HEADERS = ["accept", "accept-language", "content-language", "content-type"];

/** A preflight's answer, given by the connector without bothering the target. */
export interface PreflightAnswer {
  status: number;
  headers: Header[];
  /** JSON error for refused preflights (the browser hides it, but curl users and logs see why). */
  body?: string;
}

export interface CorsPolicy {
  /** The answer when the request is a CORS preflight, else undefined (the request goes to the target). */
  preflight(method: string, headers: readonly Header[]): PreflightAnswer | undefined;
  /** The target's response headers with this policy's Access-Control-* fields in place of the target's own. */
  decorate(requestHeaders: readonly Header[], responseHeaders: Header[]): Header[];
}

/** Validates a target's CORS settings; throws with a message naming the bad value. */
export function corsPolicy(config: CorsConfig): CorsPolicy {
  if (config.allowedOrigins.length === 0) throw new Error("allowedOrigins is empty: list origins such as https://app.example.com, or \"*\"");
  const matchers = config.allowedOrigins.map(originMatcher);
  const anyOrigin = config.allowedOrigins.includes("*");
  if (anyOrigin && config.allowCredentials) {
    throw new Error('"*" cannot be combined with allowCredentials (browsers refuse it): list the origins instead');
  }
  const methods = (config.allowedMethods.length ? config.allowedMethods : DEFAULT_METHODS).map((m) => {
    if (!/^[A-Za-z]+$/.test(m)) throw new Error(`allowedMethods "${m}" is not an HTTP method`);
    return m.toUpperCase();
  });
  const allowedHeaders = new Set([...(config.allowedHeaders.length ? config.allowedHeaders : DEFAULT_HEADERS).map(token("allowedHeaders")), ...SAFELISTED_HEADERS]);
  // "*" allows any request header; the answer names the requested ones, which browsers honour with credentials too.
  const anyHeader = allowedHeaders.has("*");
  const exposed = (config.exposedHeaders.length ? config.exposedHeaders : DEFAULT_EXPOSED).map(token("exposedHeaders"));
  if (exposed.includes("*") && config.allowCredentials) {
    throw new Error('exposedHeaders "*" means a header named "*" to browsers when allowCredentials is set: list the headers instead');
  }
  const maxAgeMs = config.maxAge ? (msFromDuration(config.maxAge) ?? 0) : DEFAULT_MAX_AGE_S * 1000;
  if (maxAgeMs < 0) throw new Error("maxAge must not be negative");
  const maxAgeS = Math.round(maxAgeMs / 1000);
  const allows = (origin: string) => matchers.some((m) => m(origin));

  /** Allow-Origin (and credentials) for an allowed origin. */
  const originHeaders = (origin: string): Header[] => {
    const out = [header("access-control-allow-origin", anyOrigin ? "*" : origin)];
    if (config.allowCredentials) out.push(header("access-control-allow-credentials", "true"));
    return out;
  };

  return {
    preflight(method, headers) {
      const origin = find(headers, "origin");
      const wanted = find(headers, "access-control-request-method");
      if (method !== "OPTIONS" || origin === undefined || wanted === undefined) return undefined;
      const vary = header("vary", "origin, access-control-request-method, access-control-request-headers");
      const refuse = (why: string): PreflightAnswer => ({
        status: 403,
        headers: [vary, header("content-type", "application/json")],
        body: JSON.stringify({ error: { code: "cors_refused", message: why } }),
      });
      if (!allows(origin)) return refuse(`origin ${origin} is not allowed to call this target`);
      if (!methods.includes(wanted.toUpperCase())) return refuse(`method ${wanted} is not allowed (allowed: ${methods.join(", ")})`);
      const requested = (find(headers, "access-control-request-headers") ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean);
      const refused = anyHeader ? [] : requested.filter((h) => !allowedHeaders.has(h));
      if (refused.length > 0) return refuse(`request header(s) ${refused.join(", ")} not allowed`);
      const out = [...originHeaders(origin), vary, header("access-control-allow-methods", methods.join(", "))];
      if (requested.length > 0) out.push(header("access-control-allow-headers", requested.join(", ")));
      out.push(header("access-control-max-age", String(maxAgeS)), header("content-length", "0"));
      return { status: 204, headers: out };
    },

    decorate(requestHeaders, responseHeaders) {
      // The policy owns CORS for this target: a second Allow-Origin from the target would make browsers refuse both.
      const out = responseHeaders.filter((h) => !h.name.startsWith("access-control-"));
      out.push(header("vary", "origin"));
      const origin = find(requestHeaders, "origin");
      if (origin === undefined || !allows(origin)) return out;
      out.push(...originHeaders(origin));
      if (exposed.length > 0) out.push(header("access-control-expose-headers", exposed.join(", ")));
      return out;
    },
  };
}

/**
 * "*", an exact origin, or one with a wildcard first label
 * (https://*.example.com matches https://a.example.com, not
 * https://a.b.example.com nor https://example.com).
 */
function originMatcher(pattern: string): (origin: string) => boolean {
  if (pattern === "*") return () => true;
  const m = /^(https?):\/\/(\*\.)?([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d{1,5})?$/i.exec(pattern);
  if (!m) throw new Error(`allowedOrigins "${pattern}" must be "*" or scheme://host[:port] with no path (e.g. https://app.example.com)`);
  const scheme = `${m[1]!.toLowerCase()}://`;
  // Browsers serialise an origin without its scheme's default port: https://x:443 arrives as https://x.
  const port = m[4] === (scheme === "https://" ? ":443" : ":80") ? "" : (m[4] ?? "");
  const host = m[3]!.toLowerCase();
  if (!m[2]) {
    const exact = `${scheme}${host}${port}`;
    return (origin) => origin.toLowerCase() === exact;
  }
  const suffix = `.${host}${port}`;
  return (origin) => {
    const o = origin.toLowerCase();
    return o.startsWith(scheme) && o.endsWith(suffix) && /^[a-z0-9-]+$/.test(o.slice(scheme.length, o.length - suffix.length));
  };
}

function token(field: string): (name: string) => string {
  return (name) => {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new Error(`${field} "${name}" is not a header name`);
    return name.toLowerCase();
  };
}

function find(headers: readonly Header[], name: string): string | undefined {
  return headers.find((h) => h.name === name)?.value;
}
