import type { IncomingHttpHeaders } from "node:http";
import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { FerryError } from "../../core/errors.js";
import { header } from "../../core/headers.js";
import { scopedPath, scopeSetCookie } from "./cookie-scope.js";
import { RELAY_PREFIX } from "./relay-path.js";

/**
 * Path routing puts every tenant on one web origin, and a browser lets any page
 * of an origin read every response of it. What the relay can do about it,
 * where the platform allows (host routing, each app its own origin, needs none
 * of it and is the mode for browser apps: docs/host-routing.md):
 *
 * 1. Cookies stay with their target (cookie-scope.ts).
 * 2. A request one tenant's page makes to another tenant is refused. Browsers
 *    say where a request comes from (Fetch Metadata): a `same-origin` one was
 *    made by a page of the relay's origin, and its Referer says which. One
 *    whose Referer is not below the tenant's own /relay/{tenant}/ (or that has
 *    none) did not come from that tenant's pages. Navigations typed by the user
 *    (`none`) and requests from other sites (which cannot read the answer) pass.
 * 3. So that the tenant's own pages pass 2., a Referrer-Policy that strips the
 *    path from same-origin requests becomes `same-origin` (full URL to the same
 *    origin, nothing to others: never more than the target asked to send away).
 *
 * A page that is determined can still get past 2.: it may set any same-origin
 * referrer on its own fetches, or give itself another tenant's path with
 * history.pushState. This stops browsers from doing it by accident and raises
 * the bar; it is not an isolation boundary. docs/browsers.md says so.
 *
 * Returns the 403 for a request 2. refuses, undefined for one it lets through.
 */
export function crossTenantRefusal(headers: IncomingHttpHeaders, tenant: string): FerryError | undefined {
  if (headers["sec-fetch-site"] !== "same-origin") return undefined;
  // A WebSocket handshake never carries a Referer (the Fetch standard sets "no-referrer"): nothing to tell it by.
  if (headers["sec-fetch-mode"] === "websocket") return undefined;
  if (refererTenant(headers.referer) === tenant) return undefined;
  return new FerryError(
    "permission_denied",
    "cross_tenant_request",
    `a page outside /relay/${tenant}/ may not call tenant "${tenant}" from this origin; browser apps use host routing`,
  );
}

/** The tenant whose pages the Referer names, or undefined. */
function refererTenant(referer: string | undefined): string | undefined {
  if (!referer) return undefined;
  let path: string;
  try {
    path = new URL(referer).pathname;
  } catch {
    return undefined;
  }
  if (!path.startsWith(RELAY_PREFIX)) return undefined;
  const end = path.indexOf("/", RELAY_PREFIX.length);
  return end < 0 ? undefined : path.slice(RELAY_PREFIX.length, end);
}

/** Policies that send the same origin less than the path (https://w3c.github.io/webappsec-referrer-policy/). */
const PATHLESS = new Set(["no-referrer", "origin", "strict-origin"]);

/**
 * A path-routed response's headers with what would reach the whole origin kept
 * to the target: cookies scoped to `prefix`, Service-Worker-Allowed (which
 * lets a service worker control more than its script's directory: every
 * tenant, with `/`) scoped the same way, Clear-Site-Data (which clears every
 * tenant's cookies and storage) dropped, and path-keeping referrer policies.
 */
export function isolatePathRouted(headers: Header[], prefix: string): Header[] {
  if (!headers.some((h) => ORIGIN_WIDE.has(h.name))) return headers;
  const out: Header[] = [];
  for (const h of headers) {
    if (h.name === "set-cookie") {
      const scoped = scopeSetCookie(h.value, prefix);
      if (scoped !== undefined) out.push(header("set-cookie", scoped));
    } else if (h.name === "referrer-policy") {
      const tokens = h.value.split(",").map((t) => t.trim());
      out.push(header("referrer-policy", tokens.map((t) => (PATHLESS.has(t.toLowerCase()) ? "same-origin" : t)).join(", ")));
    } else if (h.name === "service-worker-allowed") {
      out.push(header("service-worker-allowed", scopedPath(h.value.trim(), prefix)));
    } else if (h.name !== "clear-site-data") {
      out.push(h);
    }
  }
  return out;
}

/** Response fields whose effect is the whole origin's, not the target's. */
const ORIGIN_WIDE = new Set(["set-cookie", "referrer-policy", "service-worker-allowed", "clear-site-data"]);
