import type { Header } from "../../gen/ferry/tunnel/v1/exchange_pb.js";
import type { TargetSpec } from "./connector-config.js";

/** Headers with which a request asks the application to take it for another method. */
const METHOD_OVERRIDES: ReadonlySet<string> = new Set(["x-http-method-override", "x-http-method", "x-method-override"]);

/**
 * The on-prem admin's own limit on what the outside may reach through a
 * target, checked at the connector whatever the relay allows: the method must
 * be one of `allowedMethods` (when any are set) and the path must lie under one
 * of `allowedPaths` (when any are set). Returns why a request is refused, or
 * undefined when it may go on.
 */
export function allowlistProblem(
  target: Pick<TargetSpec, "allowedPaths" | "allowedMethods">,
  method: string,
  path: string,
  headers: readonly Header[] = [],
): string | undefined {
  if (target.allowedMethods.length > 0) {
    if (!target.allowedMethods.includes(method.toUpperCase())) return `method ${method} is not allowed on this target`;
    // Frameworks (Express methodOverride, Symfony, ASP.NET) run a POST as the method these name: it must be allowed too.
    for (const h of headers) {
      if (METHOD_OVERRIDES.has(h.name.toLowerCase()) && !target.allowedMethods.includes(h.value.trim().toUpperCase())) {
        return `method ${h.value.trim().slice(0, 32)} (from ${h.name.toLowerCase()}) is not allowed on this target`;
      }
    }
  }
  if (target.allowedPaths.length > 0 && !target.allowedPaths.some((prefix) => pathUnder(path, prefix))) {
    return `path ${path} is not allowed on this target`;
  }
  return undefined;
}

/**
 * Whether `path` lies under `prefix` on segment boundaries. "/rest/" covers
 * "/rest/" and "/rest/x" only; "/rest" covers "/rest" and "/rest/x"; neither
 * covers "/restricted" or "/restx" (a plain string test would let "/rest" open
 * "/restricted-admin"). The path is compared as sent: a percent-encoded variant
 * of an allowed prefix does not match, which fails closed; dot segments and
 * encoded slashes never get this far (pathProblem refuses them first).
 */
export function pathUnder(path: string, prefix: string): boolean {
  if (prefix.endsWith("/")) return path.startsWith(prefix);
  return path === prefix || path.startsWith(`${prefix}/`);
}
