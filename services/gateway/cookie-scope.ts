import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import { header } from "../../core/headers.js";

/**
 * Scopes a path-routed target's Set-Cookie to its own prefix,
 * /relay/{tenant}/{target}/. Every tenant shares the relay's origin under path
 * routing, and a cookie with Path=/ (most apps set that) or a Domain would go
 * with every request to every other tenant's targets.
 *
 * - Path: one inside the prefix is kept (an app that knows its prefix, from
 *   X-Forwarded-Prefix); any other absolute path is taken as the target's own
 *   and moved below the prefix (Path=/api becomes /relay/acme/crm/api, as
 *   nginx's proxy_cookie_path would); none, a relative one or one with dot
 *   segments becomes the prefix itself. Without a Path the browser would use
 *   the request's directory, which for /relay/acme/crm is /relay/acme: the
 *   whole tenant. Only the last Path counts (RFC 6265 §5.3), so all are replaced.
 * - Domain is dropped: the cookie stays host-only, never sent to other names.
 * - A `__Host-` cookie is dropped (undefined): browsers accept one only with
 *   Path=/, which is exactly what cannot be allowed here. Apps that need them
 *   use host routing, where each app has its own origin.
 */
export function scopeSetCookie(value: string, prefix: string): string | undefined {
  const parts = value.split(";");
  const pair = parts[0]!.trim();
  const eq = pair.indexOf("=");
  const name = eq < 0 ? "" : pair.slice(0, eq).trim();
  if (name.toLowerCase().startsWith("__host-")) return undefined;
  const kept: string[] = [pair];
  let path: string | undefined;
  for (let i = 1; i < parts.length; i++) {
    const attribute = parts[i]!.trim();
    if (attribute === "") continue;
    const at = attribute.indexOf("=");
    const key = (at < 0 ? attribute : attribute.slice(0, at)).trim().toLowerCase();
    if (key === "domain") continue;
    if (key === "path") {
      path = at < 0 ? "" : attribute.slice(at + 1).trim();
      continue;
    }
    kept.push(attribute);
  }
  kept.push(`Path=${scopedPath(path, prefix)}`);
  return kept.join("; ");
}

/** A path a target names for the browser, kept below its prefix as a cookie's Path is. */
export function scopedPath(path: string | undefined, prefix: string): string {
  const root = `${prefix}/`;
  if (path === undefined || !path.startsWith("/") || /(^|\/)\.\.?(\/|$)/.test(path)) return root;
  if (path === prefix || path.startsWith(root)) return path;
  return prefix + path;
}

/**
 * A host-routed target's cookies stay host-only: every app has its own host,
 * but all of them are one site below --base-domain, and a cookie with
 * Domain=<base domain> (or any name above the app's own) would be sent to
 * every other tenant's apps, letting one tenant set cookies for another
 * (cookie tossing, session fixation). Only Domain is dropped; the rest is the
 * app's business.
 */
export function hostOnlyCookies(headers: Header[]): Header[] {
  if (!headers.some((h) => h.name === "set-cookie" && /;\s*domain\s*=/i.test(h.value))) return headers;
  return headers.map((h) => (h.name === "set-cookie" ? header("set-cookie", withoutDomain(h.value)) : h));
}

function withoutDomain(value: string): string {
  return value
    .split(";")
    .filter((part, i) => i === 0 || !/^\s*domain\s*(=|$)/i.test(part))
    .join(";");
}
